// Package workertest runs a worker of package yggdrasil/worker in a test's
// own process, the way net/http/httptest runs an HTTP handler: a
// Dispatcher stands in for yggd, hands the worker messages and collects
// its answers. It speaks the real protocol, gRPC over UNIX sockets in a
// fresh temporary directory, so the worker's own checks (only its
// dispatcher's process may call it) run as they do under yggd.
//
// A test starts the worker (New closes it when the test ends), dispatches,
// and waits for the answers:
//
//	d := workertest.New(t, w)
//	id, err := d.Dispatch(ctx, worker.Message{Content: []byte(`"hi"`)})
//	answers, err := d.Await(ctx, id, 1)
//
// Like yggd, the Dispatcher refuses an answer whose content is not JSON
// (unless its directive is a URL), or that has no ID or Directive: the
// worker's Reply returns the error, and the answer is not collected. A
// detached worker gets the Content of Dispatch as it is, as if yggd had
// fetched it, and its answers to URLs are collected, not posted.
package workertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/ygglab/yggdrasil/proto"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/worker"
)

// Registration is what the worker registered with.
type Registration struct {
	Handler  string
	Detached bool
	Features map[string]string
}

// Dispatcher is a dispatcher serving one worker in the test's process.
type Dispatcher struct {
	dir    string
	lis    net.Listener
	srv    *grpc.Server
	served chan struct{}
	stop   context.CancelFunc
	ran    chan struct{} // closed when Run has returned runErr
	runErr error

	registered chan struct{} // closed by the first Register

	mu      sync.Mutex
	reg     Registration
	cc      *grpc.ClientConn // to the worker, once registered
	answers []worker.Message
	changed chan struct{} // closed and replaced at each answer

	closeOnce sync.Once
	closeErr  error
}

// Start listens on a UNIX socket in a fresh temporary directory, sets
// w.SocketAddr to it, runs w with a context derived from ctx, and returns
// once w has registered and is listening; or w's error, if Run returns
// first. Close stops w.
func Start(ctx context.Context, w *worker.Worker) (*Dispatcher, error) {
	// Not t.TempDir: sun_path holds 108 bytes.
	dir, err := os.MkdirTemp("", "workertest")
	if err != nil {
		return nil, fmt.Errorf("workertest: %w", err)
	}
	d := &Dispatcher{dir: dir, served: make(chan struct{}), ran: make(chan struct{}),
		registered: make(chan struct{}), changed: make(chan struct{})}
	d.lis, err = net.Listen("unix", filepath.Join(dir, "dispatcher.sock"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("workertest: listen: %w", err)
	}
	d.srv = grpc.NewServer()
	pb.RegisterDispatcherServer(d.srv, dispatcher{d: d})
	go func() { d.srv.Serve(d.lis); close(d.served) }()

	w.SocketAddr = "unix:" + filepath.Join(dir, "dispatcher.sock")
	wctx, stop := context.WithCancel(ctx)
	d.stop = stop
	go func() { d.runErr = w.Run(wctx); close(d.ran) }()
	if err := d.awaitServing(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("workertest: %w", err)
	}
	return d, nil
}

// New starts w as Start does, with the test's context, fails the test if
// it cannot, and closes the Dispatcher when the test ends, reporting Run's
// error as a test error.
func New(t testing.TB, w *worker.Worker) *Dispatcher {
	t.Helper()
	d, err := Start(t.Context(), w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("workertest: the worker's Run: %v", err)
		}
	})
	return d
}

// awaitServing waits until the worker has registered and accepts the
// dispatcher's connection, or Run has returned.
func (d *Dispatcher) awaitServing(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.ran:
			cancel()
		case <-ctx.Done():
		}
	}()
	select {
	case <-d.registered:
	case <-ctx.Done():
	}
	d.mu.Lock()
	cc := d.cc
	d.mu.Unlock()
	if cc != nil {
		// The first attempt may come before the worker listens. After a
		// failed attempt and its backoff, the channel goes idle and stays
		// there until asked to connect again: ask each time.
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if s == connectivity.Idle {
				cc.Connect()
			}
			if !cc.WaitForStateChange(ctx, s) {
				break
			}
		}
	}
	select {
	case <-d.ran:
		if d.runErr == nil {
			return errors.New("the worker stopped before it served")
		}
		return d.runErr
	default:
		return ctx.Err()
	}
}

// Registration returns what the worker registered with.
func (d *Dispatcher) Registration() Registration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reg
}

// Dispatch hands m to the worker as yggd does, and returns m's ID once the
// worker has given its receipt (with Worker.Sync, once Receive has
// returned). An empty ID is made up; an empty Directive is the worker's
// handler.
func (d *Dispatcher) Dispatch(ctx context.Context, m worker.Message) (string, error) {
	if m.ID == "" {
		m.ID = yggdrasil.NewMessageID()
	}
	d.mu.Lock()
	cc, handler := d.cc, d.reg.Handler
	d.mu.Unlock()
	if m.Directive == "" {
		m.Directive = handler
	}
	_, err := pb.NewWorkerClient(cc).Send(ctx, &pb.Data{MessageId: m.ID, ResponseTo: m.ResponseTo,
		Directive: m.Directive, Metadata: m.Metadata, Content: m.Content}, grpc.WaitForReady(true))
	if err != nil {
		return m.ID, fmt.Errorf("workertest: dispatch %s: %w", m.ID, err)
	}
	return m.ID, nil
}

// Cancel asks the worker to cancel message id, as yggd does for the cloud's
// cancel command. A worker that holds no such message (never dispatched,
// or its Receive has returned) answers NotFound, returned as an error with
// that gRPC status.
func (d *Dispatcher) Cancel(ctx context.Context, id string) error {
	d.mu.Lock()
	cc, handler := d.cc, d.reg.Handler
	d.mu.Unlock()
	_, err := pb.NewWorkerClient(cc).Cancel(ctx, &pb.CancelRequest{Directive: handler,
		MessageId: yggdrasil.NewMessageID(), CancelId: id}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("workertest: cancel %s: %w", id, err)
	}
	return nil
}

// Answers returns the answers collected so far, in the order they came.
func (d *Dispatcher) Answers() []worker.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.answers)
}

// Await waits until the worker has sent n answers to the message
// responseTo (n answers in all, when responseTo is ""), and returns all
// the answers to it so far; or ctx's error when ctx ends first.
func (d *Dispatcher) Await(ctx context.Context, responseTo string, n int) ([]worker.Message, error) {
	for {
		d.mu.Lock()
		var got []worker.Message
		for _, a := range d.answers {
			if responseTo == "" || a.ResponseTo == responseTo {
				got = append(got, a)
			}
		}
		changed := d.changed
		d.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, fmt.Errorf("workertest: %d answers to %q, want %d: %w", len(got), responseTo, n, ctx.Err())
		}
	}
}

// Close stops the worker as yggd's SIGTERM would (Run's context ends),
// waits for Run to return, stops the dispatcher, and removes its
// directory. It returns Run's error; later calls return it again.
func (d *Dispatcher) Close() error {
	d.closeOnce.Do(func() {
		d.stop()
		<-d.ran
		d.closeErr = d.runErr
		d.mu.Lock()
		if d.cc != nil {
			d.cc.Close()
		}
		d.mu.Unlock()
		d.srv.Stop()
		<-d.served
		os.RemoveAll(d.dir)
	})
	return d.closeErr
}

// dispatcher is the Dispatcher's gRPC service.
type dispatcher struct {
	pb.UnimplementedDispatcherServer
	d *Dispatcher
}

func (s dispatcher) Register(_ context.Context, r *pb.RegistrationRequest) (*pb.RegistrationResponse, error) {
	d := s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cc != nil {
		return &pb.RegistrationResponse{Registered: false}, nil // one worker
	}
	sock := filepath.Join(d.dir, "worker.sock")
	cc, err := grpc.NewClient("passthrough:///worker",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", sock)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The worker listens once Register has returned: retry soon.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 5 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond}}))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	d.cc = cc
	d.reg = Registration{Handler: r.GetHandler(), Detached: r.GetDetachedContent(), Features: r.GetFeatures()}
	close(d.registered)
	return &pb.RegistrationResponse{Registered: true, Address: "unix://" + sock}, nil
}

func (s dispatcher) Send(_ context.Context, a *pb.Data) (*pb.Receipt, error) {
	d := s.d
	if err := check(a); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d.mu.Lock()
	d.answers = append(d.answers, worker.Message{ID: a.GetMessageId(), ResponseTo: a.GetResponseTo(),
		Directive: a.GetDirective(), Metadata: a.GetMetadata(), Content: a.GetContent()})
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
	return &pb.Receipt{}, nil
}

// check refuses the answers yggd refuses.
func check(a *pb.Data) error {
	url := strings.HasPrefix(a.GetDirective(), "http://") || strings.HasPrefix(a.GetDirective(), "https://")
	switch {
	case a.GetMessageId() == "":
		return fmt.Errorf("%w: message_id is empty", yggdrasil.ErrInvalidAnswer)
	case a.GetDirective() == "":
		return fmt.Errorf("%w: directive is empty", yggdrasil.ErrInvalidAnswer)
	case !url && len(a.GetContent()) > 0 && !json.Valid(a.GetContent()):
		return fmt.Errorf("%w: content is not JSON (a string must be sent quoted)", yggdrasil.ErrInvalidAnswer)
	}
	return nil
}
