//go:build linux

package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for Config.
const (
	DefaultGrace      = 5 * time.Second
	DefaultLateWindow = 30 * time.Second
	DefaultSettle     = 500 * time.Millisecond
	// DefaultRegisterSettle is how long after a worker's registration it
	// counts as still registering: a worker that serves several handlers
	// registers them one after the other, and a message for the second
	// must not be refused in between.
	DefaultRegisterSettle = 2 * time.Second
	DefaultDirPoll        = 2 * time.Second
)

// Config is what a Supervisor needs.
type Config struct {
	// Dir is the worker directory. It is created (0755) if missing. No
	// worker runs from it while another user than root or yggd's could
	// change what runs (see trust.go).
	Dir string
	// Env is the environment of every worker, as "KEY=value"
	// (YGG_SOCKET_ADDR, PATH, YGG_CLIENT_ID, YGG_LOG_LEVEL). Nothing else
	// is passed on but what a worker's settings add (SettingsDir), which
	// cannot replace these; nil means an empty environment.
	Env []string
	// SettingsDir holds the optional settings file of each worker,
	// <worker file name>.toml: whether it runs, and what is added to its
	// environment (see settings.go). "" means none: every worker runs
	// with Env. A directory that does not exist is one without files.
	SettingsDir string
	// ProxyEnv is added to the environment of the workers whose settings
	// say proxy = true, as "KEY=value": yggd's own proxy variables (see
	// ProxyEnv).
	ProxyEnv []string
	// WorkDir is the workers' working directory (default "/"). yggd sets
	// its socket directory, where 0.1.x workers create their sockets.
	WorkDir string
	// Log receives the supervisor's logs and the workers' output; nil
	// discards them.
	Log *slog.Logger
	// Grace is how long a worker has to exit after SIGTERM before it gets
	// SIGKILL (default 5 s). It also bounds how long output pipes held
	// open by a worker's descendants are read after the worker exits.
	Grace time.Duration
	// Backoff is the restart schedule (defaults 1 s, 30 s, 60 s).
	Backoff Backoff
	// LateWindow is how long after its start a worker that has not
	// registered yet still counts as Starting (default 30 s). A worker
	// that has not registered by then is logged at warn, once per start.
	LateWindow time.Duration
	// DirPoll is how often a missing worker directory is looked for
	// (default 2 s): once it exists again it is watched and its workers
	// start.
	DirPoll time.Duration
	// Settle is how quiet a new or changed file must stay before it is
	// started (default 500 ms).
	Settle time.Duration
	// RegisterSettle: see DefaultRegisterSettle.
	RegisterSettle time.Duration
	// OnExit, if set, is called after a worker process has exited and been
	// reaped, with the worker's name and the process's pid. It runs on the
	// supervisor's goroutine for that worker and must return quickly.
	OnExit func(name string, pid int)
	// OnRemoved, if set, is called when the supervisor forgets a worker
	// for good because its file was removed or refused (not after an exit
	// or a restart, nor on shutdown). It runs on the supervisor's
	// goroutine and must return quickly.
	OnRemoved func(name string)
	// OnState, if set, is called with a worker's status each time it
	// changes state (starting, running, restarting, stopped, disabled).
	// It runs on the worker's supervision goroutine (on Run's for
	// disabled) and must return quickly.
	OnState func(WorkerStatus)
}

// Supervisor runs the workers of one directory. Its methods are safe for
// concurrent use.
type Supervisor struct {
	cfg   Config
	log   *slog.Logger
	spawn spawnFunc
	ran   atomic.Bool
	euid  int // trusted to own worker files, with root

	startReqs chan startReq // to the starter thread, set by Run

	mu      sync.Mutex
	workers map[string]*worker // by file name
	pids    map[int]*worker    // by current process id
	pending int                // files waiting to settle
	scanned bool               // Run has looked at the directory (or returned)

	// Owned by Run's goroutine.
	exited   chan *worker           // a supervision goroutine has ended
	active   int                    // supervision goroutines running
	due      map[string]settleCheck // files waiting to settle
	shutdown bool
	dirErr   error              // why the worker directory is refused, nil if it is not
	warned   map[string]warning // files whose refusal was logged, by name
	// settingsDirErr is why the settings directory is missing or
	// refused, nil if it is neither.
	settingsDirErr error
	settingsLogged map[string]string // what was last logged about a worker's settings, by worker
}

// warning is a refusal that was logged, to log it once per file.
type warning struct {
	what     string // the log message
	dev, ino uint64 // the directory entry refused: a new file is logged again
}

// settleCheck is a file to look at once it has been quiet.
type settleCheck struct {
	at       time.Time
	replaced bool // its content changed: restart a running worker
}

// New returns a supervisor for cfg; Run starts it.
func New(cfg Config) *Supervisor {
	if cfg.Dir != "" {
		if abs, err := filepath.Abs(cfg.Dir); err == nil {
			cfg.Dir = abs // workers run in "/": their path must not be relative
		}
	}
	if cfg.SettingsDir != "" {
		if abs, err := filepath.Abs(cfg.SettingsDir); err == nil {
			cfg.SettingsDir = abs
		}
	}
	cfg.Env = slices.Clone(cfg.Env)
	cfg.ProxyEnv = slices.Clone(cfg.ProxyEnv)
	if cfg.WorkDir == "" {
		cfg.WorkDir = "/"
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.LateWindow <= 0 {
		cfg.LateWindow = DefaultLateWindow
	}
	if cfg.Settle <= 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.RegisterSettle <= 0 {
		cfg.RegisterSettle = DefaultRegisterSettle
	}
	if cfg.DirPoll <= 0 {
		cfg.DirPoll = DefaultDirPoll
	}
	cfg.Backoff = cfg.Backoff.withDefaults()
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{
		cfg:     cfg,
		log:     log.With("component", "supervisor"),
		workers: map[string]*worker{},
		pids:    map[int]*worker{},
		exited:  make(chan *worker),
		due:     map[string]settleCheck{},
		warned:  map[string]warning{},
		euid:    os.Geteuid(),

		settingsLogged: map[string]string{},
	}
	s.spawn = s.spawnExec
	return s
}

// isWorkerName reports whether a directory entry is meant to be a worker.
func isWorkerName(name string) bool { return IsWorkerName(name) }

// Run starts the workers, keeps them running and follows the directory
// until ctx is done; then it stops every worker and returns once all of
// them have been reaped. It returns nil after cancellation, and an error
// only if the worker directory is unusable. Run may be called once.
func (s *Supervisor) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("run supervisor: already run")
	}
	defer func() {
		s.mu.Lock()
		s.scanned = true
		s.mu.Unlock()
	}()
	if err := ensureDir(s.cfg.Dir, s.log); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup

	reqs := make(chan startReq)
	s.startReqs = reqs
	wg.Go(func() { runStarter(reqs) })

	// Each directory is watched while it exists; while it cannot be (it
	// could not be created, or was removed or moved away), it is looked
	// for every DirPoll.
	workers := newFollower(s.cfg.Dir, "worker directory")
	workers.attach(ctx, &wg, s.log)
	var sets *follower // the settings directory, if any
	if s.cfg.SettingsDir != "" {
		sets = newFollower(s.cfg.SettingsDir, "worker settings directory")
		sets.attach(ctx, &wg, s.log)
	}

	s.log.Info("supervising workers", "dir", s.cfg.Dir, "settings_dir", s.cfg.SettingsDir)
	s.scan(ctx, &wg)
	s.mu.Lock()
	s.scanned = true
	s.mu.Unlock()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	poll := time.NewTimer(time.Hour)
	poll.Stop()
	setsPoll := time.NewTimer(time.Hour)
	setsPoll.Stop()
	for ctx.Err() == nil {
		var timerC, setsPollC <-chan time.Time
		var setsEv <-chan dirEvent
		if at, ok := s.nextDue(); ok {
			timer.Reset(time.Until(at))
			timerC = timer.C
		}
		pollC := workers.pollTimer(poll, s.cfg.DirPoll)
		if sets != nil {
			setsEv = sets.events
			setsPollC = sets.pollTimer(setsPoll, s.cfg.DirPoll)
		}
		select {
		case <-ctx.Done():
		case ev := <-workers.events:
			workers.gone(ev) // Run looks for it to come back
			s.handle(ctx, &wg, ev)
		case ev := <-setsEv:
			if sets.gone(ev) || s.handleSettings(ev) {
				s.scan(ctx, &wg)
			}
		case <-timerC:
			s.settled(ctx, &wg)
		case <-pollC:
			workers.pollAt = time.Time{}
			if workers.attach(ctx, &wg, s.log) {
				s.scan(ctx, &wg)
			}
		case <-setsPollC:
			sets.pollAt = time.Time{}
			if sets.attach(ctx, &wg, s.log) {
				s.scan(ctx, &wg)
			}
		case w := <-s.exited:
			s.reaped(ctx, &wg, w)
		}
		timer.Stop()
		poll.Stop()
		setsPoll.Stop()
	}

	s.shutdown = true
	s.log.Info("stopping workers", "count", s.active)
	s.due = map[string]settleCheck{}
	s.setPending()
	for s.active > 0 {
		s.reaped(ctx, &wg, <-s.exited)
	}
	workers.detach()
	if sets != nil {
		sets.detach()
	}
	close(reqs)
	wg.Wait()
	s.log.Info("all workers stopped")
	return nil
}

// ensureDir makes sure dir is a directory, creating it if missing. A
// directory that cannot be created is not an error: the supervisor says
// so (checkDir) and waits for it to appear.
func ensureDir(dir string, log *slog.Logger) error {
	if dir == "" {
		return errors.New("prepare worker directory: no directory configured")
	}
	fi, err := os.Stat(dir)
	if isMissing(err) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil
		}
		log.Warn("worker directory did not exist; created it empty", "dir", dir,
			"fix", "install workers there, or set worker-dir to where they are")
		return nil
	}
	if err != nil {
		return fmt.Errorf("prepare worker directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("prepare worker directory: %s is not a directory", dir)
	}
	return nil
}

// isMissing reports whether err says that a path does not exist (or that
// one of its ancestors is not a directory).
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// scan checks the directory, then starts every worker file of it that has
// no worker yet and stops the workers whose file is gone or refused.
func (s *Supervisor) scan(ctx context.Context, wg *sync.WaitGroup) {
	if !s.checkDir() {
		return
	}
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		s.log.Error("cannot list worker directory", "err", err)
		return
	}
	s.checkSettingsDir()
	present := map[string]bool{}
	for _, e := range entries {
		if isWorkerName(e.Name()) {
			present[e.Name()] = true
			s.check(ctx, wg, e.Name(), false)
		}
	}
	for name, w := range s.workers {
		if !present[name] {
			s.stop(w, "file removed")
		}
	}
	for name := range s.warned {
		if !present[name] {
			delete(s.warned, name)
		}
	}
	for name := range s.settingsLogged {
		if !present[name] {
			delete(s.settingsLogged, name)
		}
	}
}

// checkDir checks the worker directory against the trust rule. While it is
// refused every worker is stopped and none is started; that is logged once,
// and so is the fix.
func (s *Supervisor) checkDir() bool {
	err := checkWorkerDir(s.cfg.Dir, s.euid)
	switch {
	case isMissing(err) && !isMissing(s.dirErr):
		s.log.Warn("worker directory does not exist: no worker runs until it does", "path", s.cfg.Dir,
			"reason", err.Error(), "fix", "mkdir -p "+s.cfg.Dir+" and install workers there, or set worker-dir to where they are")
	case err != nil && !isMissing(err) && (s.dirErr == nil || isMissing(s.dirErr)):
		attrs := []any{"path", s.cfg.Dir, "reason", err.Error()}
		var ue *untrustedError
		if errors.As(err, &ue) {
			attrs = append(attrs, "fix", ue.Fix)
		}
		s.log.Warn("worker directory refused: no worker runs from it until it is fixed", attrs...)
	case err == nil && isMissing(s.dirErr):
		s.log.Info("worker directory exists again; starting its workers", "path", s.cfg.Dir)
	case err == nil && s.dirErr != nil:
		s.log.Info("worker directory no longer refused; starting its workers", "path", s.cfg.Dir)
	}
	s.dirErr = err
	if err != nil {
		for _, w := range s.workers {
			s.stop(w, "worker directory refused")
		}
	}
	return err == nil
}

// handle acts on one inotify event.
func (s *Supervisor) handle(ctx context.Context, wg *sync.WaitGroup, ev dirEvent) {
	switch {
	case ev.mask&unix.IN_Q_OVERFLOW != 0:
		s.log.Warn("worker directory events overflowed; rescanning")
		s.scan(ctx, wg)
	case ev.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
		// Removed or moved away: checkDir says so, once, and stops every
		// worker; Run looks for it to come back.
		s.scan(ctx, wg)
	case ev.name == "" && ev.mask&unix.IN_ATTRIB != 0:
		// The directory's own mode or owner changed (chmod, chown):
		// check it again, and every file with it.
		s.scan(ctx, wg)
	case ev.name == "" || ev.mask&unix.IN_ISDIR != 0 || !isWorkerName(ev.name):
	case ev.mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
		delete(s.due, ev.name)
		delete(s.warned, ev.name)
		delete(s.settingsLogged, ev.name)
		s.setPending()
		if w := s.workers[ev.name]; w != nil {
			s.stop(w, "file removed")
		}
	case ev.mask&(unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_ATTRIB) != 0:
		c := s.due[ev.name]
		c.at = time.Now().Add(s.cfg.Settle)
		c.replaced = c.replaced || ev.mask&(unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE) != 0
		s.due[ev.name] = c
		s.setPending()
	}
}

// nextDue returns when the earliest settling file is due.
func (s *Supervisor) nextDue() (time.Time, bool) {
	var at time.Time
	for _, c := range s.due {
		if at.IsZero() || c.at.Before(at) {
			at = c.at
		}
	}
	return at, !at.IsZero()
}

// settled checks the files that have been quiet long enough.
func (s *Supervisor) settled(ctx context.Context, wg *sync.WaitGroup) {
	now := time.Now()
	for name, c := range s.due {
		if !c.at.After(now) {
			delete(s.due, name)
			s.check(ctx, wg, name, c.replaced)
		}
	}
	s.setPending()
	if s.dirErr != nil || (s.settingsDirErr != nil && !isMissing(s.settingsDirErr)) {
		// Nothing runs from a refused directory, or with a refused
		// settings directory; see whether it was fixed (a fixed
		// ancestor sends no event of its own).
		s.scan(ctx, wg)
	}
}

func (s *Supervisor) setPending() {
	s.mu.Lock()
	s.pending = len(s.due)
	s.mu.Unlock()
}

// runnable reports whether name is a file we can and may run, logging why
// not.
func (s *Supervisor) runnable(name string) bool {
	path := filepath.Join(s.cfg.Dir, name)
	if s.dirErr != nil {
		s.log.Debug("skip worker file: worker directory refused", "worker", name, "path", path)
		return false
	}
	v := judgeFile(path, s.euid)
	switch {
	case v.ok:
		delete(s.warned, name)
		return true
	case v.msg == "" && v.err == nil: // gone, or a directory
		delete(s.warned, name)
		return false
	case v.msg == "":
		s.log.Debug("skip worker file", "worker", name, "path", path, "err", v.err)
		return false
	}
	var attrs []any
	if v.fix != "" && !isUntrusted(v.err) {
		attrs = append(attrs, "fix", v.fix)
	}
	s.warnOnce(name, path, v.msg, v.err, attrs...)
	return false
}

// msgNotRegular is logged for a worker name that is not a regular file.
const msgNotRegular = "worker file not a regular file"

// msgUnregistered is logged for a worker process that has not registered
// LateWindow after its start.
const msgUnregistered = "worker has not registered with the dispatcher"

// fileKind names the type of a file that is not a regular file.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}

// warnOnce logs at WARN why the file name is not run, unless that was
// logged already for the same file (directory entry) since it last was
// runnable.
func (s *Supervisor) warnOnce(name, path, msg string, err error, attrs ...any) {
	key := warning{what: msg}
	if fi, lerr := os.Lstat(path); lerr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			key.dev, key.ino = st.Dev, st.Ino
		}
	}
	if s.warned[name] == key {
		return
	}
	s.warned[name] = key
	var ue *untrustedError
	if errors.As(err, &ue) {
		attrs = append(attrs, "fix", ue.Fix)
	}
	s.log.Warn(msg, append([]any{"worker", name, "path", path, "reason", err.Error()}, attrs...)...)
}

// check brings the worker of file name in line with the file and its
// settings: start it if runnable, enabled and not running, stop it if not
// runnable, or if disabled or its settings cannot be used, restart it if
// replaced or if its environment changed.
func (s *Supervisor) check(ctx context.Context, wg *sync.WaitGroup, name string, replaced bool) {
	w := s.workers[name]
	if !s.runnable(name) {
		if w != nil {
			s.stop(w, "file removed, refused or no longer executable")
		}
		return
	}
	env, enabled, ok := s.settingsOf(name)
	if !ok {
		if w != nil {
			s.stop(w, "settings refused or invalid")
		}
		return
	}
	if w == nil {
		w = &worker{name: name, path: filepath.Join(s.cfg.Dir, name)}
		s.mu.Lock()
		s.workers[name] = w
		s.mu.Unlock()
	}
	if w.cancel != nil {
		switch {
		case w.stopping:
			w.again = true
		case !enabled:
			s.restart(w, "stopping worker", "reason", "disabled by its settings", "settings", s.settingsPath(name))
		case !slices.Equal(env, w.env):
			s.restart(w, "worker settings changed; restarting worker", "settings", s.settingsPath(name))
		case replaced:
			s.restart(w, "worker file replaced; restarting worker")
		}
		return
	}
	if !enabled {
		s.mu.Lock()
		was := w.state
		w.state = StateDisabled
		s.mu.Unlock()
		if was != StateDisabled {
			s.log.Info("worker disabled by its settings: not started", "worker", name, "settings", s.settingsPath(name))
			s.changed(w)
		}
		return
	}
	s.mu.Lock()
	wasDisabled := w.state == StateDisabled
	s.mu.Unlock()
	if wasDisabled {
		s.log.Info("worker enabled by its settings; starting it", "worker", name, "settings", s.settingsPath(name))
	}
	w.env = env
	s.launch(ctx, wg, w)
}

// restart stops the running worker w and has check look at it again once
// it has stopped, logging msg with attrs.
func (s *Supervisor) restart(w *worker, msg string, attrs ...any) {
	s.log.Info(msg, append([]any{"worker", w.name}, attrs...)...)
	w.again = true
	w.stopping = true
	w.cancel()
}

// launch starts the supervision goroutine of w.
func (s *Supervisor) launch(ctx context.Context, wg *sync.WaitGroup, w *worker) {
	wctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	w.stopping, w.removed, w.again = false, false, false
	s.mu.Lock()
	w.state = StateStarting
	s.mu.Unlock()
	s.active++
	wg.Go(func() {
		defer cancel()
		s.supervise(wctx, w)
		s.exited <- w
	})
}

// stop stops w for good: its file is gone or no longer runnable.
func (s *Supervisor) stop(w *worker, why string) {
	if w.cancel == nil {
		s.forget(w)
		return
	}
	w.removed = true
	w.again = false
	if !w.stopping {
		s.log.Info("stopping worker", "worker", w.name, "reason", why)
		w.stopping = true
		w.cancel()
	}
}

// forget drops w from the worker table, for good.
func (s *Supervisor) forget(w *worker) {
	s.mu.Lock()
	gone := s.workers[w.name] == w
	if gone {
		delete(s.workers, w.name)
	}
	s.mu.Unlock()
	if gone && s.cfg.OnRemoved != nil {
		s.cfg.OnRemoved(w.name)
	}
}

// reaped handles the end of w's supervision goroutine.
func (s *Supervisor) reaped(ctx context.Context, wg *sync.WaitGroup, w *worker) {
	s.active--
	w.cancel = nil
	w.stopping = false
	switch {
	case w.again && !s.shutdown:
		w.again = false
		s.check(ctx, wg, w.name, false)
	case w.removed:
		s.forget(w)
	}
	// Otherwise it was stopped by shutdown: keep it, stopped, so that
	// Status shows how it ended.
}

// Status returns a snapshot of every worker, sorted by name.
func (s *Supervisor) Status() []WorkerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerStatus, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, w.status())
	}
	slices.SortFunc(out, func(a, b WorkerStatus) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// maxAncestry bounds the walk up the process tree in Owner.
const maxAncestry = 64

// Owner returns the name of the worker whose current process is pid or an
// ancestor of pid. ok is false for any other process, including one whose
// worker process has exited (its orphans are re-parented away from it).
//
// A worker's process counts only while it is yggd's child: os/exec reaps a
// process before it has finished reading the output pipes that the
// process's descendants may hold, and in that window its pid could in
// theory be reused by an unrelated process.
func (s *Supervisor) Owner(pid int) (name string, ok bool) {
	self := os.Getpid()
	for range maxAncestry {
		if pid <= 1 || pid == self {
			return "", false
		}
		ppid, err := parentPID(pid)
		if err != nil {
			return "", false
		}
		s.mu.Lock()
		w := s.pids[pid]
		s.mu.Unlock()
		if w != nil && ppid == self {
			return w.name, true
		}
		pid = ppid
	}
	return "", false
}

// Registered records that the current process of worker name has
// registered with the dispatcher. The mark is cleared on each new start.
func (s *Supervisor) Registered(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workers[name]; w != nil && w.pid != 0 {
		w.registered = true
		w.registeredAt = time.Now()
	}
}

// PID returns the pid of the current process of worker name, 0 if none.
func (s *Supervisor) PID(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workers[name]; w != nil {
		return w.pid
	}
	return 0
}

// Starting reports whether some worker is expected to register soon: one
// whose current process started less than LateWindow ago and has not
// registered yet, or registered less than RegisterSettle ago (it may have
// more handlers to register), one being started or restarted after a
// process that had registered, or a new file about to be started. It is
// also true before Run has looked at the directory, since every worker is
// about to start then.
func (s *Supervisor) Starting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.scanned || s.pending > 0 {
		return true
	}
	now := time.Now()
	for _, w := range s.workers {
		switch w.state {
		case StateStarting:
			if w.starts == 0 || w.lastRegistered {
				return true
			}
		case StateRunning:
			if !w.registered && now.Sub(w.startedAt) < s.cfg.LateWindow {
				return true
			}
			if w.registered && now.Sub(w.registeredAt) < s.cfg.RegisterSettle {
				return true
			}
		case StateRestarting:
			if w.lastRegistered {
				return true
			}
		}
	}
	return false
}
