package ipc

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/ygglab/yggdrasil/proto"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/worker"
)

// answers collects what workers send back.
type answers struct {
	mu  sync.Mutex
	got []*yggdrasil.Data
	ch  chan struct{}
}

func (a *answers) add(_ context.Context, d *yggdrasil.Data) error {
	a.mu.Lock()
	a.got = append(a.got, d)
	a.mu.Unlock()
	a.ch <- struct{}{}
	return nil
}

func (a *answers) await(t *testing.T) *yggdrasil.Data {
	t.Helper()
	select {
	case <-a.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer from the worker")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got[len(a.got)-1]
}

func startServer(t *testing.T, admit func(int) (string, bool)) (*Server, *yggdrasil.Registry, *answers) {
	t.Helper()
	reg := yggdrasil.NewRegistry(nil)
	ans := &answers{ch: make(chan struct{}, 100)}
	runtime := t.TempDir()
	s, err := Listen(Config{RuntimeDir: runtime, Registry: reg, Answer: ans.add, Admit: admit})
	if err != nil {
		t.Fatal(err)
	}
	if want := "unix:" + filepath.Join(runtime, "workers", "dispatcher.sock"); s.Addr() != want {
		t.Errorf("Addr = %q, want %q", s.Addr(), want)
	}
	// The workers yggd starts run in the socket directory: so do the
	// workers of these tests, which are this process.
	t.Chdir(s.Dir())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { reg.Close(); cancel(); <-done })
	return s, reg, ans
}

func awaitWorker(t *testing.T, reg *yggdrasil.Registry, handler string) *yggdrasil.Worker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := reg.Wait(ctx, handler)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestSDKWorkerRoundTrip(t *testing.T) {
	s, reg, ans := startServer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &worker.Worker{Handler: "echo", SocketAddr: s.Addr(), Features: map[string]string{"k": "v"},
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			return w.Reply(ctx, m, m.Content, m.Metadata)
		}}
	go w.Run(ctx)
	rw := awaitWorker(t, reg, "echo")
	if rw.Features["k"] != "v" {
		t.Errorf("features = %v", rw.Features)
	}
	err := rw.Conn.Send(context.Background(), &yggdrasil.Data{MessageID: "m1", Directive: "echo",
		Metadata: map[string]string{"a": "b"}, Content: []byte(`"hi"`)})
	if err != nil {
		t.Fatal(err)
	}
	got := ans.await(t)
	if got.ResponseTo != "m1" || string(got.Content) != `"hi"` || got.Metadata["a"] != "b" || got.Directive != "echo" {
		t.Errorf("answer = %+v", got)
	}
	// A second worker for the same handler is refused.
	w2 := &worker.Worker{Handler: "echo", SocketAddr: s.Addr(), Receive: func(context.Context, *worker.Worker, worker.Message) error { return nil }}
	if err := w2.Run(ctx); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("second echo registration: err = %v, want refused", err)
	}
}

// TestRawProtocolWorker is a worker written only from the 0.1.x facts: raw
// method names, the address rules (dial YGG_SOCKET_ADDR as it is, listen on
// the returned address as it is), no SDK.
func TestRawProtocolWorker(t *testing.T) {
	s, reg, ans := startServer(t, nil)
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var resp pb.RegistrationResponse
	if err := cc.Invoke(context.Background(), "/yggdrasil.Dispatcher/Register", &pb.RegistrationRequest{Handler: "raw", Pid: 1}, &resp); err != nil {
		t.Fatal(err)
	}
	if !resp.Registered || !strings.HasPrefix(resp.Address, "unix:ygg-raw-") {
		t.Fatalf("register = %+v, want registered at unix:ygg-raw-<random>", &resp)
	}
	lis, err := net.Listen("unix", resp.Address)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "yggdrasil.Worker",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Send", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in pb.Data
			if err := dec(&in); err != nil {
				return nil, err
			}
			// Answer before returning the receipt: the race that wedged 0.1.5.
			out := &pb.Data{MessageId: "answer-1", ResponseTo: in.MessageId, Directive: in.Directive, Content: in.Content}
			if err := cc.Invoke(ctx, "/yggdrasil.Dispatcher/Send", out, &pb.Receipt{}); err != nil {
				return nil, err
			}
			return &pb.Receipt{}, nil
		}}},
	}, nil)
	go srv.Serve(lis)
	defer srv.Stop()
	w := awaitWorker(t, reg, "raw")
	if err := w.Conn.Send(context.Background(), &yggdrasil.Data{MessageID: "m1", Directive: "raw", Content: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	if got := ans.await(t); got.ResponseTo != "m1" || got.MessageID != "answer-1" {
		t.Errorf("answer = %+v", got)
	}
}

func TestStrangerRefused(t *testing.T) {
	s, reg, _ := startServer(t, func(int) (string, bool) { return "", false })
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	mustRefuse(t, cc, reg, "echo", "is not a worker started by yggd")
}

// mustRefuse checks that the dispatcher behind cc refuses to register
// handler and to take an answer for it, saying why.
func mustRefuse(t *testing.T, cc *grpc.ClientConn, reg *yggdrasil.Registry, handler, why string) {
	t.Helper()
	client := pb.NewDispatcherClient(cc)
	_, err := client.Register(context.Background(), &pb.RegistrationRequest{Handler: handler, Pid: 1})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), why) {
		t.Errorf("register: %v, want PermissionDenied: %s", err, why)
	}
	_, err = client.Send(context.Background(), &pb.Data{MessageId: "x", Directive: handler})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), why) {
		t.Errorf("send: %v, want PermissionDenied: %s", err, why)
	}
	if _, ok := reg.Lookup(handler); ok {
		t.Errorf("the refused caller's handler %q is registered", handler)
	}
}

func TestValidHandler(t *testing.T) {
	for _, tc := range []struct {
		h  string
		ok bool
	}{{"echo", true}, {"rhc-worker-playbook", true}, {"", false}, {"a/b", false}, {"a b", false}, {strings.Repeat("x", 65), false}, {"a\x00", false}} {
		if err := validHandler(tc.h); (err == nil) != tc.ok {
			t.Errorf("validHandler(%q) = %v, want ok %v", tc.h, err, tc.ok)
		}
	}
}
