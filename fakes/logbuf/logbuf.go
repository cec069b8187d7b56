// Package logbuf is a log sink for tests: the code under test writes to
// it (an slog handler, a worker's stderr) from its own goroutines while
// the test reads what was written.
package logbuf

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer safe for one writer and readers at once. The
// zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestLogger returns a logger that writes to the test's output at level
// and above, until the test ends: goroutines that outlive a test (mochi's
// connections, which its Close does not wait for) may still log, and
// writing to a finished test's output panics.
func TestLogger(t testing.TB, level slog.Level) *slog.Logger {
	w := &untilDone{w: t.Output()}
	t.Cleanup(w.done)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type untilDone struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (u *untilDone) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return len(p), nil
	}
	return u.w.Write(p)
}

func (u *untilDone) done() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
}
