package worker

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLoggerLevel: the logger writes what YGG_LOG_LEVEL lets through, with
// no time of its own (yggd stamps each line it logs).
func TestLoggerLevel(t *testing.T) {
	tests := []struct {
		level string
		want  string
	}{
		{level: "", want: "level=INFO msg=i\nlevel=WARN msg=w\nlevel=ERROR msg=e\n"},
		{level: "nonsense", want: "level=INFO msg=i\nlevel=WARN msg=w\nlevel=ERROR msg=e\n"},
		{level: "error", want: "level=ERROR msg=e\n"},
		{level: "WARN", want: "level=WARN msg=w\nlevel=ERROR msg=e\n"},
		{level: "debug", want: "level=DEBUG msg=d\nlevel=INFO msg=i\nlevel=WARN msg=w\nlevel=ERROR msg=e\n"},
		{level: "trace", want: "level=DEBUG-4 msg=t\nlevel=DEBUG msg=d\nlevel=INFO msg=i\nlevel=WARN msg=w\nlevel=ERROR msg=e\n"},
	}
	for _, tt := range tests {
		name := tt.level
		if name == "" {
			name = "unset"
		}
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			log := newLogger(&b, tt.level)
			log.Log(context.Background(), LevelTrace, "t")
			log.Debug("d")
			log.Info("i")
			log.Warn("w")
			log.Error("e")
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}
