package e2e

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/ygglab/yggdrasil/proto"
	"github.com/ygglab/yggdrasil/yggdrasil/worker"
)

// Test-only programs that attack the dispatcher as a local process would
// (threat model: yggd's uid and the workers yggd starts are trusted; any
// other local process, of another uid or of root, is not).
var testPrograms4 = map[string]func() int{
	"raw-worker":     rawWorker,
	"knock":          knock,
	"fork-worker":    forkWorker,
	"pidreuse":       pidReuse,
	"parent-worker":  parentWorker,
	"claim-worker":   claimWorker,
	"register-child": registerChild,
}

func init() {
	// uid0 is on $PATH only when the suite runs as root, so that a script
	// can say [!exec:uid0] skip: testscript has no condition for root.
	if os.Geteuid() == 0 {
		testPrograms4["uid0"] = func() int { return 0 }
	}
}

// rawWorker is a 0.1.x-style Go worker written without the SDK: it dials
// YGG_SOCKET_ADDR as it is, registers "raw", listens on the address it is
// given as it is (net.Listen("unix", "unix:ygg-raw-…") in its working
// directory), and echoes every message back through Dispatcher.Send.
func rawWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cc, err := grpc.NewClient(os.Getenv("YGG_SOCKET_ADDR"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cc.Close()
	var resp pb.RegistrationResponse
	req := &pb.RegistrationRequest{Handler: "raw", Pid: int64(os.Getpid())}
	if err := cc.Invoke(ctx, "/yggdrasil.Dispatcher/Register", req, &resp); err != nil || !resp.Registered {
		fmt.Fprintln(os.Stderr, "register:", err, resp.Registered)
		return 1
	}
	lis, err := net.Listen("unix", resp.Address)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := grpc.NewServer()
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "yggdrasil.Worker",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Send", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in pb.Data
			if err := dec(&in); err != nil {
				return nil, err
			}
			go func() {
				out := &pb.Data{MessageId: "raw-" + in.MessageId, ResponseTo: in.MessageId, Directive: in.Directive, Content: in.Content}
				if err := cc.Invoke(ctx, "/yggdrasil.Dispatcher/Send", out, &pb.Receipt{}); err != nil {
					fmt.Fprintln(os.Stderr, err)
				}
			}()
			return &pb.Receipt{}, nil
		}}},
	}, nil)
	go func() { <-ctx.Done(); srv.Stop() }()
	if err := srv.Serve(lis); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// knock is the attack of another local user:
//
//	knock -install path    (as root) copy this executable to path, mode 0755
//	knock                  (as the attacker) knock on every socket
//	knock -check file      (as root) count the real sockets file knocked on
//
// Why -install: testscript runs programs as hard links of the test binary
// in its private temporary directories (mode 0700, like go test's build
// directory), which uid 65534 cannot enter; the script puts a copy in the
// runtime directory, opened to 0755 as /run/yggdrasil is on a real host, so
// that the only barrier left is the one under test (the workers directory,
// mode 0700).
//
// Without flags, knock reads /proc/net/unix (world-readable), takes every
// socket under $RUNTIME_DIRECTORY and every relative worker socket name
// (ygg-…, unix:ygg-…; a worker binds them in the workers directory, its
// working directory), and tries to connect to each; where a connect
// succeeds, it calls Register and Send (dispatcher) or Worker.Send (worker).
// It prints one "knock PATH: …" line per socket and exits 0 only when every
// connect was refused with "permission denied".
//
// Relative names of other scripts' yggds are knocked on too (they resolve
// to nothing in this directory, which the attacker cannot tell): -check,
// as root, says how many of the knocked paths are real sockets of this
// yggd, and fails unless the dispatcher and at least two worker sockets are
// among them, else the test would prove nothing.
func knock() int {
	fs := flag.NewFlagSet("knock", flag.ContinueOnError)
	install := fs.String("install", "", "copy this executable to `path`")
	check := fs.String("check", "", "count the real sockets in knock's output `file`")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 0 {
		return 2
	}
	switch {
	case *install != "":
		return knockInstall(*install)
	case *check != "":
		return knockCheck(*check)
	}
	rt := os.Getenv("RUNTIME_DIRECTORY")
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil || rt == "" {
		fmt.Fprintln(os.Stderr, "knock:", err, "RUNTIME_DIRECTORY="+rt)
		return 2
	}
	var paths []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 8 {
			continue
		}
		p := f[7]
		switch {
		case strings.HasPrefix(p, rt+"/"):
		case strings.HasPrefix(p, "ygg-"), strings.HasPrefix(p, "unix:ygg-"):
			p = filepath.Join(rt, "workers", p)
		default:
			continue
		}
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	fmt.Printf("uid %d found %d sockets\n", os.Getuid(), len(paths))
	ok := len(paths) > 0
	for _, p := range paths {
		c, err := net.DialTimeout("unix", p, 5*time.Second)
		if errors.Is(err, syscall.EACCES) {
			fmt.Printf("knock %s: connect: permission denied\n", p)
			continue
		}
		ok = false
		if err != nil {
			fmt.Printf("knock %s: connect: %v\n", p, err)
			continue
		}
		fmt.Printf("knock %s: connected\n", p)
		knockCalls(p, c)
	}
	if !ok {
		return 1
	}
	return 0
}

// clientOver returns a gRPC client whose one connection is c: a connection
// an attacker holds cannot be dialled again.
func clientOver(c net.Conn) (*grpc.ClientConn, error) {
	used := false
	return grpc.NewClient("passthrough:///held",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			if used {
				return nil, errors.New("the held connection is gone")
			}
			used = true
			return c, nil
		}))
}

// knockCalls tries the calls an attacker would make on a connection that
// got through.
func knockCalls(path string, c net.Conn) {
	cc, err := clientOver(c)
	if err != nil {
		fmt.Printf("knock %s: %v\n", path, err)
		return
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	data := &pb.Data{MessageId: "knock-1", Directive: "echo", Content: []byte(`"injected"`)}
	if strings.HasSuffix(path, "/dispatcher.sock") {
		_, err = pb.NewDispatcherClient(cc).Register(ctx, &pb.RegistrationRequest{Handler: "knocked"})
		fmt.Printf("knock %s: register: %v\n", path, errOrAdmitted(err))
		_, err = pb.NewDispatcherClient(cc).Send(ctx, data)
		fmt.Printf("knock %s: send: %v\n", path, errOrAdmitted(err))
		return
	}
	_, err = pb.NewWorkerClient(cc).Send(ctx, data)
	fmt.Printf("knock %s: worker send: %v\n", path, errOrAdmitted(err))
}

func errOrAdmitted(err error) string {
	if err == nil {
		return "admitted"
	}
	return "refused (" + err.Error() + ")"
}

func knockInstall(dst string) int {
	src, err := os.Executable()
	if err == nil {
		var b []byte
		if b, err = os.ReadFile(src); err == nil {
			err = os.WriteFile(dst, b, 0o755)
		}
	}
	if err == nil {
		err = os.Chmod(dst, 0o755) // whatever the umask
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "knock -install:", err)
		return 1
	}
	return 0
}

func knockCheck(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "knock -check:", err)
		return 2
	}
	dispatchers, workers := 0, 0
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "knock ")
		if !ok {
			continue
		}
		path, _, _ := strings.Cut(rest, ": ")
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode().Type() != os.ModeSocket {
			continue
		}
		if filepath.Base(path) == "dispatcher.sock" {
			dispatchers++
		} else {
			workers++
		}
	}
	fmt.Printf("real sockets knocked on: dispatcher=%d workers=%d\n", dispatchers, workers)
	if dispatchers < 1 || workers < 2 {
		return 1
	}
	return 0
}

// forkWorker serves "fork" and, on every SIGUSR1, starts a child
// "sleep 30": a descendant of a supervised worker, which yggd would admit
// by its pid. It kills its children when it stops.
func forkWorker() int {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	var children []*exec.Cmd
	defer func() {
		for _, c := range children {
			c.Process.Kill()
			c.Wait()
		}
	}()
	done := make(chan int, 1)
	go func() {
		done <- runWorker(&worker.Worker{Handler: "fork", Receive: func(context.Context, *worker.Worker, worker.Message) error { return nil }})
	}()
	for {
		select {
		case code := <-done:
			return code
		case <-usr1:
			c := exec.Command("sleep", "30")
			if err := c.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				continue
			}
			children = append(children, c)
		}
	}
}

// pidReuse is the pid-reuse attack, run as root but not as a descendant of
// yggd, as pid 1 of a new pid namespace (unshare --pid --fork --mount-proc)
// where it may set ns_last_pid:
//
//	pidreuse -client-id ID
//
// It starts yggd (with $YGG_BROKER, $YGG_WORKER_DIR, $RUNTIME_DIRECTORY;
// its log goes to yggd.log), which starts fork-worker. Then, up to 20
// times: a child ("pidreuse -connect") connects to the dispatcher, waits
// until the dispatcher has accepted the connection, hands it over
// (SCM_RIGHTS) and exits; once it is reaped, ns_last_pid is set to its
// pid - 1 and fork-worker is told to fork, so that its child (a process
// yggd admits) gets the connector's pid. When that happened, it calls
// Register("hijacked") and Send through the held connection and prints
// "verdict: refused" only if both were PermissionDenied because the
// connector has exited.
func pidReuse() int {
	fs := flag.NewFlagSet("pidreuse", flag.ContinueOnError)
	connect := fs.Bool("connect", false, "be the connector: connect, pass the connection on fd 3, exit")
	clientID := fs.String("client-id", "pidreuse", "yggd's client id")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 0 {
		return 2
	}
	if *connect {
		return connectAndPass()
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pidreuse: run me as pid 1 of a new pid namespace (unshare --pid --fork --mount-proc)")
		return 2
	}
	// As pid 1, we take in the namespace's orphans; none are reaped here,
	// and all die with us when we return.
	log, err := os.Create("yggd.log")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer log.Close()
	rt := os.Getenv("RUNTIME_DIRECTORY")
	yggd := exec.Command("yggd", "--broker", os.Getenv("YGG_BROKER"), "--client-id", *clientID,
		"--worker-dir", os.Getenv("YGG_WORKER_DIR"), "--runtime-dir", rt)
	yggd.Stderr = log
	if err := yggd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer func() {
		yggd.Process.Signal(syscall.SIGINT)
		yggd.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	forker, err := awaitForkWorker(yggd.Process.Pid, deadline)
	if err != nil {
		fmt.Println("pidreuse:", err)
		return 1
	}
	fmt.Printf("yggd pid %d, fork-worker pid %d\n", yggd.Process.Pid, forker)
	sock := filepath.Join(rt, "workers", "dispatcher.sock")
	for try := 1; try <= 20 && time.Now().Before(deadline); try++ {
		held, pid, err := connectViaChild(sock)
		if err != nil {
			fmt.Println("pidreuse:", err)
			return 1
		}
		got, err := forkAs(forker, pid, deadline)
		if err != nil {
			held.Close()
			fmt.Println("pidreuse:", err)
			return 1
		}
		if got != pid {
			fmt.Printf("try %d: connector pid %d, fork-worker's child got pid %d\n", try, pid, got)
			syscall.Kill(got, syscall.SIGKILL)
			held.Close()
			continue
		}
		fmt.Printf("pid %d reused: the connector exited and was reaped; fork-worker's child (pid %d, a descendant of yggd's worker) has its pid, after %d tries\n", pid, got, try)
		refused := attack(held, pid)
		held.Close()
		if refused {
			fmt.Println("verdict: refused")
			return 0
		}
		fmt.Println("verdict: admitted")
		return 1
	}
	fmt.Println("pidreuse: no pid reuse within 20 tries")
	return 1
}

// awaitForkWorker waits until yggd has logged fork-worker's registration
// and returns its pid.
func awaitForkWorker(yggd int, deadline time.Time) (int, error) {
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile("yggd.log")
		if slices.ContainsFunc(strings.Split(string(b), "\n"), func(l string) bool {
			return strings.Contains(l, `msg="worker registered"`) && strings.Contains(l, " handler=fork ")
		}) {
			for _, pid := range childrenOf(yggd) {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if strings.Contains(string(cmdline), "fork-worker") {
					return pid, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, errors.New("fork-worker did not register within 10s")
}

// childrenOf returns the pids whose parent is ppid.
func childrenOf(ppid int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if parent, err := parentOf(pid); err == nil && parent == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

func parentOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return ppid, nil
}

// connectViaChild runs "pidreuse -connect" and returns the connection it
// passed back and its pid; the child has exited and been reaped.
func connectViaChild(sock string) (net.Conn, int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("socketpair for the connection: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	defer mine.Close()
	cmd := exec.Command("pidreuse", "-connect")
	cmd.Env = append(os.Environ(), "YGG_SOCKET_ADDR=unix:"+sock)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	err = cmd.Run() // Wait reaps it: its pid is free
	theirs.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("connector: %w", err)
	}
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(mine.Fd()), make([]byte, 1), oob, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("receive the connection: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, 0, fmt.Errorf("receive the connection: %d control messages: %v", len(msgs), err)
	}
	passed, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(passed) != 1 {
		return nil, 0, fmt.Errorf("receive the connection: %v", err)
	}
	f := os.NewFile(uintptr(passed[0]), "held")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, 0, fmt.Errorf("receive the connection: %w", err)
	}
	return c, cmd.ProcessState.Pid(), nil
}

// connectAndPass connects to the dispatcher, waits until the dispatcher
// has accepted the connection (its HTTP/2 settings arrive; peeked, not
// read, so that the next holder still sees them), hands the connection to
// fd 3 and exits.
func connectAndPass() int {
	c, err := net.Dial("unix", strings.TrimPrefix(os.Getenv("YGG_SOCKET_ADDR"), "unix:"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		return 1
	}
	f, err := c.(*net.UnixConn).File() // a blocking duplicate
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, _, err := unix.Recvfrom(int(f.Fd()), make([]byte, 1), unix.MSG_PEEK); err != nil {
		fmt.Fprintln(os.Stderr, "wait for the dispatcher:", err)
		return 1
	}
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, "pass the connection:", err)
		return 1
	}
	return 0
}

// forkAs sets ns_last_pid to pid-1 (CRIU's trick: the next process of the
// namespace gets pid) and has fork-worker start a child; it returns the
// child's pid.
func forkAs(forker, pid int, deadline time.Time) (int, error) {
	before := childrenOf(forker)
	if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
		return 0, fmt.Errorf("set ns_last_pid: %w", err)
	}
	if err := syscall.Kill(forker, syscall.SIGUSR1); err != nil {
		return 0, fmt.Errorf("signal fork-worker: %w", err)
	}
	for time.Now().Before(deadline) {
		for _, c := range childrenOf(forker) {
			if !slices.Contains(before, c) {
				return c, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, errors.New("fork-worker started no child")
}

// attack calls Register and Send through the held connection, whose
// connector had pid pid, and reports whether both were refused because
// that process has exited.
func attack(held net.Conn, pid int) bool {
	cc, err := clientOver(held)
	if err != nil {
		fmt.Println("attack:", err)
		return false
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := pb.NewDispatcherClient(cc)
	refused := func(what string, err error) bool {
		fmt.Printf("%s: %s\n", what, errOrAdmitted(err))
		return status.Code(err) == codes.PermissionDenied && strings.Contains(err.Error(), fmt.Sprintf("pid %d, which opened this connection, has exited", pid))
	}
	resp, err := client.Register(ctx, &pb.RegistrationRequest{Handler: "hijacked", Pid: int64(pid)})
	if err == nil && !resp.GetRegistered() {
		err = errors.New("registered=false")
	}
	r1 := refused("register", err)
	_, err = client.Send(ctx, &pb.Data{MessageId: "hijack-1", Directive: "fork", Content: []byte(`"hijacked"`)})
	r2 := refused("send", err)
	return r1 && r2
}

// parentWorker serves "parent" and starts register-child, which registers
// "child"; on SIGUSR1 it closes the child's stdin, and the child exits,
// while the parent keeps running.
func parentWorker() int {
	child := exec.Command("/proc/self/exe")
	child.Args = []string{"register-child"} // testscript's Main picks the program by argv[0]
	child.Env = append(os.Environ(), "YGG_HANDLER=child")
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	stdin, err := child.StdinPipe()
	if err == nil {
		err = child.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		<-usr1
		stdin.Close()
		child.Wait()
		fmt.Fprintln(os.Stderr, "register-child has exited")
	}()
	return runWorker(&worker.Worker{Handler: "parent", Receive: func(context.Context, *worker.Worker, worker.Message) error { return nil }})
}

// claimWorker serves "claim" and, on every SIGUSR1, starts register-child
// to register "echo" for it, as a descendant of this supervised worker.
func claimWorker() int {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			child := exec.Command("/proc/self/exe")
			child.Args = []string{"register-child"}
			child.Env = append(os.Environ(), "YGG_HANDLER=echo")
			child.Stdout, child.Stderr = os.Stderr, os.Stderr
			if err := child.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "register-child:", err)
			}
		}
	}()
	return runWorker(&worker.Worker{Handler: "claim", Receive: func(context.Context, *worker.Worker, worker.Message) error { return nil }})
}

// registerChild registers $YGG_HANDLER at $YGG_SOCKET_ADDR, prints what
// the dispatcher said, and then holds the registration until its stdin
// ends.
func registerChild() int {
	cc, err := grpc.NewClient(os.Getenv("YGG_SOCKET_ADDR"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := os.Getenv("YGG_HANDLER")
	resp, err := pb.NewDispatcherClient(cc).Register(ctx, &pb.RegistrationRequest{Handler: h, Pid: int64(os.Getpid())})
	if err != nil || !resp.GetRegistered() {
		fmt.Printf("register-child: register %s: refused (%v)\n", h, err)
		return 1
	}
	fmt.Printf("register-child: registered %s\n", h)
	io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	return 0
}
