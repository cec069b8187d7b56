package yggsimcmd

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestFleetFlags: a connect rate whose ticker interval would be zero is a
// usage error, not a panic; a ready file left by an earlier run is
// removed before the fleet starts.
func TestFleetFlags(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	mustStale := func() {
		t.Helper()
		if err := os.WriteFile(ready, []byte("online 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("zero_interval", func(t *testing.T) {
		err := Run(context.Background(), []string{"fleet", "--hosts", "1", "--broker", "tcp://127.0.0.1:1", "--connect-rate", "2e9"}, io.Discard, io.Discard)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("--connect-rate 2e9: %v, want a usage error", err)
		}
	})
	t.Run("stale_ready_file", func(t *testing.T) {
		mustStale()
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the fleet stops at once: it never gets online
		err := Run(ctx, []string{"fleet", "--hosts", "1", "--broker", "tcp://127.0.0.1:1", "--ready-file", ready, "--progress", "0"}, io.Discard, io.Discard)
		if err != nil {
			t.Errorf("fleet: %v", err)
		}
		if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ready file after a run that never got online: %v, want it removed", err)
		}
	})
}

// TestStartProcClosesFiles: bench-fleet's children's output files are
// closed in the parent, also when the child cannot start.
func TestStartProcClosesFiles(t *testing.T) {
	fds := func() int {
		t.Helper()
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		return len(ents)
	}
	dir := t.TempDir()
	before := fds()
	for range 20 {
		if _, err := startProc(context.Background(), dir, "missing", filepath.Join(dir, "no-such-program")); err == nil {
			t.Fatal("startProc of a missing program: no error")
		}
	}
	p, err := startProc(context.Background(), dir, "true", "true")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("true: %v", err)
	}
	if after := fds(); after >= before+20 {
		t.Errorf("%d open files after 21 starts, %d before: the output files leak", after, before)
	}
}
