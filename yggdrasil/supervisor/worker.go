//go:build linux

package supervisor

import (
	"context"
	"log/slog"
	"time"
)

// State is where a worker is in its life cycle.
type State int

const (
	// StateStopped: no process and none planned (stopped on shutdown, or
	// being stopped because its file went away).
	StateStopped State = iota
	// StateStarting: its process is being started.
	StateStarting
	// StateRunning: its process runs.
	StateRunning
	// StateRestarting: its process exited (or could not be started) and
	// the next start is due at WorkerStatus.NextStart. The worker is down.
	StateRestarting
	// StateDisabled: its settings say enabled = false; it is not started
	// until they change.
	StateDisabled
)

func (st State) String() string {
	switch st {
	case StateStopped:
		return "stopped"
	case StateStarting:
		return "starting"
	case StateRunning:
		return "running"
	case StateRestarting:
		return "restarting"
	case StateDisabled:
		return "disabled"
	}
	return "unknown"
}

// WorkerStatus is a snapshot of one worker.
type WorkerStatus struct {
	Name       string
	Path       string
	State      State
	PID        int       // current process, 0 when none
	StartedAt  time.Time // start of the current process, zero when none
	Registered bool      // the current process has registered with the dispatcher
	Starts     int       // processes started for this file since it appeared
	// Failures counts the consecutive exits of processes that ran less
	// than Backoff.HealthyAfter, and failed starts; 0 once a process has
	// been up that long. A worker that keeps failing shows Failures > 0
	// and State restarting.
	Failures   int
	LastExit   string    // status of the last exit ("exit status 1", "signal: killed"), "" if none yet
	LastExitAt time.Time // when the last process exited, zero if none yet
	LastErr    error     // why the last process ended or failed to start; nil after a clean exit
	NextStart  time.Time // when restarting: when the next start is due
}

// worker is the supervisor's record of one worker file.
type worker struct {
	name, path string

	// Owned by Run's goroutine.
	cancel   context.CancelFunc // stops the supervision goroutine; nil when none runs
	stopping bool               // cancel was called
	removed  bool               // the file is gone: forget the worker once stopped
	again    bool               // check the file again once stopped
	// env is the environment of its processes, from its settings. It is
	// written only while no supervision goroutine runs; the one that
	// launch starts reads it.
	env []string

	// Guarded by Supervisor.mu.
	state          State
	pid            int
	startedAt      time.Time
	registered     bool
	registeredAt   time.Time // the current process's last registration
	lastRegistered bool      // the previous process had registered
	starts         int
	failures       int
	lastExit       string
	lastExitAt     time.Time
	lastErr        error
	nextStart      time.Time
}

func (w *worker) status() WorkerStatus {
	return WorkerStatus{
		Name:       w.name,
		Path:       w.path,
		State:      w.state,
		PID:        w.pid,
		StartedAt:  w.startedAt,
		Registered: w.registered,
		Starts:     w.starts,
		Failures:   w.failures,
		LastExit:   w.lastExit,
		LastExitAt: w.lastExitAt,
		LastErr:    w.lastErr,
		NextStart:  w.nextStart,
	}
}

// supervise runs w until ctx is done: start a process, wait for it to end,
// wait the backoff delay, start again. It returns with no process left.
func (s *Supervisor) supervise(ctx context.Context, w *worker) {
	log := s.log.With("worker", w.name)
	var delay time.Duration
	for {
		s.mu.Lock()
		w.state = StateStarting
		w.nextStart = time.Time{}
		s.mu.Unlock()
		s.changed(w)

		p, err := s.spawn(ctx, w.name, w.path, w.env)
		if err != nil {
			if ctx.Err() != nil {
				s.setStopped(w)
				return
			}
			delay = s.cfg.Backoff.Next(delay, 0)
			s.mu.Lock()
			w.failures++
			w.lastErr = err
			s.mu.Unlock()
			log.Error("cannot start worker", "path", w.path, "err", err, "restart_in", delay)
		} else {
			pid, started := p.pid(), time.Now()
			s.mu.Lock()
			w.state = StateRunning
			w.pid = pid
			w.startedAt = started
			w.registered = false
			w.starts++
			s.pids[pid] = w
			s.mu.Unlock()
			s.changed(w)
			log.Info("worker started", "pid", pid, "path", w.path)

			late := time.AfterFunc(s.cfg.LateWindow, func() { s.warnUnregistered(log, w, pid) })
			status, err := p.wait()
			late.Stop()
			ran := time.Since(started)
			stopped := ctx.Err() != nil
			if !stopped {
				delay = s.cfg.Backoff.Next(delay, ran)
			}
			s.mu.Lock()
			if s.pids[pid] == w {
				delete(s.pids, pid)
			}
			w.pid = 0
			w.startedAt = time.Time{}
			w.lastRegistered = w.registered
			w.registered = false
			w.lastExit = status
			w.lastExitAt = started.Add(ran)
			w.lastErr = err
			switch {
			case stopped:
			case ran >= s.cfg.Backoff.HealthyAfter:
				w.failures = 0
			default:
				w.failures++
			}
			failures := w.failures
			s.mu.Unlock()
			if s.cfg.OnExit != nil {
				s.cfg.OnExit(w.name, pid)
			}
			if stopped {
				log.Info("worker stopped", "pid", pid, "status", status)
				s.setStopped(w)
				return
			}
			log.Warn("worker exited", "pid", pid, "status", status,
				"ran", ran.Round(time.Millisecond), "failures", failures, "restart_in", delay)
		}

		s.mu.Lock()
		w.state = StateRestarting
		w.nextStart = time.Now().Add(delay)
		s.mu.Unlock()
		s.changed(w)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			s.setStopped(w)
			return
		case <-t.C:
		}
	}
}

// warnUnregistered logs at warn that process pid of w has not registered
// with the dispatcher, LateWindow after its start, unless it has or is gone.
func (s *Supervisor) warnUnregistered(log *slog.Logger, w *worker, pid int) {
	s.mu.Lock()
	late := w.pid == pid && !w.registered
	s.mu.Unlock()
	if late {
		log.Warn(msgUnregistered, "pid", pid, "after", s.cfg.LateWindow,
			"fix", "see the worker's own log lines; it must connect to $YGG_SOCKET_ADDR and register its directive")
	}
}

func (s *Supervisor) setStopped(w *worker) {
	s.mu.Lock()
	w.state = StateStopped
	w.nextStart = time.Time{}
	s.mu.Unlock()
	s.changed(w)
}

// changed passes w's new state to OnState.
func (s *Supervisor) changed(w *worker) {
	if s.cfg.OnState == nil {
		return
	}
	s.mu.Lock()
	st := w.status()
	s.mu.Unlock()
	s.cfg.OnState(st)
}
