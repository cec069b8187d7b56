package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Config configures a Server.
type Config struct {
	// Path is the socket's path (yggd: <runtime-dir>/control.sock, or
	// control-socket).
	Path string
	// Group, when set, is a group name or number whose members may use
	// the socket too: the file is then mode 0660 and owned by that group.
	Group string
	// Status returns the state served at /v1/status and /v1/workers;
	// Version is filled in by the server.
	Status func() Status
	// Level is the logger's level that PUT /v1/log-level changes; nil
	// refuses the change.
	Level *slog.LevelVar
	// Events is served at GET /v1/events; nil serves no events.
	Events *Events
	// Dispatch hands a local message to its worker (POST /v1/dispatch)
	// and passes each of its answers, a data message in JSON, to answer,
	// which does not block, until done is called. A refusal is a
	// *Refused. Nil refuses local dispatch.
	Dispatch func(req DispatchRequest, answer func(json.RawMessage)) (messageID string, done func(), err error)
	// MaxBody bounds the body of POST /v1/dispatch (default 32 MiB and
	// a little).
	MaxBody int64
	Log     *slog.Logger
}

// Server serves the control API on a UNIX socket.
type Server struct {
	cfg  Config
	log  *slog.Logger
	ln   *net.UnixListener
	http *http.Server
	euid int
	gid  int // of Config.Group; -1 when none
	// cred reads the peer's credentials of an accepted connection; a test
	// replaces it.
	cred func(*net.UnixConn) (uid, gid uint32, err error)
	// process reads the process figures of GET /metrics; a test
	// replaces it.
	process func() Process

	mu      sync.Mutex
	warned  map[uint32]bool // uids whose refusal was logged
	closeMu sync.Once
}

// Listen creates the socket at cfg.Path. It refuses to when something
// answers there (another yggd); a stale socket left by a crash is
// removed.
func Listen(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Path == "" {
		return nil, errors.New("control socket: no path")
	}
	if cfg.Status == nil {
		cfg.Status = func() Status { return Status{} }
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 32<<20 + 64<<10
	}
	s := &Server{cfg: cfg, log: cfg.Log, euid: os.Geteuid(), gid: -1, cred: peerCred, process: readProcess, warned: map[uint32]bool{}}
	if cfg.Group != "" {
		gid, err := lookupGroup(cfg.Group)
		if err != nil {
			return nil, fmt.Errorf("control-group %s: %w", cfg.Group, err)
		}
		s.gid = gid
	}
	if err := removeStale(cfg.Path); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", cfg.Path, err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Until the chmod, the file has the umask's mode: the peer check at
	// accept is what keeps others out, the mode only stops them earlier.
	mode := os.FileMode(0o600)
	if s.gid >= 0 {
		mode = 0o660
		if err := os.Chown(cfg.Path, -1, s.gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control socket %s: %w", cfg.Path, err)
		}
	}
	if err := os.Chmod(cfg.Path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", cfg.Path, err)
	}
	s.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/workers", s.workers)
	mux.HandleFunc("GET /v1/log-level", s.getLevel)
	mux.HandleFunc("PUT /v1/log-level", s.owner(s.setLevel))
	mux.HandleFunc("GET /metrics", s.metrics)
	mux.HandleFunc("GET /v1/events", s.events)
	mux.HandleFunc("POST /v1/dispatch", s.owner(s.dispatch))
	s.http = &http.Server{
		Handler:           mux,
		ConnContext:       withPeer,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.cfg.Path }

// removeStale removes a socket at path that nothing answers on, and
// refuses one that answers or a file that is not a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("exists and is not a socket (%s): remove it", fi.Mode().Type())
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return errors.New("address already in use: another yggd serves it")
	}
	return os.Remove(path)
}

func lookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// Run serves until ctx ends, then closes the server and waits for the
// requests being served (one second at most).
func (s *Server) Run(ctx context.Context) error {
	// The requests' contexts derive from ctx: the streams of events and
	// answers end with it.
	s.http.BaseContext = func(net.Listener) context.Context { return ctx }
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { errc <- s.http.Serve(peerListener{s.ln, s}) })
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	s.http.Shutdown(sctx)
	cancel()
	s.Close()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// Close closes the socket (its file is removed) and every connection. It
// may be called more than once.
func (s *Server) Close() error {
	s.closeMu.Do(func() {
		s.http.Close()
		s.ln.Close()
	})
	return nil
}

// peerListener accepts only the connections of allowed peers.
type peerListener struct {
	*net.UnixListener
	s *Server
}

func (l peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, gid, err := l.s.cred(c)
		if err == nil && l.s.allowed(uid, gid) {
			return &peerConn{c, uid}, nil
		}
		c.Close()
		l.s.refused(uid, err)
	}
}

// peerConn is an accepted connection and its peer's uid.
type peerConn struct {
	*net.UnixConn
	uid uint32
}

type peerKey struct{}

// withPeer puts the peer's uid in the context of a connection's requests.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*peerConn); ok {
		return context.WithValue(ctx, peerKey{}, pc.uid)
	}
	return ctx
}

// owner lets only root and yggd's own user through to h: what changes
// yggd or runs a worker. The members of control-group may read, not act:
// a worker runs as root and may manage the whole host, so handing it a
// message is root's power.
func (s *Server) owner(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		uid, ok := r.Context().Value(peerKey{}).(uint32)
		if !ok || (uid != 0 && int(uid) != s.euid) {
			writeJSON(w, http.StatusForbidden, Error{"only root and yggd's user may do this; the members of control-group may only read"})
			return
		}
		h(w, r)
	}
}

// peerCred returns the uid and gid of c's peer (SO_PEERCRED).
func peerCred(c *net.UnixConn) (uid, gid uint32, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if cerr != nil {
		return 0, 0, cerr
	}
	return cred.Uid, cred.Gid, nil
}

// allowed says whether a peer with uid and (primary) gid may use the
// socket: root, yggd's own user, and the members of the control group.
func (s *Server) allowed(uid, gid uint32) bool {
	switch {
	case uid == 0, int(uid) == s.euid:
		return true
	case s.gid < 0:
		return false
	case int(gid) == s.gid:
		return true
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return false
	}
	groups, err := u.GroupIds()
	return err == nil && slices.Contains(groups, strconv.Itoa(s.gid))
}

// refused logs, once per uid, that a peer was turned away.
func (s *Server) refused(uid uint32, err error) {
	if err != nil {
		s.log.Warn("control socket: connection refused: cannot read the peer's credentials", "error", err)
		return
	}
	s.mu.Lock()
	seen := s.warned[uid]
	s.warned[uid] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn("control socket: connection refused: only root, yggd's user and control-group may use it", "uid", uid)
	}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Status()
	st.Version = Version
	if s.cfg.Events != nil {
		st.Events.Watchers = s.cfg.Events.Watchers()
	}
	if st.Workers == nil {
		st.Workers = []Worker{}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) workers(w http.ResponseWriter, r *http.Request) {
	ws := s.cfg.Status().Workers
	if ws == nil {
		ws = []Worker{}
	}
	writeJSON(w, http.StatusOK, Workers{Version: Version, Workers: ws})
}

func (s *Server) getLevel(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Level == nil {
		writeJSON(w, http.StatusNotImplemented, Error{"the log level cannot be read here"})
		return
	}
	writeJSON(w, http.StatusOK, LogLevel{Level: LevelName(s.cfg.Level.Level())})
}

func (s *Server) setLevel(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Level == nil {
		writeJSON(w, http.StatusNotImplemented, Error{"the log level cannot be changed here"})
		return
	}
	var req LogLevel
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, Error{"read body: " + err.Error()})
		return
	}
	l, err := ParseLevel(req.Level)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Error{"level: " + err.Error()})
		return
	}
	old := s.cfg.Level.Level()
	s.cfg.Level.Set(l)
	s.log.Info("log level changed through the control socket", "old", LevelName(old), "new", LevelName(l))
	writeJSON(w, http.StatusOK, LogLevel{Level: LevelName(l)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.MarshalIndent(v, "", "  ")
	w.Write(append(b, '\n'))
}

// LevelTrace is yggd's trace level, below debug.
const LevelTrace = slog.LevelDebug - 4

var levels = []struct {
	name  string
	level slog.Level
}{
	{"error", slog.LevelError}, {"warn", slog.LevelWarn}, {"info", slog.LevelInfo},
	{"debug", slog.LevelDebug}, {"trace", LevelTrace},
}

// ParseLevel reads a log level by yggd's names: error, warn, info, debug,
// trace.
func ParseLevel(s string) (slog.Level, error) {
	for _, l := range levels {
		if strings.EqualFold(s, l.name) {
			return l.level, nil
		}
	}
	return 0, fmt.Errorf("%q is not one of error, warn, info, debug, trace", s)
}

// LevelName names l by yggd's names, else as slog does.
func LevelName(l slog.Level) string {
	for _, x := range levels {
		if x.level == l {
			return x.name
		}
	}
	return strings.ToLower(l.String())
}
