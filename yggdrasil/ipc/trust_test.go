package ipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/ygglab/yggdrasil/proto"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// The child processes of these tests are this test binary again, told
// what to do by YGG_IPC_CHILD.
func TestMain(m *testing.M) {
	switch os.Getenv("YGG_IPC_CHILD") {
	case "":
		os.Exit(m.Run())
	case "connect-and-pass":
		os.Exit(childConnectAndPass())
	case "register-and-exit":
		os.Exit(childRegisterAndExit())
	case "register":
		os.Exit(childRegister())
	}
	fmt.Fprintln(os.Stderr, "unknown YGG_IPC_CHILD")
	os.Exit(2)
}

// childConnectAndPass connects to the dispatcher at $YGG_SOCKET_ADDR, hands
// the connection to its parent over fd 3 (SCM_RIGHTS) and exits: the first
// move of the pid-reuse attack.
func childConnectAndPass() int {
	path := strings.TrimPrefix(os.Getenv("YGG_SOCKET_ADDR"), "unix:")
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, _ := c.(*net.UnixConn).File()
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childRegister registers handler $YGG_HANDLER and prints what the
// dispatcher said.
func childRegister() int {
	cc, err := grpc.NewClient(os.Getenv("YGG_SOCKET_ADDR"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := pb.NewDispatcherClient(cc).Register(ctx, &pb.RegistrationRequest{Handler: os.Getenv("YGG_HANDLER")})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("registered", resp.GetRegistered())
	return 0
}

// childRegisterAndExit registers, then exits at once without closing
// anything.
func childRegisterAndExit() int { return childRegister() }

// TestPeerOfExitedProcessRefused is the pid-reuse attack without the
// reuse: a process connects, hands its connection to another and exits.
// Whoever then holds the connection, and whatever process now has that pid,
// the dispatcher refuses it: the pidfd taken at accept shows its process
// gone.
func TestPeerOfExitedProcessRefused(t *testing.T) {
	s, reg, _ := startServer(t, nil) // admits every process of our uid
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	defer mine.Close()
	cmd := child(t, "connect-and-pass", s.Addr(), "")
	cmd.ExtraFiles = []*os.File{theirs}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	theirs.Close()
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(mine.Fd()), make([]byte, 1), oob, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control message: %v", err)
	}
	passed, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(passed) != 1 {
		t.Fatalf("passed fds: %v", err)
	}
	conn, err := net.FileConn(os.NewFile(uintptr(passed[0]), "passed"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("passthrough:///passed",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return conn, nil }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	mustRefuse(t, cc, reg, "hijacked", "has exited")
}

// TestRegistrationEndsWithProcess: a handler registered by a process is
// free as soon as that process exits, with nothing else to tell yggd.
func TestRegistrationEndsWithProcess(t *testing.T) {
	s, reg, _ := startServer(t, nil)
	out, err := child(t, "register-and-exit", s.Addr(), "brief").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "registered true") {
		t.Fatalf("child: %v: %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := reg.Lookup("brief"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the handler of an exited process is still registered after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And the handler can be taken again.
	out, err = child(t, "register-and-exit", s.Addr(), "brief").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "registered true") {
		t.Fatalf("second registration: %v: %s", err, out)
	}
}

// TestOtherUIDRefused: a process of another user is refused when the
// connection is accepted. The socket directory is opened up for this test
// only, to show the dispatcher's own check; normally that user cannot even
// reach the socket.
func TestOtherUIDRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as another uid")
	}
	s, reg, _ := startServer(t, nil)
	runtime := filepath.Dir(s.Dir())
	for _, p := range []string{filepath.Dir(runtime), runtime, s.Dir(), filepath.Join(s.Dir(), dispatcherSock)} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	for dir := filepath.Dir(s.Dir()); dir != "/"; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not searchable by others", dir)
		}
	}
	// The test binary's own directory is closed to others: run a copy.
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(filepath.Dir(runtime), "ipc.test")
	if err := os.WriteFile(copyPath, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := child(t, "register", s.Addr(), "nobody")
	cmd.Path = copyPath
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("child as uid 65534: %v: %s", err, out)
	if err == nil || !strings.Contains(string(out), "Unavailable") {
		t.Fatalf("uid 65534: %v: %s, want the connection refused (Unavailable)", err, out)
	}
	if _, ok := reg.Lookup("nobody"); ok {
		t.Error("the handler of uid 65534 is registered")
	}
}

// TestSocketDir: the sockets live in a directory only our uid may enter;
// stale sockets go, a live dispatcher is not pushed aside, and a directory
// planted by another user is refused.
func TestSocketDir(t *testing.T) {
	runtime := t.TempDir()
	dir := filepath.Join(runtime, WorkersDir)
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	stale, err := net.Listen("unix", filepath.Join(dir, "unix:ygg-old-x"))
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	s, err := Listen(Config{RuntimeDir: runtime, Registry: yggdrasil.NewRegistry(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode: %v %v, want 0700", fi.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "unix:ygg-old-x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale socket left: %v", err)
	}
	if _, err := Listen(Config{RuntimeDir: runtime, Registry: yggdrasil.NewRegistry(nil)}); err == nil || !strings.Contains(err.Error(), "another yggd serves") {
		t.Errorf("second dispatcher on the same dir: %v, want another yggd serves", err)
	}

	if os.Geteuid() != 0 {
		return
	}
	planted := t.TempDir()
	if err := os.Mkdir(filepath.Join(planted, WorkersDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(planted, WorkersDir), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(Config{RuntimeDir: planted, Registry: yggdrasil.NewRegistry(nil)}); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("planted socket dir: %v, want owned by uid 65534", err)
	}
}

// TestLongSocketPath: a socket path longer than sun_path is reached
// through the directory's file descriptor.
func TestLongSocketPath(t *testing.T) {
	s, reg, _ := startServer(t, nil)
	handler := strings.Repeat("h", 64)
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var resp pb.RegistrationResponse
	if err := cc.Invoke(context.Background(), "/yggdrasil.Dispatcher/Register", &pb.RegistrationRequest{Handler: handler}, &resp); err != nil {
		t.Fatal(err)
	}
	// The Python form: the relative path after "unix:".
	lis, err := net.Listen("unix", strings.TrimPrefix(resp.Address, "unix:"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterWorkerServer(srv, receiptServer{})
	go srv.Serve(lis)
	defer srv.Stop()
	w := awaitWorker(t, reg, handler)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Conn.Send(ctx, &yggdrasil.Data{MessageID: "m1", Directive: handler, Content: []byte(`1`)}); err != nil {
		t.Fatalf("send to a worker whose socket path is %d bytes: %v", len(filepath.Join(s.Dir(), resp.Address)), err)
	}
}

type receiptServer struct{ pb.UnimplementedWorkerServer }

func (receiptServer) Send(context.Context, *pb.Data) (*pb.Receipt, error) { return &pb.Receipt{}, nil }

// child returns the command that runs this test binary as the child mode.
func child(t *testing.T, mode, addr, handler string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "YGG_IPC_CHILD="+mode, "YGG_SOCKET_ADDR="+addr, "YGG_HANDLER="+handler)
	return cmd
}
