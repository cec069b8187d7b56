package journal

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// logBuf collects log output so that tests can assert on warnings.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// fakeClock is an injectable wall clock.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// testOpts returns options for tests: no fsync, a logger that writes to
// the test's output and to lb.
func testOpts(t testing.TB, lb *logBuf) Options {
	var w io.Writer = t.Output()
	if lb != nil {
		w = io.MultiWriter(t.Output(), lb)
	}
	return Options{NoSync: true, Log: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

// MustOpen opens a journal and closes it at the end of the test.
func MustOpen(t testing.TB, dir string, opts Options) *Journal {
	t.Helper()
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func MustAdd(t testing.TB, j *Journal, id string, payload []byte) {
	t.Helper()
	dup, err := j.AddInbound(context.Background(), id, payload)
	if err != nil || dup {
		t.Fatalf("AddInbound(%q) = %v, %v; want false, nil", id, dup, err)
	}
}

func MustAppend(t testing.TB, j *Journal, topic string, payload []byte) uint64 {
	t.Helper()
	seq, _, err := j.AppendOutbound(context.Background(), topic, payload)
	if err != nil {
		t.Fatalf("AppendOutbound(%q): %v", topic, err)
	}
	return seq
}

func MustClose(t testing.TB, j *Journal) {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// allOutbound walks the pending answers in order.
func allOutbound(t testing.TB, j *Journal) []Out {
	t.Helper()
	var outs []Out
	var after uint64
	for {
		o, ok, err := j.NextOutbound(after)
		if err != nil {
			t.Fatalf("NextOutbound(%d): %v", after, err)
		}
		if !ok {
			return outs
		}
		outs = append(outs, o)
		after = o.Seq
	}
}

// segments lists the segment files in dir.
func segments(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "journal-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// copyDir copies the regular files of src into a new temporary dir.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// AwaitGoroutines polls until at most n goroutines run, for up to max,
// and returns an error with the last count and the stacks if not.
func AwaitGoroutines(n int, max time.Duration) error {
	deadline := time.Now().Add(max)
	for {
		got := runtime.NumGoroutine()
		if got <= n {
			return nil
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("%d goroutines, want at most %d:\n%s", got, n, buf)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func payload(id string, n int) []byte {
	p := bytes.Repeat([]byte(id), n/max(len(id), 1)+1)
	return p[:n]
}
