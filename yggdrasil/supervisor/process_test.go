//go:build linux

package supervisor

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLineLogger(t *testing.T) {
	long := strings.Repeat("x", maxLine)
	tests := []struct {
		name   string
		writes []string
		want   []string // logged lines; "+" prefix: marked partial
	}{
		{"one_line", []string{"hello\n"}, []string{"hello"}},
		{"two_lines_one_write", []string{"a\nb\n"}, []string{"a", "b"}},
		{"line_across_writes", []string{"he", "llo", "\nwor", "ld\n"}, []string{"hello", "world"}},
		{"unfinished_line_flushed_at_exit", []string{"a\nno newline"}, []string{"a", "no newline"}},
		{"crlf", []string{"dos\r\n"}, []string{"dos"}},
		{"empty_lines_skipped", []string{"\n\nx\n\r\n"}, []string{"x"}},
		{"exactly_max", []string{long + "\n"}, []string{long}},
		{"max_plus_one", []string{long + "y\n"}, []string{"+" + long, "y"}},
		{"max_across_writes", []string{long[:100], long[100:], "z\n"}, []string{"+" + long, "z"}},
		{"twice_max", []string{long + long + "\n"}, []string{"+" + long, long}},
		{"twice_max_and_some", []string{long + long + "tail"}, []string{"+" + long, "+" + long, "tail"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, log := newRecorder(t)
			l := &lineLogger{log: log, stream: "stdout", pid: 42}
			for _, w := range tt.writes {
				if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
				}
			}
			l.flush(false) // as wait does once the process has exited
			var got []string
			for _, r := range rec.find("worker output", "stream", "stdout", "pid", "42") {
				line := r.attrs["line"]
				if r.attrs["partial"] == "true" {
					line = "+" + line
				}
				got = append(got, line)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("logged lines (-want +got):\n%s", diff)
			}
		})
	}
}
