package yggdcmd

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestJournalPriority(t *testing.T) {
	tests := []struct {
		name  string
		level slog.Level
		want  string
	}{
		{"error", slog.LevelError, "<3>"},
		{"above_error", slog.LevelError + 4, "<3>"},
		{"warn", slog.LevelWarn, "<4>"},
		{"info", slog.LevelInfo, "<6>"},
		{"debug", slog.LevelDebug, "<7>"},
		{"trace", levelTrace, "<7>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			level := new(slog.LevelVar)
			level.Set(levelTrace)
			log := newLogger(&out, true, level).With("component", "test")
			log.Log(t.Context(), tc.level, "hello", "key", "value")
			line := out.String()
			if !strings.HasPrefix(line, tc.want+"level=") {
				t.Errorf("line %q, want it to start with %q and the level", line, tc.want)
			}
			if strings.Contains(line, "time=") {
				t.Errorf("line %q has a time=: journald stamps entries itself", line)
			}
			if !strings.HasSuffix(line, `msg=hello component=test key=value`+"\n") {
				t.Errorf("line %q lacks the message and its attributes", line)
			}
		})
	}
}

func TestLoggerNotJournal(t *testing.T) {
	var out bytes.Buffer
	level := new(slog.LevelVar)
	log := newLogger(&out, false, level)
	log.Warn("careful")
	log.Debug("hidden")
	level.Set(slog.LevelDebug) // the level can change while yggd runs
	log.Debug("shown")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "time=") || !strings.Contains(lines[0], "level=WARN msg=careful") ||
		!strings.Contains(lines[1], "level=DEBUG msg=shown") {
		t.Errorf("lines %q, want slog's text format with time=, for careful and shown", lines)
	}
}

func TestJournalLinesWhole(t *testing.T) {
	// Concurrent loggers derived from one share its buffer: each line must
	// still have its own priority and no other line's bytes.
	var out bytes.Buffer
	level := new(slog.LevelVar)
	log := newLogger(&out, true, level)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			l := log.With("g", i)
			for range 50 {
				if i%2 == 0 {
					l.Warn("w")
				} else {
					l.Info("i")
				}
			}
		})
	}
	wg.Wait()
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if line != fmt.Sprintf("<4>level=WARN msg=w g=%c", line[len(line)-1]) && line != fmt.Sprintf("<6>level=INFO msg=i g=%c", line[len(line)-1]) {
			t.Fatalf("line %q is not one whole record", line)
		}
	}
}

func TestIsJournalStream(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) (*os.File, string) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	}
	stream, streamID := open("stream")
	other, _ := open("other")
	tests := []struct {
		name string
		env  string
		f    *os.File
		want bool
	}{
		{"same_file", streamID, stream, true},
		{"other_file", streamID, other, false},
		{"unset", "", stream, false},
		{"garbage", "journal", stream, false},
		{"trailing_garbage", streamID + "x", stream, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isJournalStream(tc.env, int(tc.f.Fd())); got != tc.want {
				t.Errorf("isJournalStream(%q, %s) = %v, want %v", tc.env, tc.f.Name(), got, tc.want)
			}
		})
	}
}
