// Package worker is a small SDK for writing yggdrasil workers in Go. A worker
// is a program that yggd starts from its worker directory with
// YGG_SOCKET_ADDR in its environment; it registers a handler name (the
// directive it serves), listens on the address the dispatcher gives it, and
// answers through the dispatcher:
//
//	w := &worker.Worker{Handler: "hello", Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
//		return w.Reply(ctx, m, []byte(`"hello back"`), nil)
//	}}
//	if err := w.Run(ctx); err != nil { log.Fatal(err) }
//
// The SDK speaks the 0.1.x protocol exactly, so a worker built on it also
// works with yggdrasil 0.1.x.
//
// # Answers
//
// Reply sends one answer to a message. It may be called several times for
// the same message: each call is one more answer with the message's id as
// its response_to, sent in order, which is how a worker reports progress
// before its result (the cloud tells them apart by their content). Send
// the answers before Receive returns: Run waits for Receive calls in
// flight when it stops, not for other goroutines.
//
// # Failures
//
// When Receive returns an error or panics, the SDK answers the message with
// a negative acknowledgement of the same shape as yggd's own: metadata
// "yggdrasil-error" set to "worker-failed", content {"error":
// "worker-failed", "message": the error's text (or "panic: " and the
// panic's value)}, response_to the message's id. It logs the failure (a
// panic with its stack) to Log, and the worker keeps serving. Answers sent
// before the failure stay sent. Since the negative acknowledgement is an
// ordinary answer, it reaches the cloud through any yggd, 0.1.x too. Do
// not put secrets in the errors Receive returns: the cloud gets their text.
//
// # Cancellation
//
// The cloud may cancel a message with yggdrasil 0.4's cancel command.
// yggd cancels a message still waiting for its worker itself; one the
// worker took, it asks the worker to cancel (the Worker.Cancel RPC). The
// SDK then cancels that message's Receive context with the cause
// ErrCancelled: Receive should stop and return. If it returns an error
// (ctx.Err() will do), the SDK answers the message with a negative
// acknowledgement "cancelled" instead of "worker-failed"; if it returns
// nil, nothing more is sent, so a Receive that has a better answer (what
// it did before it stopped) may Reply it first. A cancel for a message the
// worker does not hold (never received, finished, or already cancelled) is
// answered NotFound, which yggd reports to the cloud as
// cancel-unknown-message. 0.1.x yggd never calls Cancel.
//
// # Logging
//
// A worker's stderr is yggd's log: yggd logs each line with the worker's
// name. Logger returns a *slog.Logger that writes there at the level yggd
// passes in YGG_LOG_LEVEL.
//
// # Testing
//
// Package workertest runs a worker in the test's process against a
// dispatcher that hands it messages and collects its answers, without
// yggd.
//
// # Who can call a worker
//
// Only the dispatcher's process can call the worker, whatever the
// address the worker listens on and whoever can reach it: 0.1.x yggd hands
// out abstract socket names, which every local process can find in
// /proc/net/unix and connect to. When the worker dials the dispatcher it
// asks the kernel which process listens there (SO_PEERCRED), and its server
// then closes, before reading anything, every connection whose peer (again
// SO_PEERCRED) is not that process with that uid. This rests on
//
//   - the kernel's credentials of the peer, not on anything a caller says;
//   - YGG_SOCKET_ADDR: the worker trusts whichever process listens there,
//     which is yggd when yggd started the worker;
//   - the dispatcher outliving the worker's service (yggd's workers are its
//     children and get SIGTERM when it dies), so its pid is not reused.
//
// It does not guard the worker against root, nor against processes of its
// own uid, which the kernel lets tamper with it in other ways. Refused
// connections are reported on stderr, at most once a minute.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"

	pb "github.com/ygglab/yggdrasil/proto"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/internal/grpcbuf"
)

// ShutdownGrace is how long Run waits, once its context ends, for the
// Receive calls in flight before cancelling their context. yggd gives a
// worker 5 s between SIGTERM and SIGKILL.
const ShutdownGrace = 3 * time.Second

// failTimeout bounds the sending of a negative acknowledgement, which
// does not end with the message's context.
const failTimeout = 10 * time.Second

// Message is a message from the dispatcher, or an answer to it.
type Message struct {
	ID         string
	ResponseTo string
	Directive  string
	Metadata   map[string]string
	// Content is the exact JSON text of the message's content, or, for a
	// detached worker, the bytes fetched from its URL.
	Content []byte
}

// Worker serves one handler.
type Worker struct {
	Handler  string            // the directive served; required
	Detached bool              // content by URL, answers by HTTP POST
	Features map[string]string // published by yggd in the connection status
	// Receive is called for every message on its own goroutine, after the
	// dispatcher has been given its receipt: it may take as long as it
	// needs. Its context ends when the worker has stopped and
	// ShutdownGrace has passed. An error, or a panic, is answered to the
	// cloud as a negative acknowledgement worker-failed (see the package
	// doc); the worker goes on serving.
	Receive func(ctx context.Context, w *Worker, m Message) error
	// Sync runs Receive inside the dispatcher's call instead, with that
	// call's context: the dispatcher gets its receipt when Receive returns,
	// and gives up (worker-timeout) after its dispatch deadline.
	Sync bool
	// Recycle promises that once Receive has returned nil, nothing holds
	// m.Content any more (no goroutine it started, no answer still being
	// sent: every SendData or Reply that carried it returned nil): the SDK
	// then reuses the memory of a large content (32 KiB or more) for a
	// later message instead of leaving it to the GC. A detached worker
	// that passes the fetched bytes on and returns is the case in point.
	Recycle bool
	// SocketAddr is the dispatcher's address; default $YGG_SOCKET_ADDR.
	SocketAddr string
	// MaxMessageSize bounds gRPC messages; default 32 MiB.
	MaxMessageSize int
	// Log gets the SDK's reports of failed Receive calls; default Logger().
	Log *slog.Logger

	dispatcher pb.DispatcherClient
	// dir, if set, is the directory against which a relative address from
	// Register is resolved instead of the working directory (for tests, as
	// the working directory is process-wide).
	dir string
	// stderr receives the reports of refused connections; default
	// os.Stderr.
	stderr io.Writer
	ctx    context.Context
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]*inFlight // by message id, the Receive calls in flight
}

// inFlight is one Receive call that a cancel command can end.
type inFlight struct{ cancel context.CancelCauseFunc }

// ErrCancelled is the cause of a Receive context that the cloud cancelled
// (context.Cause(ctx) == ErrCancelled).
var ErrCancelled = errors.New("cancelled by the cloud")

// Run registers, serves until ctx ends, and waits for the Receive calls in
// flight.
func (w *Worker) Run(ctx context.Context) error {
	if w.Handler == "" || w.Receive == nil {
		return errors.New("worker: Handler and Receive are required")
	}
	addr := w.SocketAddr
	if addr == "" {
		addr = os.Getenv("YGG_SOCKET_ADDR")
	}
	if addr == "" {
		return errors.New("worker: YGG_SOCKET_ADDR is not set (workers are started by yggd)")
	}
	if w.Log == nil {
		w.Log = Logger()
	}
	size := w.MaxMessageSize
	if size <= 0 {
		size = yggdrasil.DefaultMaxMessageSize
	}
	size += grpcbuf.Headroom
	dialAddr, err := dialAddress(addr)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	dialer := &dispatcherDialer{addr: dialAddr}
	// passthrough: the dialer, not a resolver, makes sense of the address,
	// so any path is fine; the target only names the :authority.
	// Buffers come from a pool by size, as in yggd: gRPC's default pool
	// makes a 64 KiB message take a 1 MiB buffer.
	cc, err := grpc.NewClient("passthrough:///dispatcher", append(grpcbuf.DialWindows(),
		grpc.WithContextDialer(dialer.dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		experimental.WithBufferPool(grpcbuf.Pool),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(grpcbuf.Codec{}),
			grpc.MaxCallSendMsgSize(size), grpc.MaxCallRecvMsgSize(size)))...)
	if err != nil {
		return fmt.Errorf("worker: dial dispatcher %s: %w", addr, err)
	}
	defer cc.Close()
	w.dispatcher = pb.NewDispatcherClient(cc)

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := w.dispatcher.Register(rctx, &pb.RegistrationRequest{
		Handler: w.Handler, Pid: int64(os.Getpid()), DetachedContent: w.Detached, Features: w.Features,
	}, grpc.WaitForReady(true))
	cancel()
	if err != nil {
		return fmt.Errorf("worker: register %q: %w", w.Handler, err)
	}
	if !resp.GetRegistered() {
		return fmt.Errorf("worker: register %q: refused by the dispatcher (is another worker serving it?)", w.Handler)
	}
	// Register went through a connection, so the dialer has met the
	// dispatcher. Pid 0 means that it lives outside the worker's pid
	// namespace, where every process looks the same: fail closed.
	disp := dialer.peer()
	if disp == nil || disp.Pid == 0 {
		return fmt.Errorf("worker: cannot tell which process the dispatcher at %s is", addr)
	}
	listenAddr, err := listenAddress(resp.GetAddress(), w.dir)
	if err != nil {
		return fmt.Errorf("worker: listen: %w", err)
	}
	lis, err := listen(listenAddr)
	if err != nil {
		return fmt.Errorf("worker: listen on %s: %w", resp.GetAddress(), err)
	}
	stderr := w.stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	creds := onlyDispatcher{pid: disp.Pid, uid: disp.Uid, log: &refusalLog{w: stderr}}
	srv := grpc.NewServer(append(grpcbuf.ServerWindows(), grpc.Creds(creds), grpc.MaxRecvMsgSize(size), grpc.MaxSendMsgSize(size),
		experimental.BufferPool(grpcbuf.Pool), grpc.ForceServerCodecV2(grpcbuf.Codec{}))...)
	pb.RegisterWorkerServer(srv, server{w: w})
	// Receive calls in flight when ctx ends get ShutdownGrace to send their
	// answers before their context is cancelled.
	rctx, cancelReceives := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReceives()
	w.ctx = rctx
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err = <-done:
		err = fmt.Errorf("worker: serve: %w", err)
	case <-ctx.Done():
		srv.GracefulStop()
		<-done
		err = nil
	}
	finished := make(chan struct{})
	go func() { w.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(ShutdownGrace):
		cancelReceives()
		<-finished
	}
	return err
}

// server is the worker's gRPC service, kept out of Worker's API.
type server struct {
	pb.UnimplementedWorkerServer
	w *Worker
}

// Send returns the receipt at once and hands the message to Receive (or,
// with Sync, returns after Receive).
func (s server) Send(ctx context.Context, d *pb.Data) (*pb.Receipt, error) {
	w := s.w
	m := Message{ID: d.GetMessageId(), ResponseTo: d.GetResponseTo(), Directive: d.GetDirective(),
		Metadata: d.GetMetadata(), Content: d.GetContent()}
	if w.Sync {
		w.receive(ctx, m)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return &pb.Receipt{}, nil
	}
	w.wg.Go(func() { w.receive(w.ctx, m) })
	return &pb.Receipt{}, nil
}

// Cancel cancels the Receive context of the message the request names, if
// it is in flight.
func (s server) Cancel(_ context.Context, r *pb.CancelRequest) (*pb.Receipt, error) {
	if !s.w.cancel(r.GetCancelId()) {
		return nil, status.Errorf(codes.NotFound, "worker %q holds no message %q", s.w.Handler, r.GetCancelId())
	}
	s.w.Log.Info("message cancelled by the cloud", "handler", s.w.Handler, "message_id", r.GetCancelId(), "cancel_id", r.GetMessageId())
	return &pb.Receipt{}, nil
}

// cancel cancels the Receive context of message id and reports whether a
// Receive call for it was in flight and not yet cancelled: a message is
// cancelled once, and a second cancel finds it gone, as it will be once
// Receive has answered.
func (w *Worker) cancel(id string) bool {
	w.mu.Lock()
	f := w.running[id]
	delete(w.running, id)
	w.mu.Unlock()
	if f == nil {
		return false
	}
	f.cancel(ErrCancelled)
	return true
}

// receive runs Receive for m with a context of its own, derived from
// parent (the worker's, or with Sync the dispatcher's call), which a
// cancel command can end, and answers a failure with a negative
// acknowledgement.
func (w *Worker) receive(parent context.Context, m Message) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	f := &inFlight{cancel: cancel}
	w.mu.Lock()
	if w.running == nil {
		w.running = make(map[string]*inFlight)
	}
	w.running[m.ID] = f
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		if w.running[m.ID] == f {
			delete(w.running, m.ID)
		}
		w.mu.Unlock()
	}()
	err := w.call(ctx, m)
	if err == nil {
		if w.Recycle {
			grpcbuf.ReleaseLarge(m.Content)
		}
		return
	}
	log := w.Log.With("handler", w.Handler, "message_id", m.ID)
	code := yggdrasil.CodeWorkerFailed
	var p *panicError
	switch {
	case errors.As(err, &p):
		log.Error("receive panicked", "panic", fmt.Sprint(p.value), "stack", string(p.stack))
	case errors.Is(context.Cause(ctx), ErrCancelled):
		code = yggdrasil.CodeCancelled
		log.Info("receive stopped after a cancel", "error", err)
	default:
		log.Error("receive failed", "error", err)
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), failTimeout)
	defer fcancel()
	if err := w.SendData(fctx, failure(m, code, err)); err != nil {
		log.Error("negative acknowledgement not sent", "error", err)
	}
}

// call runs Receive, turning a panic into an error.
func (w *Worker) call(ctx context.Context, m Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return w.Receive(ctx, w, m)
}

// panicError is a panic of Receive.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// failure returns the negative acknowledgement code to m (worker-failed or
// cancelled), shaped as yggd's own (yggdrasil.Router's nacks).
func failure(m Message, code yggdrasil.ErrorCode, err error) Message {
	content, _ := json.Marshal(struct {
		Error   yggdrasil.ErrorCode `json:"error"`
		Message string              `json:"message"`
	}{code, err.Error()})
	return Message{ID: yggdrasil.NewMessageID(), ResponseTo: m.ID, Directive: m.Directive,
		Metadata: map[string]string{yggdrasil.MetadataError: string(code)}, Content: content}
}

// Reply answers m: content must be JSON (quote a plain string), unless the
// directive of the answer is a URL (detached workers), in which case it is
// the body of the HTTP POST. The answer's directive is m's. Reply may be
// called several times for one message (progress, then the result).
func (w *Worker) Reply(ctx context.Context, m Message, content []byte, metadata map[string]string) error {
	return w.SendData(ctx, Message{ID: yggdrasil.NewMessageID(), ResponseTo: m.ID, Directive: m.Directive,
		Metadata: metadata, Content: content})
}

// SendData sends m to the dispatcher as it is. yggd refuses an answer it
// cannot send (content not JSON for a directive that is not a URL, too
// large, no ID or Directive), and tells the cloud (invalid-answer). A
// content of 32 KiB or more is sent from m.Content itself, not from a
// copy: leave it unchanged while the call runs (and, after a call that
// failed, do not reuse its memory: gRPC may still be reading it).
func (w *Worker) SendData(ctx context.Context, m Message) error {
	_, err := w.dispatcher.Send(ctx, &pb.Data{MessageId: m.ID, ResponseTo: m.ResponseTo, Directive: m.Directive,
		Metadata: m.Metadata, Content: m.Content})
	if err != nil {
		return fmt.Errorf("worker: send answer to %s: %w", strings.TrimSpace(m.ResponseTo), err)
	}
	return nil
}
