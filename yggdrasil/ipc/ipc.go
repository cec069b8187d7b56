// Package ipc is the worker protocol of yggd: it serves the gRPC Dispatcher
// service (Register, Send) on a UNIX socket and keeps one persistent gRPC
// connection to each registered worker's Worker service.
//
// Every socket lives in one directory that only yggd's user can enter
// (<runtime-dir>/workers, mode 0700), which is also the workers' working
// directory. YGG_SOCKET_ADDR is unix:<that dir>/dispatcher.sock, and
// Register answers the relative address unix:ygg-<handler>-<random>, a form
// that both kinds of 0.1.x worker accept: a Go worker hands it to
// net.Listen("unix", …) and gets the file "unix:ygg-…" in its working
// directory; the Python playbook worker hands it to gRPC, which reads it as
// the relative path "ygg-…". yggd dials whichever of the two is there.
//
// Unlike 0.1.x, which trusted any local process, the dispatcher takes the
// peer's credentials and pidfd when it accepts a connection (SO_PEERCRED,
// SO_PEERPIDFD), refuses any other uid than its own, and admits only
// processes that yggd started or their descendants, asked while the pidfd
// shows the connecting process alive, so that a reused pid never passes. A
// registration lasts as long as the process that made it, and a handler
// belongs to the first supervised executable that registers it. Before
// talking to a worker's socket, yggd checks that the process listening
// there belongs to that worker.
package ipc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/ygglab/yggdrasil/proto"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/internal/grpcbuf"
)

// Config configures a Server.
type Config struct {
	// RuntimeDir is yggd's runtime directory (/run/yggdrasil); the sockets
	// go in its subdirectory WorkersDir, created 0700.
	RuntimeDir string
	// Registry is the worker table that registrations go to.
	Registry *yggdrasil.Registry
	// Answer takes a worker's answer (the router's HandleAnswer).
	Answer func(ctx context.Context, d *yggdrasil.Data) error
	// Admit says whether the process pid may talk to the dispatcher, and
	// which supervised worker it belongs to. Nil admits every process of
	// yggd's uid (for tests of the protocol alone).
	Admit func(pid int) (owner string, ok bool)
	// MainPID returns the pid of the supervised process of worker owner
	// (a registrant with another pid is one of its descendants); may be
	// nil.
	MainPID func(owner string) int
	// Registered is told when a supervised worker has registered; may be nil.
	Registered func(owner string)
	// MaxMessageSize bounds gRPC messages in both directions; default
	// yggdrasil.DefaultMaxMessageSize (gRPC's own default is 4 MiB).
	MaxMessageSize int
	Log            *slog.Logger
}

// Server is the dispatcher.
type Server struct {
	pb.UnimplementedDispatcherServer
	cfg  Config
	log  *slog.Logger
	lis  net.Listener
	grpc *grpc.Server
	addr string
	dir  string   // the socket directory
	dirf *os.File // an O_PATH handle on it, for socket paths beyond sun_path
	uid  int

	stop    chan struct{} // closed when Serve is done: ends the watches
	watches sync.WaitGroup
}

// maxSunPath is the size of sockaddr_un's sun_path, its final NUL included.
const maxSunPath = 108

// Listen prepares the socket directory under cfg.RuntimeDir and opens the
// dispatcher's socket in it.
func Listen(cfg Config) (*Server, error) {
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = yggdrasil.DefaultMaxMessageSize
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	uid := os.Geteuid()
	dir, err := prepareDir(cfg.RuntimeDir, uid)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, dispatcherSock)
	if len(path) >= maxSunPath {
		return nil, fmt.Errorf("listen on %s: the path is longer than %d bytes: choose a shorter runtime-dir", path, maxSunPath-1)
	}
	dirf, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		dirf.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	s := &Server{cfg: cfg, log: log, lis: lis, addr: "unix:" + path, dir: dir, dirf: dirf, uid: uid, stop: make(chan struct{})}
	creds := peerCreds{uid: uid, refused: func(cred *unix.Ucred, err error) {
		if cred != nil {
			log.Warn("connection refused", "pid", cred.Pid, "uid", cred.Uid, "error", err)
			return
		}
		log.Warn("connection refused", "error", err)
	}}
	s.grpc = grpc.NewServer(append(grpcbuf.ServerWindows(),
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(cfg.MaxMessageSize+grpcbuf.Headroom),
		grpc.MaxSendMsgSize(cfg.MaxMessageSize+grpcbuf.Headroom),
		experimental.BufferPool(grpcbuf.Pool),
		grpc.ForceServerCodecV2(grpcbuf.Codec{}),
		// Answers are handled on long-lived goroutines whose stacks stay
		// grown, not on a new goroutine per call (gRPC starts one when all
		// are busy).
		grpc.NumStreamWorkers(32),
	)...)
	pb.RegisterDispatcherServer(s.grpc, s)
	return s, nil
}

// Addr returns the value of YGG_SOCKET_ADDR: unix:<dir>/dispatcher.sock.
func (s *Server) Addr() string { return s.addr }

// Dir returns the socket directory, which is also the workers' working
// directory.
func (s *Server) Dir() string { return s.dir }

// Serve serves until ctx ends, then stops: gracefully for up to a second,
// then hard. Once it has returned, the Server is done.
func (s *Server) Serve(ctx context.Context) error {
	defer func() {
		close(s.stop)
		s.watches.Wait()
		s.dirf.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- s.grpc.Serve(s.lis) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve dispatcher: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Second):
		s.grpc.Stop()
		<-stopped
	}
	<-done
	return nil
}

// admit checks the caller of ctx: the process that opened the connection
// must still run (its pidfd says so, so a reused pid cannot stand in for
// it) and be a worker that yggd started or a descendant of one. The answer
// is kept with the connection once it is yes: the kernel's peer of a
// connection never changes, and asking the supervisor reads /proc, which on
// every answer a worker sends was yggd's largest cost per message; whether
// the process still runs is one system call, asked every time, so a
// connection outlives its admission no longer than its process does. A
// refusal is asked again each time.
func (s *Server) admit(ctx context.Context, what string) (*connInfo, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer credentials")
	}
	info, ok := p.AuthInfo.(*connInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer credentials")
	}
	pid := int(info.peer.cred.Pid)
	alive := info.peer.alive()
	if _, ok := info.admitted(); ok && alive {
		return info, nil
	}
	if !alive {
		s.log.Warn(what+" refused: the process that opened the connection has exited", "pid", pid)
		return nil, status.Errorf(codes.PermissionDenied, "%s: pid %d, which opened this connection, has exited", what, pid)
	}
	owner := ""
	if s.cfg.Admit != nil {
		owner, ok = s.cfg.Admit(pid)
		// The walk read /proc by pid: it was about the connecting process
		// only if that process still runs now.
		if !ok || !info.peer.alive() {
			s.log.Warn(what+" refused: the caller is not a worker started by yggd", "pid", pid)
			return nil, status.Errorf(codes.PermissionDenied, "%s: pid %d is not a worker started by yggd", what, pid)
		}
	}
	info.admit(owner)
	return info, nil
}

// Register implements Dispatcher.Register.
func (s *Server) Register(ctx context.Context, req *pb.RegistrationRequest) (*pb.RegistrationResponse, error) {
	info, err := s.admit(ctx, "register")
	if err != nil {
		return nil, err
	}
	owner, _ := info.admitted()
	pid := int(info.peer.cred.Pid)
	log := s.log.With("handler", req.GetHandler(), "pid", pid, "worker", owner)
	if err := validHandler(req.GetHandler()); err != nil {
		log.Warn("registration refused", "error", err)
		return nil, status.Errorf(codes.InvalidArgument, "register: %v", err)
	}
	if req.GetPid() != 0 && int(req.GetPid()) != pid {
		log.Debug("registration claims another pid; using the kernel's", "claimed_pid", req.GetPid())
	}
	name := "ygg-" + req.GetHandler() + "-" + randomName()
	conn, err := s.dialWorker(name, pid, owner)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "register: %v", err)
	}
	w := &yggdrasil.Worker{
		Handler:  req.GetHandler(),
		Pid:      pid,
		Owner:    owner,
		Main:     owner != "" && s.cfg.MainPID != nil && s.cfg.MainPID(owner) == pid,
		Detached: req.GetDetachedContent(),
		Features: req.GetFeatures(),
		Conn:     conn,
	}
	if err := s.cfg.Registry.Add(w); err != nil {
		conn.Close()
		log.Warn("registration refused", "error", err)
		return &pb.RegistrationResponse{Registered: false}, nil
	}
	s.watch(info.peer, w, log)
	if s.cfg.Registered != nil && owner != "" {
		s.cfg.Registered(owner)
	}
	log.Info("worker registered", "address", "unix:"+name, "detached_content", w.Detached)
	return &pb.RegistrationResponse{Registered: true, Address: "unix:" + name}, nil
}

// watch removes w from the registry as soon as the process that registered
// it exits, so that its handler is free at once for the next worker.
func (s *Server) watch(p *peerProcess, w *yggdrasil.Worker, log *slog.Logger) {
	select {
	case <-s.stop:
		return // done serving: the registry is being closed
	default:
	}
	s.watches.Go(func() {
		exited, err := p.waitExit(s.stop)
		if err != nil {
			log.Error("cannot watch the registering process; its handler stays until its worker exits", "error", err)
			return
		}
		if exited && s.cfg.Registry.Remove(w) {
			log.Info("worker unregistered: the process that registered it has exited")
		}
	})
}

// Send implements Dispatcher.Send: a worker's answer.
func (s *Server) Send(ctx context.Context, d *pb.Data) (*pb.Receipt, error) {
	if _, err := s.admit(ctx, "send"); err != nil {
		return nil, err
	}
	err := s.cfg.Answer(ctx, &yggdrasil.Data{
		MessageID:  d.GetMessageId(),
		ResponseTo: d.GetResponseTo(),
		Directive:  d.GetDirective(),
		Metadata:   d.GetMetadata(),
		Content:    d.GetContent(),
	})
	switch {
	case errors.Is(err, yggdrasil.ErrInvalidAnswer):
		s.log.Warn("answer refused", "message_id", d.GetMessageId(), "response_to", d.GetResponseTo(), "error", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		s.log.Warn("answer not sent", "message_id", d.GetMessageId(), "response_to", d.GetResponseTo(), "error", err)
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &pb.Receipt{}, nil
}

// workerConn is a persistent connection to one worker's Worker service.
type workerConn struct {
	cc     *grpc.ClientConn
	client pb.WorkerClient
	log    *slog.Logger
}

// dialWorker prepares the connection to the worker that will listen at the
// relative address unix:<name>. A Go worker listens at "unix:<name>" in its
// working directory, the Python one at "<name>": the dialer takes whichever
// is there. gRPC connects lazily, on the first message, and waits for the
// worker to listen (bounded by the dispatch deadline).
func (s *Server) dialWorker(name string, pid int, owner string) (*workerConn, error) {
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		var c net.Conn
		var err error
		for _, file := range []string{name, "unix:" + name} {
			var d net.Dialer
			if c, err = d.DialContext(ctx, "unix", s.sockPath(file)); err == nil {
				break
			}
		}
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		if int(cred.Uid) != s.uid {
			c.Close()
			return nil, fmt.Errorf("socket %s is held by uid %d, not by yggd's uid %d", name, cred.Uid, s.uid)
		}
		if int(cred.Pid) != pid {
			if got, ok := s.owner(int(cred.Pid)); !ok || got != owner || owner == "" {
				c.Close()
				return nil, fmt.Errorf("socket %s is held by pid %d, not by the worker (pid %d)", name, cred.Pid, pid)
			}
		}
		return c, nil
	}
	addr := filepath.Join(s.dir, name)
	cc, err := grpc.NewClient("passthrough:///"+addr, append(grpcbuf.DialWindows(),
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		experimental.WithBufferPool(grpcbuf.Pool),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 2, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(
			grpc.WaitForReady(true),
			grpc.ForceCodecV2(grpcbuf.Codec{}),
			grpc.MaxCallSendMsgSize(s.cfg.MaxMessageSize+grpcbuf.Headroom),
			grpc.MaxCallRecvMsgSize(s.cfg.MaxMessageSize+grpcbuf.Headroom),
		),
	)...)
	if err != nil {
		return nil, fmt.Errorf("dial worker at %s: %w", addr, err)
	}
	return &workerConn{cc: cc, client: pb.NewWorkerClient(cc), log: s.log}, nil
}

// sockPath returns a path to the socket file in the socket directory that
// fits in sun_path: through /proc/self/fd when the plain path does not.
func (s *Server) sockPath(file string) string {
	if p := filepath.Join(s.dir, file); len(p) < maxSunPath {
		return p
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", s.dirf.Fd(), file)
}

func (s *Server) owner(pid int) (string, bool) {
	if s.cfg.Admit == nil {
		return "", false
	}
	return s.cfg.Admit(pid)
}

func (w *workerConn) Send(ctx context.Context, d *yggdrasil.Data) error {
	_, err := w.client.Send(ctx, &pb.Data{
		MessageId:  d.MessageID,
		ResponseTo: d.ResponseTo,
		Directive:  d.Directive,
		Metadata:   d.Metadata,
		Content:    d.Content,
	})
	if status.Code(err) == codes.DeadlineExceeded {
		return fmt.Errorf("worker send: %w", context.DeadlineExceeded)
	}
	if receiptNotSerialized(err) {
		w.log.Debug("worker took the message but answered its receipt with an error that 0.1.x workers give", "message_id", d.MessageID, "error", err)
		return nil
	}
	return err
}

// receiptNotSerialized reports whether err is what grpcio answers when a
// Python servicer returns None instead of a Receipt, as rhc-worker-playbook
// 0.1.5 does after it has run the message: the worker took it.
func receiptNotSerialized(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Internal && strings.Contains(st.Message(), "Failed to serialize response")
}

func (w *workerConn) Close() error { return w.cc.Close() }

// validHandler keeps handler names usable in a socket name and a log line.
func validHandler(h string) error {
	if h == "" {
		return errors.New("handler is empty")
	}
	if len(h) > 64 {
		return fmt.Errorf("handler %.64q... is longer than 64 bytes", h)
	}
	if strings.ContainsFunc(h, func(r rune) bool { return r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		return fmt.Errorf("handler %q has a slash, a space or an unprintable character", h)
	}
	return nil
}

// randomName returns 16 random letters, as in 0.1.x's names but from
// crypto/rand.
func randomName() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// Cancel passes a cancel command on to the worker (yggdrasil.Canceller).
// A worker without Cancel (0.1.x) answers Unimplemented.
func (w *workerConn) Cancel(ctx context.Context, directive, messageID, cancelID string) error {
	_, err := w.client.Cancel(ctx, &pb.CancelRequest{Directive: directive, MessageId: messageID, CancelId: cancelID})
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.Unimplemented:
		return yggdrasil.ErrCancelUnsupported
	case codes.NotFound:
		return yggdrasil.ErrCancelUnknown
	}
	return fmt.Errorf("worker cancel: %w", err)
}
