//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRunEnvAndOutput(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary, reached through a symbolic link, prints its
	// environment.
	if err := os.Symlink(exe, filepath.Join(dir, "env-worker")); err != nil {
		t.Fatal(err)
	}
	writeWorker(t, dir, "talk-worker", sleeperScript)
	env := append(slices.Clone(testEnv), "SUPERVISOR_TEST_ROLE=envdump")
	t.Setenv("SUPERVISOR_TEST_LEAK", "must not reach workers")

	s, rec, _ := mustRun(t, Config{Dir: dir, Env: env})

	mustAwait(t, "env-worker prints its environment", func() error {
		if n := len(rec.find("worker output", "worker", "env-worker")); n < len(env) {
			return fmt.Errorf("%d lines of output, want %d", n, len(env))
		}
		return nil
	})
	var got []string
	for _, r := range rec.find("worker output", "worker", "env-worker") {
		if r.level != slog.LevelDebug || r.attrs["stream"] != "stdout" {
			t.Errorf("env-worker stdout line logged at %v stream %q, want DEBUG stdout", r.level, r.attrs["stream"])
		}
		got = append(got, strings.TrimPrefix(r.attrs["line"], "ENV "))
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(env))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("worker environment (-want +got):\n%s", diff)
	}

	talk := awaitRunning(t, s, "talk-worker")
	mustAwait(t, "talk-worker output", func() error {
		if len(rec.find("worker output", "worker", "talk-worker", "line", "hello stdout")) == 0 ||
			len(rec.find("worker output", "worker", "talk-worker", "line", "hello stderr")) == 0 {
			return errors.New("lines not logged yet")
		}
		return nil
	})
	for _, tt := range []struct {
		line, stream string
		level        slog.Level
	}{
		{"hello stdout", "stdout", slog.LevelDebug},
		{"hello stderr", "stderr", slog.LevelInfo},
	} {
		r := rec.find("worker output", "worker", "talk-worker", "line", tt.line)[0]
		if r.level != tt.level || r.attrs["stream"] != tt.stream || r.attrs["pid"] != strconv.Itoa(talk.PID) {
			t.Errorf("%q logged as %v %v, want level %v stream %s pid %d", tt.line, r.level, r.attrs, tt.level, tt.stream, talk.PID)
		}
	}
}

func TestRunSplitsLongLines(t *testing.T) {
	dir := t.TempDir()
	writeWorker(t, dir, "long-worker", "head -c 20000 /dev/zero | tr '\\0' x\necho\necho after\nexec sleep 1000\n")
	_, rec, _ := mustRun(t, Config{Dir: dir})
	mustAwait(t, "long-worker output", func() error {
		if len(rec.find("worker output", "worker", "long-worker", "line", "after")) == 0 {
			return errors.New("not logged yet")
		}
		return nil
	})
	var lens []int
	var partial []string
	for _, r := range rec.find("worker output", "worker", "long-worker") {
		lens = append(lens, len(r.attrs["line"]))
		partial = append(partial, r.attrs["partial"])
	}
	if diff := cmp.Diff([]int{maxLine, maxLine, 20000 - 2*maxLine, len("after")}, lens); diff != "" {
		t.Errorf("line lengths (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"true", "true", "", ""}, partial); diff != "" {
		t.Errorf("partial marks (-want +got):\n%s", diff)
	}
}

func TestRunRestartsCrashedWorker(t *testing.T) {
	dir := t.TempDir()
	writeWorker(t, dir, "crash-worker", crasherScript)
	var mu sync.Mutex
	var exited []int
	fds := openFDs(t)
	s, rec, stop := mustRun(t, Config{
		Dir:     dir,
		Backoff: Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		OnExit: func(name string, pid int) {
			mu.Lock()
			defer mu.Unlock()
			if name == "crash-worker" {
				exited = append(exited, pid)
			}
		},
	})
	const restarts = 25
	var st WorkerStatus
	mustAwait(t, "crash-worker restarted", func() error {
		st, _ = statusOf(s, "crash-worker")
		if st.Starts < restarts || st.State != StateRestarting {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	// Upstream leaked two pipe descriptors per restart.
	if n := openFDs(t); n > fds+10 {
		t.Errorf("open descriptors grew from %d to %d after %d restarts", fds, n, st.Starts)
	}
	if st.Failures < restarts || st.LastExit != "exit status 3" {
		t.Errorf("status %+v, want failures >= %d, last exit status 3", st, restarts)
	}
	var ee *exec.ExitError
	if !errors.As(st.LastErr, &ee) {
		t.Errorf("LastErr = %v, want an *exec.ExitError", st.LastErr)
	}
	stop()
	st, _ = statusOf(s, "crash-worker")
	mu.Lock()
	defer mu.Unlock()
	if len(exited) < restarts || len(exited) != st.Starts {
		t.Errorf("OnExit called %d times, want one per start (%d)", len(exited), st.Starts)
	}
	exits := rec.find("worker exited", "worker", "crash-worker", "status", "exit status 3")
	if len(exits) < restarts-1 || exits[0].attrs["restart_in"] != "5ms" {
		t.Errorf("exit logs: %d (first %v), want >= %d with restart_in 5ms first", len(exits), exits[0].attrs, restarts-1)
	}
	mustAwaitGone(t, exited...)
}

func TestRunAddAndRemove(t *testing.T) {
	dir := t.TempDir()
	s, rec, _ := mustRun(t, Config{Dir: dir})
	mustAwait(t, "initial scan", func() error {
		if s.Starting() {
			return errors.New("still starting")
		}
		return nil
	})
	if st := s.Status(); len(st) != 0 {
		t.Fatalf("empty dir: status %+v", st)
	}

	// Added while running: started.
	writeWorker(t, dir, "late-worker", sleeperScript)
	late := awaitRunning(t, s, "late-worker")

	// Removing files that run nothing is harmless (upstream panicked).
	junk := []string{"notes.txt", "data-worker", "dir-worker"}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data-worker"), []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir-worker"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range junk {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}

	// Removed while running: stopped, not restarted.
	if err := os.Remove(late.Path); err != nil {
		t.Fatal(err)
	}
	mustAwait(t, "late-worker forgotten", func() error {
		if st, ok := statusOf(s, "late-worker"); ok {
			return fmt.Errorf("still there: %+v", st)
		}
		return nil
	})
	mustAwaitGone(t, late.PID)
	if n := len(rec.find("worker started", "worker", "late-worker")); n != 1 {
		t.Errorf("late-worker started %d times, want 1", n)
	}
	if r := rec.find("worker stopped", "worker", "late-worker"); len(r) != 1 || r[0].attrs["status"] != "signal: terminated" {
		t.Errorf("stop logs %v, want one with signal: terminated", r)
	}

	// Not executable: skipped until chmod +x. The supervisor handles
	// events in order, so once marker-worker runs it has seen off-worker.
	if err := os.WriteFile(filepath.Join(dir, "off-worker"), []byte("#!/bin/sh\n"+sleeperScript), 0o644); err != nil {
		t.Fatal(err)
	}
	writeWorker(t, dir, "marker-worker", sleeperScript)
	awaitRunning(t, s, "marker-worker")
	if st, ok := statusOf(s, "off-worker"); ok {
		t.Errorf("non-executable file has a worker: %+v", st)
	}
	if err := os.Chmod(filepath.Join(dir, "off-worker"), 0o755); err != nil {
		t.Fatal(err)
	}
	off := awaitRunning(t, s, "off-worker")

	// Losing its exec bit stops a worker.
	if err := os.Chmod(off.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	mustAwait(t, "off-worker stopped", func() error {
		if st, ok := statusOf(s, "off-worker"); ok {
			return fmt.Errorf("still there: %+v", st)
		}
		return nil
	})
	mustAwaitGone(t, off.PID)

	// Written in place (not renamed): started once complete.
	if err := os.WriteFile(filepath.Join(dir, "direct-worker"), []byte("#!/bin/sh\n"+sleeperScript), 0o755); err != nil {
		t.Fatal(err)
	}
	awaitRunning(t, s, "direct-worker")
}

func TestRunRestartsReplacedWorker(t *testing.T) {
	dir := t.TempDir()
	writeWorker(t, dir, "swap-worker", sleeperScript)
	s, rec, _ := mustRun(t, Config{Dir: dir})
	old := awaitRunning(t, s, "swap-worker")

	writeWorker(t, dir, "swap-worker", "echo version two\nexec sleep 1000\n")
	mustAwait(t, "new swap-worker", func() error {
		st, _ := statusOf(s, "swap-worker")
		if st.State != StateRunning || st.PID == old.PID || len(rec.find("worker output", "line", "version two")) == 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	mustAwaitGone(t, old.PID)
	if st, _ := statusOf(s, "swap-worker"); st.Starts != 2 || st.Failures != 0 {
		t.Errorf("status %+v, want 2 starts and no failures", st)
	}
}

func TestRunShutdown(t *testing.T) {
	dir := t.TempDir()
	writeWorker(t, dir, "sleep-worker", sleeperScript)
	writeWorker(t, dir, "stubborn-worker", stubbornScript)
	writeWorker(t, dir, "crash-worker", crasherScript)
	var mu sync.Mutex
	var exited []int
	s, rec, stop := mustRun(t, Config{
		Dir:   dir,
		Grace: 300 * time.Millisecond,
		OnExit: func(name string, pid int) {
			mu.Lock()
			defer mu.Unlock()
			exited = append(exited, pid)
		},
	})
	sleeper := awaitRunning(t, s, "sleep-worker")
	stubborn := awaitRunning(t, s, "stubborn-worker")
	mustAwait(t, "stubborn-worker ignores SIGTERM", func() error {
		if len(rec.find("worker output", "worker", "stubborn-worker", "line", "ready")) == 0 {
			return errors.New("not ready")
		}
		return nil
	})
	mustAwait(t, "crash-worker crashed", func() error {
		if st, _ := statusOf(s, "crash-worker"); st.State != StateRestarting {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})

	stop()

	mustAwaitGone(t, sleeper.PID, stubborn.PID)
	want := map[string]string{
		"sleep-worker":    "signal: terminated",
		"stubborn-worker": "signal: killed",
		"crash-worker":    "exit status 3",
	}
	for _, st := range s.Status() {
		if st.State != StateStopped || st.PID != 0 || st.LastExit != want[st.Name] {
			t.Errorf("after shutdown: %+v, want stopped with last exit %q", st, want[st.Name])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, pid := range []int{sleeper.PID, stubborn.PID} {
		if !slices.Contains(exited, pid) {
			t.Errorf("OnExit not called for pid %d (got %v)", pid, exited)
		}
	}
	if s.Starting() {
		t.Errorf("Starting() = true after Run returned")
	}
}

func TestOwner(t *testing.T) {
	dir := t.TempDir()
	pids := t.TempDir()
	script := fmt.Sprintf(`sh -c 'sleep 1000 & echo $! > %[1]s/grandchild; wait' >/dev/null 2>&1 &
echo $! > %[1]s/child
exec sleep 1000
`, pids)
	writeWorker(t, dir, "fork-worker", script)
	writeWorker(t, dir, "other-worker", sleeperScript)
	s, _, stop := mustRun(t, Config{Dir: dir})
	worker := awaitRunning(t, s, "fork-worker")
	other := awaitRunning(t, s, "other-worker")
	var child, grandchild int
	mustAwait(t, "fork-worker's children", func() error {
		var err1, err2 error
		child, err1 = readPID(filepath.Join(pids, "child"))
		grandchild, err2 = readPID(filepath.Join(pids, "grandchild"))
		return errors.Join(err1, err2)
	})
	t.Cleanup(func() {
		// Orphans once the worker is gone: a worker's descendants are its
		// own business.
		syscall.Kill(grandchild, syscall.SIGKILL)
		syscall.Kill(child, syscall.SIGKILL)
	})

	tests := []struct {
		name     string
		pid      int
		wantName string
		wantOK   bool
	}{
		{"worker", worker.PID, "fork-worker", true},
		{"child", child, "fork-worker", true},
		{"grandchild", grandchild, "fork-worker", true},
		{"other_worker", other.PID, "other-worker", true},
		{"yggd_itself", os.Getpid(), "", false},
		{"parent_of_yggd", os.Getppid(), "", false},
		{"init", 1, "", false},
		{"zero", 0, "", false},
		{"negative", -1, "", false},
		{"no_such_process", 1 << 30, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, ok := s.Owner(tt.pid)
			if name != tt.wantName || ok != tt.wantOK {
				t.Errorf("Owner(%d) = %q, %v, want %q, %v", tt.pid, name, ok, tt.wantName, tt.wantOK)
			}
		})
	}

	stop()
	for _, pid := range []int{worker.PID, child, grandchild} {
		if name, ok := s.Owner(pid); ok {
			t.Errorf("after shutdown: Owner(%d) = %q, true, want false", pid, name)
		}
	}
}

func TestRunRegisteredAndStarting(t *testing.T) {
	dir := t.TempDir()
	writeWorker(t, dir, "reg-worker", sleeperScript)
	s, _, _ := mustRun(t, Config{Dir: dir})
	awaitRunning(t, s, "reg-worker")
	if !s.Starting() {
		t.Errorf("unregistered worker just started: Starting() = false, want true")
	}
	s.Registered("reg-worker")
	if st, _ := statusOf(s, "reg-worker"); !st.Registered {
		t.Errorf("status %+v, want registered", st)
	}
	if s.Starting() {
		t.Errorf("all registered: Starting() = true, want false")
	}
}

func TestRunCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "libexec", "yggdrasil")
	mustRun(t, Config{Dir: dir})
	mustAwait(t, "worker dir created", func() error {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != 0o755 || !fi.IsDir() {
			return fmt.Errorf("mode %v, want drwxr-xr-x", fi.Mode())
		}
		return nil
	})
}

func TestRunRefusesBadDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, want string
	}{
		{"not_a_dir", file, "is not a directory"},
		{"unset", "", "no directory configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New(Config{Dir: tt.dir}).Run(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestParentDeathSignal kills a yggd stand-in with SIGKILL and checks that
// its worker does not live on.
func TestParentDeathSignal(t *testing.T) {
	dir := t.TempDir()
	pids := t.TempDir()
	writeWorker(t, dir, "orphan-worker", fmt.Sprintf("echo $$ > %s/worker\nexec sleep 1000\n", pids))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host := exec.Command(exe)
	host.Env = []string{"SUPERVISOR_TEST_ROLE=host", "SUPERVISOR_TEST_DIR=" + dir}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	var worker int
	mustAwait(t, "worker of the host", func() error {
		worker, err = readPID(filepath.Join(pids, "worker"))
		return err
	})
	t.Cleanup(func() { syscall.Kill(worker, syscall.SIGKILL) })

	if err := host.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	host.Wait()
	mustAwaitGone(t, worker)
}
