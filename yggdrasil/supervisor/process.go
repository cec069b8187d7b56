//go:build linux

package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"syscall"
)

// process is one started worker process. The supervision loop sees
// processes only through this seam, so that its timing can be tested in a
// synctest bubble with fake processes.
type process interface {
	// pid is the process id.
	pid() int
	// wait blocks until the process has exited and been reaped, and returns
	// its exit status as text ("exit status 1", "signal: killed") and the
	// error from exec.Cmd.Wait (nil for a clean exit).
	wait() (status string, err error)
}

// spawnFunc starts the worker at path with the environment env. The process
// must be stopped (SIGTERM, then SIGKILL after the grace period) when ctx is
// done.
type spawnFunc func(ctx context.Context, name, path string, env []string) (process, error)

// startReq asks the starter thread to start cmd.
type startReq struct {
	cmd  *exec.Cmd
	errc chan<- error
}

// runStarter starts the commands it receives until reqs is closed.
//
// Every worker is started here, on one goroutine locked to its OS thread
// for its whole life. The reason is Pdeathsig: Linux sends the parent-death
// signal when the thread that forked the child exits, not when the process
// does. Go may end an OS thread whenever a goroutine that locked it exits
// without unlocking (any library may do that), so a child forked from an
// arbitrary thread could get SIGTERM while yggd is alive and well. Locking
// the thread only around each Start is not enough for the same reason: once
// unlocked, the thread is back in the pool for anyone to lock and end. This
// goroutine therefore keeps its thread until Run has reaped every worker and
// closes reqs; it then returns still locked, so the runtime ends the thread,
// which can only signal children that should not exist any more.
func runStarter(reqs <-chan startReq) {
	runtime.LockOSThread()
	for r := range reqs {
		r.errc <- r.cmd.Start()
	}
}

// spawnExec is the real spawnFunc: it starts path as a child process with
// exactly env as its environment, through the starter thread.
func (s *Supervisor) spawnExec(ctx context.Context, name, path string, env []string) (process, error) {
	// Checked again before every start, restarts included, in case a
	// change has not been seen yet (an ancestor's sends no event).
	if err := checkWorker(s.cfg.Dir, name, s.euid); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = make([]string, len(env)) // never nil: nil would inherit yggd's environment
	copy(cmd.Env, env)
	cmd.Dir = s.cfg.WorkDir
	// cmd.Stdin stays nil: the child reads /dev/null.
	log := s.log.With("worker", name)
	started := make(chan struct{}) // closed once Start has returned
	stdout := &lineLogger{log: log, level: slog.LevelDebug, stream: "stdout", started: started}
	stderr := &lineLogger{log: log, level: slog.LevelInfo, stream: "stderr", started: started}
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGTERM,
		Setpgid:   false, // stays in yggd's group: a terminal ^C reaches workers too
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = s.cfg.Grace

	errc := make(chan error, 1)
	select {
	case s.startReqs <- startReq{cmd: cmd, errc: errc}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	err := <-errc
	if err == nil {
		stdout.pid = cmd.Process.Pid
		stderr.pid = cmd.Process.Pid
	}
	close(started)
	if err != nil {
		return nil, err
	}
	return &execProcess{cmd: cmd, stdout: stdout, stderr: stderr}, nil
}

// execProcess is a process started by os/exec.
type execProcess struct {
	cmd            *exec.Cmd
	stdout, stderr *lineLogger
}

func (p *execProcess) pid() int { return p.cmd.Process.Pid }

func (p *execProcess) wait() (string, error) {
	err := p.cmd.Wait()
	// Wait has closed the pipes and its copying goroutines are done: the
	// loggers are ours again.
	p.stdout.flush(false)
	p.stderr.flush(false)
	status := "unknown"
	if p.cmd.ProcessState != nil {
		status = p.cmd.ProcessState.String()
	}
	return status, err
}

// maxLine is the longest line logged in one record; longer lines are split.
const maxLine = 8 << 10

// lineLogger is an io.Writer that logs what a worker writes, one record per
// line. It holds at most maxLine bytes of an unfinished line. os/exec calls
// Write from one goroutine per stream, so it needs no lock.
type lineLogger struct {
	log     *slog.Logger
	level   slog.Level
	stream  string
	started <-chan struct{} // closed once pid is set; nil: pid is set
	pid     int
	buf     []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	// A child may write before Start has even returned to us: wait (the
	// pipe holds the output meanwhile) so that every line carries the pid.
	if l.started != nil {
		<-l.started
	}
	n := len(p)
	for len(p) > 0 {
		seg, rest, found := bytes.Cut(p, []byte{'\n'})
		if room := maxLine - len(l.buf); len(seg) > room {
			l.buf = append(l.buf, seg[:room]...)
			p = p[room:]
			l.flush(true)
			continue
		}
		l.buf = append(l.buf, seg...)
		if !found {
			break
		}
		p = rest
		l.flush(false)
	}
	return n, nil
}

// flush logs the buffered line, unless it is empty (blank lines are noise
// in a journal); partial says that it is a piece of a longer line.
func (l *lineLogger) flush(partial bool) {
	line := string(bytes.TrimSuffix(l.buf, []byte{'\r'}))
	l.buf = l.buf[:0]
	if line == "" {
		return
	}
	attrs := make([]slog.Attr, 0, 4)
	if l.pid != 0 {
		attrs = append(attrs, slog.Int("pid", l.pid))
	}
	attrs = append(attrs, slog.String("stream", l.stream), slog.String("line", line))
	if partial {
		attrs = append(attrs, slog.Bool("partial", true))
	}
	l.log.LogAttrs(context.Background(), l.level, "worker output", attrs...)
}
