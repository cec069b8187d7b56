//go:build linux

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary double as a worker and as a yggd stand-in,
// chosen by SUPERVISOR_TEST_ROLE.
func TestMain(m *testing.M) {
	switch os.Getenv("SUPERVISOR_TEST_ROLE") {
	case "envdump":
		// A worker that prints its exact environment, then idles until
		// stopped.
		for _, kv := range os.Environ() {
			fmt.Println("ENV " + kv)
		}
		time.Sleep(time.Hour)
		os.Exit(0)
	case "host":
		// A yggd stand-in that supervises SUPERVISOR_TEST_DIR until killed.
		s := New(Config{Dir: os.Getenv("SUPERVISOR_TEST_DIR"), Env: []string{"PATH=/usr/bin:/bin"}})
		if err := s.Run(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// record is one log record, with its attributes flattened.
type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// recorder keeps every record logged through its handlers, and shows them
// in the test output.
type recorder struct {
	mu   sync.Mutex
	recs []record
}

type recHandler struct {
	rec   *recorder
	out   slog.Handler
	attrs []slog.Attr
}

func newRecorder(t *testing.T) (*recorder, *slog.Logger) {
	r := &recorder{}
	out := slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})
	return r, slog.New(&recHandler{rec: r, out: out})
}

func (h *recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recHandler) Handle(ctx context.Context, r slog.Record) error {
	rec := record{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.rec.mu.Lock()
	h.rec.recs = append(h.rec.recs, rec)
	h.rec.mu.Unlock()
	return h.out.Handle(ctx, r)
}

func (h *recHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &recHandler{rec: h.rec, out: h.out.WithAttrs(attrs), attrs: append(slices.Clone(h.attrs), attrs...)}
}

func (h *recHandler) WithGroup(string) slog.Handler { return h }

// find returns the records that have msg and all the given attributes.
func (r *recorder) find(msg string, attrs ...string) []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []record
next:
	for _, rec := range r.recs {
		if rec.msg != msg {
			continue
		}
		for i := 0; i+1 < len(attrs); i += 2 {
			if rec.attrs[attrs[i]] != attrs[i+1] {
				continue next
			}
		}
		out = append(out, rec)
	}
	return out
}

// mustAwait polls cond until it returns nil, failing the test with cond's
// last error after 15 s.
func mustAwait(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: gave up waiting: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a timing assumption
	}
}

// testEnv is the environment the tests give their workers.
var testEnv = []string{
	"YGG_SOCKET_ADDR=unix:/tmp/yggd-test.sock",
	"PATH=/usr/bin:/bin",
	"YGG_CLIENT_ID=0123456789",
	"YGG_LOG_LEVEL=debug",
}

// mustRun starts a supervisor on cfg (with a short settle time and grace
// period unless set) and returns it with a function that stops it and
// waits for Run to return; that function also runs at cleanup.
func mustRun(t *testing.T, cfg Config) (*Supervisor, *recorder, func()) {
	t.Helper()
	rec, log := newRecorder(t)
	cfg.Log = log
	if cfg.Env == nil {
		cfg.Env = testEnv
	}
	if cfg.Settle == 0 {
		cfg.Settle = 20 * time.Millisecond
	}
	if cfg.Grace == 0 {
		cfg.Grace = 2 * time.Second
	}
	s := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return 30 s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return s, rec, stop
}

// writeWorker installs a shell script worker atomically (write, then rename
// into place), as a package manager would.
func writeWorker(t *testing.T, dir, name, script string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeWorkerMode installs a shell script worker with mode perm, set before
// it appears under its name, so that it is never seen with another mode.
func writeWorkerMode(t *testing.T, dir, name, script string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\n"+script), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// mustChmod changes the mode of path.
func mustChmod(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// awaitForgotten waits until the supervisor has forgotten worker name.
func awaitForgotten(t *testing.T, s *Supervisor, name string) {
	t.Helper()
	mustAwait(t, name+" forgotten", func() error {
		if st, ok := statusOf(s, name); ok {
			return fmt.Errorf("still there: %+v", st)
		}
		return nil
	})
}

// awaitLogged waits until n records have msg and the given attributes.
func awaitLogged(t *testing.T, rec *recorder, n int, msg string, attrs ...string) []record {
	t.Helper()
	var got []record
	mustAwait(t, fmt.Sprintf("%d %q logs with %v", n, msg, attrs), func() error {
		got = rec.find(msg, attrs...)
		if len(got) < n {
			return fmt.Errorf("%d logged", len(got))
		}
		return nil
	})
	return got
}

// Test worker scripts.
const (
	sleeperScript = "echo \"hello stdout\"\necho \"hello stderr\" >&2\nexec sleep 1000\n"
	crasherScript = "echo \"crashing\" >&2\nexit 3\n"
	// stubbornScript ignores SIGTERM (sleep inherits the ignored signal).
	stubbornScript = "trap '' TERM\necho ready\nexec sleep 1000\n"
)

// statusOf returns the status of worker name.
func statusOf(s *Supervisor, name string) (WorkerStatus, bool) {
	for _, st := range s.Status() {
		if st.Name == name {
			return st, true
		}
	}
	return WorkerStatus{}, false
}

// awaitRunning waits until worker name runs and returns its status.
func awaitRunning(t *testing.T, s *Supervisor, name string) WorkerStatus {
	t.Helper()
	var st WorkerStatus
	mustAwait(t, name+" running", func() error {
		var ok bool
		st, ok = statusOf(s, name)
		if !ok {
			return fmt.Errorf("no status for %s in %+v", name, s.Status())
		}
		if st.State != StateRunning || st.PID == 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	return st
}

// processGone reports nil once pid no longer exists (or is a zombie that
// its new parent has yet to reap).
func processGone(pid int) error {
	err := unix.Kill(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if b, rerr := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); rerr == nil {
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return nil
		}
	}
	return fmt.Errorf("process %d still exists (kill 0: %v)", pid, err)
}

// mustAwaitGone waits until every pid has gone.
func mustAwaitGone(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		mustAwait(t, fmt.Sprintf("pid %d gone", pid), func() error { return processGone(pid) })
	}
}

// readPID reads a pid file written by a test worker.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", path, err)
	}
	return pid, nil
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// superviseWorker adds the worker name (at /nonexistent/name) to s and
// supervises it; stop ends the supervision and waits for it.
func superviseWorker(t *testing.T, s *Supervisor, name string) (w *worker, stop func()) {
	w = &worker{name: name, path: "/nonexistent/" + name}
	s.workers[w.name] = w
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		s.supervise(ctx, w)
		close(done)
	}()
	return w, func() { cancel(); <-done }
}
