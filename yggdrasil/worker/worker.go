// Package worker is a small SDK for writing yggdrasil workers in Go. A worker
// is a program that yggd starts from its worker directory with
// YGG_SOCKET_ADDR in its environment; it registers a handler name (the
// directive it serves), listens on the address the dispatcher gives it, and
// answers through the dispatcher:
//
//	w := &worker.Worker{Handler: "hello", Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) {
//		w.Reply(ctx, m, []byte(`"hello back"`), nil)
//	}}
//	if err := w.Run(ctx); err != nil { log.Fatal(err) }
//
// The SDK speaks the 0.1.x protocol exactly, so a worker built on it also
// works with yggdrasil 0.1.x.
package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/ygglab/yggdrasil/proto"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// ShutdownGrace is how long Run waits, once its context ends, for the
// Receive calls in flight before cancelling their context. yggd gives a
// worker 5 s between SIGTERM and SIGKILL.
const ShutdownGrace = 3 * time.Second

// Message is a message from the dispatcher.
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
	// dispatcher has been given its receipt: it may take as long as it needs.
	Receive func(ctx context.Context, w *Worker, m Message)
	// Sync runs Receive inside the Worker.Send call instead, with that
	// call's context: the dispatcher gets its receipt when Receive returns,
	// and gives up (worker-timeout) after its dispatch deadline.
	Sync bool
	// SocketAddr is the dispatcher's address; default $YGG_SOCKET_ADDR.
	SocketAddr string
	// MaxMessageSize bounds gRPC messages; default 32 MiB.
	MaxMessageSize int

	pb.UnimplementedWorkerServer
	dispatcher pb.DispatcherClient
	ctx        context.Context
	wg         sync.WaitGroup
}

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
	size := w.MaxMessageSize
	if size <= 0 {
		size = yggdrasil.DefaultMaxMessageSize
	}
	size += 1 << 20
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(size), grpc.MaxCallRecvMsgSize(size)))
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
	lis, err := net.Listen("unix", resp.GetAddress())
	if err != nil {
		return fmt.Errorf("worker: listen on %s: %w", resp.GetAddress(), err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(size), grpc.MaxSendMsgSize(size))
	pb.RegisterWorkerServer(srv, w)
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

// Send implements the Worker service: it returns the receipt at once and
// hands the message to Receive (or, with Sync, returns after Receive).
func (w *Worker) Send(ctx context.Context, d *pb.Data) (*pb.Receipt, error) {
	m := Message{ID: d.GetMessageId(), ResponseTo: d.GetResponseTo(), Directive: d.GetDirective(),
		Metadata: d.GetMetadata(), Content: d.GetContent()}
	if w.Sync {
		w.Receive(ctx, w, m)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return &pb.Receipt{}, nil
	}
	w.wg.Go(func() { w.Receive(w.ctx, w, m) })
	return &pb.Receipt{}, nil
}

// Reply answers m: content must be JSON (quote a plain string), unless the
// directive of the answer is a URL (detached workers), in which case it is
// the body of the HTTP POST. The answer's directive is m's.
func (w *Worker) Reply(ctx context.Context, m Message, content []byte, metadata map[string]string) error {
	return w.SendData(ctx, Message{ID: yggdrasil.NewMessageID(), ResponseTo: m.ID, Directive: m.Directive,
		Metadata: metadata, Content: content})
}

// SendData sends m to the dispatcher as it is.
func (w *Worker) SendData(ctx context.Context, m Message) error {
	_, err := w.dispatcher.Send(ctx, &pb.Data{MessageId: m.ID, ResponseTo: m.ResponseTo, Directive: m.Directive,
		Metadata: m.Metadata, Content: m.Content})
	if err != nil {
		return fmt.Errorf("worker: send answer to %s: %w", strings.TrimSpace(m.ResponseTo), err)
	}
	return nil
}
