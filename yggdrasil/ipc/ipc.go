// Package ipc is the worker protocol of yggd: it serves the gRPC Dispatcher
// service (Register, Send) on an abstract UNIX socket and keeps one
// persistent gRPC connection to each registered worker's Worker service.
//
// The addresses keep the 0.1.x shapes that existing workers parse:
// YGG_SOCKET_ADDR=unix:@yggd-dispatcher-<random> and Register answering
// @ygg-<handler>-<random>, with names from crypto/rand. Unlike 0.1.x, which
// trusted any local process, the dispatcher asks the kernel who is calling
// (SO_PEERCRED) and admits only processes that yggd started or their
// descendants; it refuses a second live registration of a handler; and
// before talking to a worker's socket it checks that the process listening
// there belongs to that worker.
package ipc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/ygglab/yggdrasil/proto"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// Config configures a Server.
type Config struct {
	// Registry is the worker table that registrations go to.
	Registry *yggdrasil.Registry
	// Answer takes a worker's answer (the router's HandleAnswer).
	Answer func(ctx context.Context, d *yggdrasil.Data) error
	// Admit says whether the process pid may talk to the dispatcher, and
	// which supervised worker it belongs to. Nil admits every process
	// (for tests of the protocol alone).
	Admit func(pid int) (owner string, ok bool)
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

	closeOnce sync.Once
}

// headroom is what a gRPC message needs beyond its content.
const headroom = 1 << 20

// bufferPool holds gRPC's message buffers. gRPC's default pool jumps from
// 32 KiB to 1 MiB and clears a pooled buffer in full each time it is
// reused: every 64 KiB message cleared 1 MiB, 13% of yggd's CPU at that
// size. This pool has every power of two from 256 B to 1 MiB and hands
// buffers out as they are: gRPC overwrites the length it asks for before
// reading it (the same contract as gRPC's own internal "dirty" pools).
var bufferPool mem.BufferPool = newTieredPool(8, 20)

// codec is gRPC's proto codec with its buffers from bufferPool: gRPC's own
// takes them from the default pool whatever the connection's pool is.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("proto: cannot marshal %T", v)
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // safe: Size was just computed
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := bufferPool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		bufferPool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, bufferPool)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("proto: cannot unmarshal into %T", v)
	}
	buf := data.MaterializeToBuffer(bufferPool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// tieredPool is a mem.BufferPool of one sync.Pool per power of two.
type tieredPool struct {
	minExp, maxExp int
	pools          []sync.Pool
}

func newTieredPool(minExp, maxExp int) *tieredPool {
	return &tieredPool{minExp: minExp, maxExp: maxExp, pools: make([]sync.Pool, maxExp-minExp+1)}
}

// tier returns the index of the smallest pool whose buffers hold n bytes.
func (p *tieredPool) tier(n int) int {
	e := bits.Len(uint(max(n, 1) - 1))
	return max(e, p.minExp) - p.minExp
}

func (p *tieredPool) Get(n int) *[]byte {
	t := p.tier(n)
	if t >= len(p.pools) {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.pools[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(t+p.minExp))
	return &b
}

func (p *tieredPool) Put(b *[]byte) {
	c := cap(*b)
	if c == 0 || c&(c-1) != 0 {
		return // not one of ours
	}
	if t := p.tier(c); t < len(p.pools) && 1<<(t+p.minExp) == c {
		p.pools[t].Put(b)
	}
}

// Listen opens the dispatcher socket at a fresh abstract address.
func Listen(cfg Config) (*Server, error) {
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = yggdrasil.DefaultMaxMessageSize
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := "@yggd-dispatcher-" + randomName()
	lis, err := net.Listen("unix", name)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", name, err)
	}
	s := &Server{cfg: cfg, log: log, lis: lis, addr: "unix:" + name}
	s.grpc = grpc.NewServer(
		grpc.Creds(admitCreds{}),
		grpc.MaxRecvMsgSize(cfg.MaxMessageSize+headroom),
		grpc.MaxSendMsgSize(cfg.MaxMessageSize+headroom),
		experimental.BufferPool(bufferPool),
		grpc.ForceServerCodecV2(codec{}),
		// Answers are handled on long-lived goroutines whose stacks stay
		// grown, not on a new goroutine per call (gRPC starts one when all
		// are busy).
		grpc.NumStreamWorkers(32),
	)
	pb.RegisterDispatcherServer(s.grpc, s)
	return s, nil
}

// Addr returns the value of YGG_SOCKET_ADDR: unix:@yggd-dispatcher-<random>.
func (s *Server) Addr() string { return s.addr }

// Serve serves until ctx ends, then stops: gracefully for up to a second,
// then hard.
func (s *Server) Serve(ctx context.Context) error {
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

// admit checks the caller of ctx. The answer is kept with the connection
// once it is yes: the kernel's peer of a connection never changes, and
// asking the supervisor reads /proc, which on every answer a worker sends
// was yggd's largest cost per message. A refusal is asked again each time.
func (s *Server) admit(ctx context.Context, what string) (pid int, owner string, err error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return 0, "", status.Error(codes.Unauthenticated, "no peer credentials")
	}
	info, ok := p.AuthInfo.(*connInfo)
	if !ok {
		return 0, "", status.Error(codes.Unauthenticated, "no peer credentials")
	}
	pid = int(info.cred.Pid)
	if s.cfg.Admit == nil {
		return pid, "", nil
	}
	if owner, ok := info.admitted(); ok {
		return pid, owner, nil
	}
	owner, ok = s.cfg.Admit(pid)
	if !ok {
		s.log.Warn(what+" refused: the caller is not a worker started by yggd", "pid", pid)
		return pid, "", status.Errorf(codes.PermissionDenied, "%s: pid %d is not a worker started by yggd", what, pid)
	}
	info.admit(owner)
	return pid, owner, nil
}

// connInfo is the AuthInfo of one dispatcher connection: the peer's
// credentials and, once admitted, the worker it belongs to.
type connInfo struct {
	peerInfo
	mu    sync.Mutex
	ok    bool
	owner string
}

func (c *connInfo) admitted() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owner, c.ok
}

func (c *connInfo) admit(owner string) {
	c.mu.Lock()
	c.owner, c.ok = owner, true
	c.mu.Unlock()
}

// admitCreds are peerCreds whose AuthInfo is a *connInfo, one per
// connection.
type admitCreds struct{ peerCreds }

func (a admitCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := a.peerCreds.ServerHandshake(c)
	if err != nil {
		return nil, nil, err
	}
	return conn, &connInfo{peerInfo: info.(peerInfo)}, nil
}

func (a admitCreds) Clone() credentials.TransportCredentials { return a }

// Register implements Dispatcher.Register.
func (s *Server) Register(ctx context.Context, req *pb.RegistrationRequest) (*pb.RegistrationResponse, error) {
	pid, owner, err := s.admit(ctx, "register")
	if err != nil {
		return nil, err
	}
	log := s.log.With("handler", req.GetHandler(), "pid", pid, "worker", owner)
	if err := validHandler(req.GetHandler()); err != nil {
		log.Warn("registration refused", "error", err)
		return nil, status.Errorf(codes.InvalidArgument, "register: %v", err)
	}
	if req.GetPid() != 0 && int(req.GetPid()) != pid {
		log.Debug("registration claims another pid; using the kernel's", "claimed_pid", req.GetPid())
	}
	addr := "@ygg-" + req.GetHandler() + "-" + randomName()
	conn, err := s.dialWorker(addr, pid, owner)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "register: %v", err)
	}
	w := &yggdrasil.Worker{
		Handler:  req.GetHandler(),
		Pid:      pid,
		Owner:    owner,
		Detached: req.GetDetachedContent(),
		Features: req.GetFeatures(),
		Conn:     conn,
	}
	if err := s.cfg.Registry.Add(w); err != nil {
		conn.Close()
		log.Warn("registration refused", "error", err)
		return &pb.RegistrationResponse{Registered: false}, nil
	}
	if s.cfg.Registered != nil && owner != "" {
		s.cfg.Registered(owner)
	}
	log.Info("worker registered", "address", addr, "detached_content", w.Detached)
	return &pb.RegistrationResponse{Registered: true, Address: addr}, nil
}

// Send implements Dispatcher.Send: a worker's answer.
func (s *Server) Send(ctx context.Context, d *pb.Data) (*pb.Receipt, error) {
	if _, _, err := s.admit(ctx, "send"); err != nil {
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
}

// dialWorker prepares the connection to the worker that will listen at
// addr. gRPC connects lazily, on the first message, and waits for the
// worker to listen (bounded by the dispatch deadline).
func (s *Server) dialWorker(addr string, pid int, owner string) (*workerConn, error) {
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", addr)
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		if int(cred.Pid) != pid {
			if got, ok := s.owner(int(cred.Pid)); !ok || got != owner || owner == "" {
				c.Close()
				return nil, fmt.Errorf("socket %s is held by pid %d, not by the worker (pid %d)", addr, cred.Pid, pid)
			}
		}
		return c, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		experimental.WithBufferPool(bufferPool),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 2, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(
			grpc.WaitForReady(true),
			grpc.ForceCodecV2(codec{}),
			grpc.MaxCallSendMsgSize(s.cfg.MaxMessageSize+headroom),
			grpc.MaxCallRecvMsgSize(s.cfg.MaxMessageSize+headroom),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("dial worker at %s: %w", addr, err)
	}
	return &workerConn{cc: cc, client: pb.NewWorkerClient(cc)}, nil
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
	return err
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
