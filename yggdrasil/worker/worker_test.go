package worker

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ygglab/yggdrasil/fakes/logbuf"
	pb "github.com/ygglab/yggdrasil/proto"
)

// strangerEnv switches the test binary into a local process that is not the
// dispatcher: it calls Worker.Send at the address in the variable.
const strangerEnv = "WORKER_TEST_STRANGER_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(strangerEnv); addr != "" {
		os.Exit(stranger(addr))
	}
	os.Exit(m.Run())
}

// stranger connects to the worker's socket (exit 2 if it cannot even do
// that) and calls Send: exit 0 if the call fails, 1 if it is accepted.
func stranger(addr string) int {
	c, err := net.Dial("unix", addr)
	if err != nil {
		fmt.Printf("connect: %v\n", err)
		return 2
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := dialWorker(addr)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
		return 2
	}
	defer cc.Close()
	_, err = pb.NewWorkerClient(cc).Send(ctx, &pb.Data{MessageId: "stranger", Directive: "x", Content: []byte(`1`)})
	if err == nil {
		fmt.Println("send: accepted")
		return 1
	}
	fmt.Printf("send: refused (%v)\n", err)
	return 0
}

func dialWorker(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///worker",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Retry soon while the worker is not listening yet.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond}}))
}

// fakeDispatcher answers Register with a fixed address.
type fakeDispatcher struct {
	pb.UnimplementedDispatcherServer
	answer string
}

func (d *fakeDispatcher) Register(context.Context, *pb.RegistrationRequest) (*pb.RegistrationResponse, error) {
	return &pb.RegistrationResponse{Registered: true, Address: d.answer}, nil
}

// startDispatcher serves a fake dispatcher on the UNIX address addr until
// the test ends.
func startDispatcher(t *testing.T, addr, answer string) {
	t.Helper()
	lis, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterDispatcherServer(srv, &fakeDispatcher{answer: answer})
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	t.Cleanup(func() { srv.Stop(); <-done })
}

// socketDir returns a fresh directory short enough for sun_path (108
// bytes), which t.TempDir is not always.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "w")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runWorker runs w until the returned stop is called or the test ends;
// stop checks that Run returned nil.
func runWorker(t *testing.T, w *Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitUntil polls cond until it holds, or fails the test after a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestDispatcherIsAccepted(t *testing.T) {
	abstract := "@ygg-test-" + rand.Text()[:16]
	tests := []struct {
		name string
		// socketAddr and answer are built from the socket directory.
		socketAddr func(dir string) string
		answer     func(dir string) string
		listenOn   string // the worker's net.Listen address, relative to dir unless abstract
	}{
		{
			name:       "relative_answer",
			socketAddr: func(dir string) string { return "unix:" + filepath.Join(dir, "d") },
			answer:     func(string) string { return "unix:ygg-x-abc" },
			listenOn:   "ygg-x-abc",
		},
		{
			name:       "absolute_answer",
			socketAddr: func(dir string) string { return "unix://" + filepath.Join(dir, "d") },
			answer:     func(dir string) string { return "unix://" + filepath.Join(dir, "ygg-x-abc") },
			listenOn:   "ygg-x-abc",
		},
		{
			name:       "abstract_answer_0_1_x",
			socketAddr: func(string) string { return "unix:" + abstract + "-d" },
			answer:     func(string) string { return abstract },
			listenOn:   abstract,
		},
		{
			name:       "unix_abstract_dispatcher",
			socketAddr: func(string) string { return "unix-abstract:" + abstract[1:] + "-d" },
			answer:     func(string) string { return abstract },
			listenOn:   abstract,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			dispAddr, err := dialAddress(tt.socketAddr(dir))
			if err != nil {
				t.Fatal(err)
			}
			startDispatcher(t, dispAddr, tt.answer(dir))
			got := make(chan Message, 1)
			w := &Worker{Handler: "x", SocketAddr: tt.socketAddr(dir), dir: dir,
				Receive: func(_ context.Context, _ *Worker, m Message) error { got <- m; return nil }}
			listenOn := tt.listenOn
			if !strings.HasPrefix(listenOn, "@") {
				listenOn = filepath.Join(dir, listenOn)
			}
			stop := runWorker(t, w)

			cc, err := dialWorker(listenOn)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err = pb.NewWorkerClient(cc).Send(ctx, &pb.Data{MessageId: "m1", Directive: "x", Content: []byte(`1`)},
				grpc.WaitForReady(true))
			if err != nil {
				t.Fatalf("Send from the dispatcher's process: %v", err)
			}
			select {
			case m := <-got:
				if m.ID != "m1" {
					t.Errorf("Receive got message %q, want m1", m.ID)
				}
			case <-ctx.Done():
				t.Fatal("Receive was not called")
			}
			stop()
			if !strings.HasPrefix(listenOn, "@") && exists(listenOn) {
				t.Errorf("socket %s is still there after the worker stopped", listenOn)
			}
		})
	}
}

// TestStrangerIsRefused runs another local process that reaches the
// worker's socket and calls Send: the SDK must refuse it. The socket is
// made reachable by everyone on purpose, so that what refuses the call is
// the SDK's check and not the file's permissions; the report on stderr
// names the stranger's pid to show it.
func TestStrangerIsRefused(t *testing.T) {
	tests := []struct {
		name string
		cred *syscall.Credential // nil: the test's own uid
	}{
		{name: "same_uid"},
		{name: "uid_65534", cred: &syscall.Credential{Uid: 65534, Gid: 65534}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cred != nil && os.Getuid() != 0 {
				t.Skip("needs root to run a process as another uid")
			}
			dir := socketDir(t)
			disp := filepath.Join(dir, "d")
			startDispatcher(t, disp, "unix:ygg-x-abc")
			var (
				mu       sync.Mutex
				received []string
			)
			stderr := &logbuf.Buffer{}
			// Sync: Receive runs inside Send, so once a call has returned,
			// whether Receive ran is settled.
			w := &Worker{Handler: "x", SocketAddr: "unix:" + disp, dir: dir, Sync: true, stderr: stderr,
				Receive: func(_ context.Context, _ *Worker, m Message) error {
					mu.Lock()
					received = append(received, m.ID)
					mu.Unlock()
					return nil
				}}
			runWorker(t, w)
			sock := filepath.Join(dir, "ygg-x-abc")
			waitUntil(t, "the worker's socket", func() bool { return exists(sock) })

			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(self)
			if tt.cred != nil {
				// The test binary sits in a directory only root can enter.
				for _, p := range []string{dir, sock} {
					if err := os.Chmod(p, 0o777); err != nil {
						t.Fatal(err)
					}
				}
				bin := filepath.Join(dir, "stranger")
				copyFile(t, self, bin)
				cmd = exec.Command(bin)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tt.cred}
			}
			// GORACE: a race-enabled binary otherwise sleeps a second at exit.
			cmd.Env = append(os.Environ(), strangerEnv+"="+sock, "GORACE=atexit_sleep_ms=0")
			out, err := cmd.CombinedOutput()
			t.Logf("stranger (pid %d): %s", cmd.Process.Pid, out)
			if err != nil {
				t.Fatalf("stranger: %v (want its Send refused)", err)
			}
			mu.Lock()
			if len(received) != 0 {
				t.Errorf("Receive was called for %q", received)
			}
			mu.Unlock()
			uid := os.Getuid()
			if tt.cred != nil {
				uid = int(tt.cred.Uid)
			}
			want := fmt.Sprintf("worker: refused a connection from pid %d uid %d: only the dispatcher (pid %d) may call this worker\n",
				cmd.Process.Pid, uid, os.Getpid())
			if got := stderr.String(); got != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", got, want)
			}

			// The dispatcher's process is still served.
			cc, err := dialWorker(sock)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if _, err := pb.NewWorkerClient(cc).Send(ctx, &pb.Data{MessageId: "m1", Directive: "x", Content: []byte(`1`)}); err != nil {
				t.Fatalf("Send from the dispatcher's process: %v", err)
			}
			mu.Lock()
			if len(received) != 1 || received[0] != "m1" {
				t.Errorf("received %q, want [m1]", received)
			}
			mu.Unlock()
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStaleSocket: a socket file left by a worker that was killed is
// replaced; a socket somebody answers on is not.
func TestStaleSocket(t *testing.T) {
	t.Run("stale", func(t *testing.T) {
		dir := socketDir(t)
		sock := filepath.Join(dir, "ygg-x-abc")
		lis, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		lis.(*net.UnixListener).SetUnlinkOnClose(false)
		lis.Close()
		startDispatcher(t, filepath.Join(dir, "d"), "unix:ygg-x-abc")
		got := make(chan Message, 1)
		w := &Worker{Handler: "x", SocketAddr: "unix:" + filepath.Join(dir, "d"), dir: dir,
			Receive: func(_ context.Context, _ *Worker, m Message) error { got <- m; return nil }}
		runWorker(t, w)
		cc, err := dialWorker(sock)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := pb.NewWorkerClient(cc).Send(ctx, &pb.Data{MessageId: "m1", Directive: "x"}, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("Send: %v", err)
		}
		<-got
	})
	t.Run("live", func(t *testing.T) {
		dir := socketDir(t)
		sock := filepath.Join(dir, "ygg-x-abc")
		lis, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		startDispatcher(t, filepath.Join(dir, "d"), "unix:ygg-x-abc")
		w := &Worker{Handler: "x", SocketAddr: "unix:" + filepath.Join(dir, "d"), dir: dir,
			Receive: func(context.Context, *Worker, Message) error { return nil }}
		err = w.Run(t.Context())
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("Run: %v, want EADDRINUSE", err)
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("the live socket is gone: %v", err)
		}
		c.Close()
	})
}

func TestRefusalLogIsRateLimited(t *testing.T) {
	var b bytes.Buffer
	r := &refusalLog{w: &b}
	t0 := time.Now()
	for i, at := range []time.Duration{0, time.Second, 59 * time.Second, 61 * time.Second, 62 * time.Second} {
		r.refused(&unix.Ucred{Pid: int32(100 + i), Uid: 1000}, 1, t0.Add(at))
	}
	want := "worker: refused a connection from pid 100 uid 1000: only the dispatcher (pid 1) may call this worker\n" +
		"worker: refused a connection from pid 103 uid 1000: only the dispatcher (pid 1) may call this worker (and 2 more since the last report)\n"
	if got := b.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
}

func TestDialAddress(t *testing.T) {
	tests := []struct {
		name, target, want string
		wantErr            bool
	}{
		{name: "unix_absolute", target: "unix:/run/ygg/d", want: "/run/ygg/d"},
		{name: "unix_relative", target: "unix:ygg-d", want: "ygg-d"},
		{name: "unix_relative_dir", target: "unix:run/d", want: "run/d"},
		{name: "unix_abstract_at", target: "unix:@yggd-dispatcher-abcdef", want: "@yggd-dispatcher-abcdef"},
		{name: "unix_abstract_scheme", target: "unix-abstract:yggd-dispatcher-abcdef", want: "@yggd-dispatcher-abcdef"},
		{name: "unix_triple_slash", target: "unix:///run/ygg/d", want: "/run/ygg/d"},
		{name: "unix_authority", target: "unix://host/run/d", wantErr: true},
		{name: "unix_empty", target: "unix:", wantErr: true},
		{name: "unix_at_only", target: "unix:@", wantErr: true},
		{name: "unix_abstract_empty", target: "unix-abstract:", wantErr: true},
		{name: "bare_path", target: "/run/ygg/d", wantErr: true},
		{name: "tcp", target: "dns:///localhost:1234", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dialAddress(tt.target)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("dialAddress(%q) = %q, %v; want %q, error %v", tt.target, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestListenAddress(t *testing.T) {
	tests := []struct {
		name, addr, dir, want string
		wantErr               bool
	}{
		{name: "relative", addr: "unix:ygg-echo-abcdefghijklmnop", want: "ygg-echo-abcdefghijklmnop"},
		{name: "relative_in_dir", addr: "unix:ygg-echo-abc", dir: "/tmp/w1", want: "/tmp/w1/ygg-echo-abc"},
		{name: "unix_absolute", addr: "unix:/run/ygg/w", dir: "/tmp/w1", want: "/run/ygg/w"},
		{name: "unix_triple_slash", addr: "unix:///run/ygg/w", dir: "/tmp/w1", want: "/run/ygg/w"},
		{name: "unix_abstract", addr: "unix:@ygg-echo-abc", dir: "/tmp/w1", want: "@ygg-echo-abc"},
		{name: "abstract_0_1_x", addr: "@ygg-echo-abcdef", dir: "/tmp/w1", want: "@ygg-echo-abcdef"},
		{name: "bare_path", addr: "/run/ygg/w", want: "/run/ygg/w"},
		{name: "unix_authority", addr: "unix://host/w", wantErr: true},
		{name: "empty", addr: "", wantErr: true},
		{name: "unix_empty", addr: "unix:", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := listenAddress(tt.addr, tt.dir)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("listenAddress(%q, %q) = %q, %v; want %q, error %v", tt.addr, tt.dir, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
