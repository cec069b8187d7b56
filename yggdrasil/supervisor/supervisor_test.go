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
	"golang.org/x/sys/unix"
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
	awaitScanned(t, s)
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
	s, _, _ := mustRun(t, Config{Dir: dir, RegisterSettle: time.Nanosecond})
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
	_, rec, _ := mustRun(t, Config{Dir: dir})
	// A missing directory is likely a wrong worker-dir: said at warn.
	if r := awaitLogged(t, rec, 1, "worker directory did not exist; created it empty", "dir", dir); r[0].level != slog.LevelWarn {
		t.Errorf("creation logged at %v, want WARN", r[0].level)
	}
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

func TestRunMissingDir(t *testing.T) {
	// The parent is a file: the directory can be neither found nor
	// created, even by root.
	parent := filepath.Join(t.TempDir(), "libexec")
	if err := os.WriteFile(parent, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "yggdrasil")
	var removed removals
	s, rec, _ := mustRun(t, Config{Dir: dir, DirPoll: 10 * time.Millisecond, OnRemoved: removed.add})

	// Said once, at warn, with the fix; the supervisor runs on.
	r := awaitLogged(t, rec, 1, msgDirMissing, "path", dir)[0]
	if r.level != slog.LevelWarn || !strings.Contains(r.attrs["fix"], "mkdir -p "+dir) || !strings.Contains(r.attrs["reason"], "not a directory") {
		t.Errorf("missing directory logged as %v %v, want WARN with reason and fix", r.level, r.attrs)
	}

	// It appears, with a worker: the worker starts, without a restart.
	if err := os.Remove(parent); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeWorker(t, dir, "late-worker", sleeperScript)
	w := awaitRunning(t, s, "late-worker")
	awaitLogged(t, rec, 1, msgDirBack, "path", dir)
	if n := len(rec.find(msgDirMissing)); n != 1 {
		t.Errorf("missing directory logged %d times while it was missing, want once", n)
	}

	// The new directory is watched: a worker added to it starts.
	writeWorker(t, dir, "new-worker", sleeperScript)
	awaitRunning(t, s, "new-worker")

	// It disappears again: said again, and its workers stop.
	if err := os.RemoveAll(parent); err != nil {
		t.Fatal(err)
	}
	awaitLogged(t, rec, 2, msgDirMissing, "path", dir)
	awaitForgotten(t, s, "late-worker")
	awaitForgotten(t, s, "new-worker")
	mustAwaitGone(t, w.PID)

	// And back once more, moved into place this time.
	tmp := filepath.Join(t.TempDir(), "staged")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	writeWorker(t, tmp, "late-worker", sleeperScript)
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	awaitRunning(t, s, "late-worker")
	awaitLogged(t, rec, 2, msgDirBack, "path", dir)
	if n := len(rec.find(msgDirMissing)); n != 2 {
		t.Errorf("missing directory logged %d times, want twice", n)
	}
}

func TestRunWarnsNotRegular(t *testing.T) {
	dir := t.TempDir()
	s, rec, _ := mustRun(t, Config{Dir: dir})
	awaitScanned(t, s)

	pipe := filepath.Join(dir, "pipe-worker")
	if err := unix.Mkfifo(pipe, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "dangling-worker")
	if err := os.Symlink(filepath.Join(dir, "gone"), link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub-worker"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := awaitLogged(t, rec, 1, msgNotRegular, "worker", "pipe-worker")[0]
	if r.level != slog.LevelWarn || r.attrs["reason"] != pipe+" is a named pipe, not a program" || r.attrs["fix"] == "" {
		t.Errorf("named pipe logged as %v %v, want WARN saying what it is, with a fix", r.level, r.attrs)
	}
	r = awaitLogged(t, rec, 1, msgNotRegular, "worker", "dangling-worker")[0]
	if r.level != slog.LevelWarn || !strings.Contains(r.attrs["reason"], "symbolic link to "+filepath.Join(dir, "gone")+", which does not exist") {
		t.Errorf("dangling link logged as %v %v, want WARN naming its target", r.level, r.attrs)
	}

	// Rescans are no news; a sub-directory is not a worker and not news.
	for range 3 {
		mustChmod(t, dir, 0o755)
	}
	writeWorker(t, dir, "marker-worker", sleeperScript)
	awaitRunning(t, s, "marker-worker")
	for _, name := range []string{"pipe-worker", "dangling-worker"} {
		if n := len(rec.find(msgNotRegular, "worker", name)); n != 1 {
			t.Errorf("%s logged %d times, want once", name, n)
		}
	}
	if n := len(rec.find(msgNotRegular, "worker", "sub-worker")); n != 0 {
		t.Errorf("sub-directory logged %d times, want never", n)
	}
	if st := s.Status(); len(st) != 1 {
		t.Errorf("workers %+v, want marker-worker alone", st)
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

// The warnings of the trust rule (trust.go).
const (
	msgFileRefused = "worker file refused: another user could change it"
	msgNotExec     = "worker file not executable"
	msgDirRefused  = "worker directory refused: no worker runs from it until it is fixed"
	msgDirFixed    = "worker directory no longer refused; starting its workers"
	msgDirMissing  = "worker directory does not exist: no worker runs until it does"
	msgDirBack     = "worker directory exists again; starting its workers"
)

// removals records the calls of Config.OnRemoved.
type removals struct {
	mu    sync.Mutex
	names []string
}

func (r *removals) add(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names = append(r.names, name)
}

func (r *removals) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.names)
}

// awaitScanned waits until the supervisor has looked at its directory.
func awaitScanned(t *testing.T, s *Supervisor) {
	t.Helper()
	mustAwait(t, "initial scan", func() error {
		if s.Starting() {
			return errors.New("still starting")
		}
		return nil
	})
}

func TestRunRefusesUnsafeWorkerFile(t *testing.T) {
	dir := t.TempDir()
	s, rec, _ := mustRun(t, Config{Dir: dir})
	awaitScanned(t, s)

	// World-writable, and not executable: neither runs, each is said once.
	loose := writeWorkerMode(t, dir, "loose-worker", sleeperScript, 0o777)
	off := writeWorkerMode(t, dir, "off-worker", sleeperScript, 0o644)
	r := awaitLogged(t, rec, 1, msgFileRefused, "worker", "loose-worker")[0]
	if r.level != slog.LevelWarn || r.attrs["path"] != loose || r.attrs["fix"] != "chmod go-w "+loose ||
		!strings.Contains(r.attrs["reason"], "is writable by group and others (mode 0777)") {
		t.Errorf("refusal logged as %v %v, want WARN with path, reason and fix", r.level, r.attrs)
	}
	r = awaitLogged(t, rec, 1, msgNotExec, "worker", "off-worker")[0]
	if r.level != slog.LevelWarn || r.attrs["fix"] != "chmod +x "+off || !strings.Contains(r.attrs["reason"], "mode 0644") {
		t.Errorf("not executable logged as %v %v, want WARN with mode and fix", r.level, r.attrs)
	}
	for range 3 {
		mustChmod(t, dir, 0o755)   // the directory's own change: a rescan
		mustChmod(t, loose, 0o777) // the files': a check once settled
		mustChmod(t, off, 0o644)
	}
	// Events are handled in order: once marker-worker runs, all of the
	// above has been seen.
	writeWorker(t, dir, "marker-worker", sleeperScript)
	awaitRunning(t, s, "marker-worker")
	for _, name := range []string{"loose-worker", "off-worker"} {
		if st, ok := statusOf(s, name); ok {
			t.Errorf("refused file has a worker: %+v", st)
		}
	}
	if n := len(rec.find(msgFileRefused, "worker", "loose-worker")); n != 1 {
		t.Errorf("loose-worker refusal logged %d times after rescans, want once", n)
	}
	if n := len(rec.find(msgNotExec, "worker", "off-worker")); n != 1 {
		t.Errorf("off-worker logged %d times after rescans, want once", n)
	}

	// Fixed: started, without restarting the supervisor.
	mustChmod(t, loose, 0o755)
	if st := awaitRunning(t, s, "loose-worker"); st.Starts != 1 {
		t.Errorf("loose-worker: %+v, want 1 start", st)
	}
}

func TestRunStopsWorkerMadeUnsafe(t *testing.T) {
	dir := t.TempDir()
	writeWorker(t, dir, "ok-worker", sleeperScript)
	writeWorker(t, dir, "other-worker", sleeperScript)
	var removed removals
	s, rec, _ := mustRun(t, Config{Dir: dir, OnRemoved: removed.add})
	w := awaitRunning(t, s, "ok-worker")
	awaitRunning(t, s, "other-worker")

	// Writable by others while it runs: stopped and forgotten, like a file
	// that lost its exec bit.
	mustChmod(t, w.Path, 0o757)
	awaitForgotten(t, s, "ok-worker")
	mustAwaitGone(t, w.PID)
	r := rec.find(msgFileRefused, "worker", "ok-worker")
	if len(r) != 1 || !strings.Contains(r[0].attrs["reason"], "writable by others (mode 0757)") {
		t.Errorf("refusals %v, want one saying writable by others", r)
	}
	if diff := cmp.Diff([]string{"ok-worker"}, removed.get()); diff != "" {
		t.Errorf("OnRemoved calls (-want +got):\n%s", diff)
	}

	// Fixed, then broken again: said again.
	mustChmod(t, w.Path, 0o755)
	w = awaitRunning(t, s, "ok-worker")
	mustChmod(t, w.Path, 0o775)
	awaitLogged(t, rec, 2, msgFileRefused, "worker", "ok-worker")
	awaitForgotten(t, s, "ok-worker")
	mustAwaitGone(t, w.PID)
	if st, _ := statusOf(s, "other-worker"); st.State != StateRunning || st.Starts != 1 {
		t.Errorf("other-worker: %+v, want running since its first start", st)
	}
}

func TestRunRefusesUnsafeDir(t *testing.T) {
	dir := t.TempDir()
	writeWorker(t, dir, "early-worker", sleeperScript)
	mustChmod(t, dir, 0o777)
	var removed removals
	s, rec, _ := mustRun(t, Config{Dir: dir, OnRemoved: removed.add})

	// Refused as a whole, once, with the reason and the fix; the
	// supervisor runs on.
	r := awaitLogged(t, rec, 1, msgDirRefused, "path", dir)[0]
	if r.level != slog.LevelWarn || r.attrs["fix"] != "chmod go-w "+dir || !strings.Contains(r.attrs["reason"], "(mode 0777)") {
		t.Errorf("refusal logged as %v %v, want WARN with reason and fix", r.level, r.attrs)
	}
	writeWorker(t, dir, "late-worker", sleeperScript)
	awaitLogged(t, rec, 1, "skip worker file: worker directory refused", "worker", "late-worker")
	if st := s.Status(); len(st) != 0 {
		t.Errorf("workers in a refused directory: %+v", st)
	}
	if n := len(rec.find(msgDirRefused)); n != 1 {
		t.Errorf("directory refusal logged %d times, want once", n)
	}

	// Fixed (chmod on the directory itself): every worker starts.
	mustChmod(t, dir, 0o755)
	early := awaitRunning(t, s, "early-worker")
	late := awaitRunning(t, s, "late-worker")
	awaitLogged(t, rec, 1, msgDirFixed)

	// Open again, sticky this time (no excuse for the worker directory):
	// every worker stops, and that is said again.
	mustChmod(t, dir, 0o777|os.ModeSticky)
	awaitForgotten(t, s, "early-worker")
	awaitForgotten(t, s, "late-worker")
	mustAwaitGone(t, early.PID, late.PID)
	r = awaitLogged(t, rec, 2, msgDirRefused)[1]
	if !strings.Contains(r.attrs["reason"], "(mode 1777); the worker directory must not be, sticky or not") {
		t.Errorf("second refusal: reason %q, want it to say sticky does not help", r.attrs["reason"])
	}
	if diff := cmp.Diff([]string{"early-worker", "late-worker"}, slices.Sorted(slices.Values(removed.get()))); diff != "" {
		t.Errorf("OnRemoved calls (-want +got):\n%s", diff)
	}
}

func TestRunOnRemoved(t *testing.T) {
	dir := t.TempDir()
	writeWorker(t, dir, "gone-worker", sleeperScript)
	writeWorker(t, dir, "crash-worker", crasherScript)
	writeWorker(t, dir, "stay-worker", sleeperScript)
	var removed removals
	s, _, stop := mustRun(t, Config{
		Dir:       dir,
		Backoff:   Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		OnRemoved: removed.add,
	})
	gone := awaitRunning(t, s, "gone-worker")
	awaitRunning(t, s, "stay-worker")
	mustAwait(t, "crash-worker restarted", func() error {
		if st, _ := statusOf(s, "crash-worker"); st.Starts < 3 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})

	if err := os.Remove(gone.Path); err != nil {
		t.Fatal(err)
	}
	awaitForgotten(t, s, "gone-worker")
	stop()
	// Not for restarts, nor for the workers stopped by shutdown.
	if diff := cmp.Diff([]string{"gone-worker"}, removed.get()); diff != "" {
		t.Errorf("OnRemoved calls (-want +got):\n%s", diff)
	}
}
