package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ygglab/yggdrasil/cmd/yggd/yggdcmd"
	pb "github.com/ygglab/yggdrasil/proto"
	"github.com/ygglab/yggdrasil/yggdrasil/worker"
)

// Test-only programs, run like the real ones from scripts.
var testPrograms = map[string]func() int{
	"stall-worker":    stallWorker,
	"eager-worker":    eagerWorker,
	"stray":           stray,
	"gate-worker":     func() int { return gateWorker("gate", false, nil) },
	"hold-worker":     func() int { return gateWorker("hold", true, nil) },
	"bulk-worker":     func() int { return gateWorker("bulk", false, bulkAnswer) },
	"two-step-worker": twoStepWorker,
	"record-worker":   recordWorker,
	"yggd-wedge":      yggdWedge,
}

// yggdWedge is yggd whose router wedges at the first SIGUSR1: it holds
// its lock, as a deadlock would, until yggd stops. The watchdog pings must
// stop.
func yggdWedge() int {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	wedge := make(chan struct{})
	go func() { <-usr1; close(wedge) }() // ends with the process
	yggdcmd.WedgeRouter = wedge
	return yggdcmd.Main()
}

// twoStepWorker registers the echo handler "first", then, a second later,
// "second": a worker that registers several handlers one after the other.
func twoStepWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	echo := func(ctx context.Context, w *worker.Worker, m worker.Message) error {
		return w.Reply(ctx, m, m.Content, m.Metadata)
	}
	var wg sync.WaitGroup
	wg.Go(func() { (&worker.Worker{Handler: "first", Receive: echo}).Run(ctx) })
	select {
	case <-time.After(time.Second):
		wg.Go(func() { (&worker.Worker{Handler: "second", Receive: echo}).Run(ctx) })
	case <-ctx.Done():
	}
	wg.Wait()
	return 0
}

// stallWorker registers "stall" and never takes a message: its Send blocks
// until the dispatcher gives up.
func stallWorker() int {
	return runWorker(&worker.Worker{Handler: "stall", Sync: true,
		Receive: func(ctx context.Context, _ *worker.Worker, _ worker.Message) error { <-ctx.Done(); return nil }})
}

// eagerWorker registers "eager" and answers every message inside its
// Worker.Send, before returning the receipt: the order that wedged 0.1.5.
func eagerWorker() int {
	return runWorker(&worker.Worker{Handler: "eager", Sync: true,
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			if err := w.Reply(ctx, m, m.Content, m.Metadata); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			return nil
		}})
}

// gateWorker serves handler and holds every message until it gets
// SIGUSR1, then answers them all in the order they came (and every later
// one at once). With sync it holds the receipt too, so yggd is still
// handing the messages. Each time it holds n messages it renames the
// marker file held-<n> beside its executable, so that a script can
// "waitfile $YGG_WORKER_DIR/held-50"; likewise answered-<n> once it has
// answered n. It appends the id of each message it receives to the file
// "received" there, and of each it answers to "answered". Its answers
// echo the content, or are what answer returns when it is not nil.
func gateWorker(handler string, holdReceipt bool, answer func() []byte) int {
	release := make(chan os.Signal, 1)
	signal.Notify(release, syscall.SIGUSR1)
	open := make(chan struct{})
	go func() { <-release; close(open) }()
	dir, ok := workerDir()
	if !ok {
		return 2
	}
	var mu sync.Mutex
	held, answered := 0, 0
	last := make(chan struct{}) // closed when the previous answer has left
	close(last)
	return runWorker(&worker.Worker{Handler: handler, Sync: holdReceipt,
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			appendLine(filepath.Join(dir, "received"), m.ID)
			mu.Lock()
			held++
			os.Remove(filepath.Join(dir, fmt.Sprint("held-", held-1)))
			os.WriteFile(filepath.Join(dir, fmt.Sprint("held-", held)), nil, 0o644)
			prev, mine := last, make(chan struct{})
			last = mine
			mu.Unlock()
			defer close(mine)
			for _, ch := range []chan struct{}{open, prev} {
				select {
				case <-ch:
				case <-ctx.Done():
					return nil
				}
			}
			content := m.Content
			if answer != nil {
				content = answer()
			}
			if err := w.Reply(ctx, m, content, m.Metadata); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return nil
			}
			// The order answers were produced in, for mqtt-answers -order.
			appendLine(filepath.Join(dir, "answered"), m.ID)
			mu.Lock()
			answered++
			os.Remove(filepath.Join(dir, fmt.Sprint("answered-", answered-1)))
			os.WriteFile(filepath.Join(dir, fmt.Sprint("answered-", answered)), nil, 0o644)
			mu.Unlock()
			return nil
		}})
}

// bulkAnswer is the content of bulk-worker's answers: a JSON string just
// under yggd's default 32 MiB limit.
func bulkAnswer() []byte {
	b := bytes.Repeat([]byte("a"), 32<<20-1024)
	b[0], b[len(b)-1] = '"', '"'
	return b
}

// workerDir returns the worker directory the program was started from.
func workerDir() (string, bool) {
	// testscript rewrites os.Args[0]; the kernel keeps the path yggd ran.
	cmdline, _ := os.ReadFile("/proc/self/cmdline")
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	dir := filepath.Dir(argv0) // hard link: <dir>/<program>
	if strings.HasSuffix(dir, "worker") {
		dir = filepath.Dir(dir) // wrapper: <dir>/<name>/<program>
	}
	if !filepath.IsAbs(dir) {
		fmt.Fprintf(os.Stderr, "%s: not started by yggd from its worker directory\n", argv0)
		return "", false
	}
	return dir, true
}

// recordWorker serves "rec": it appends the id of each message to the file
// "received" in its worker directory, then answers inside Worker.Send, so
// that its receipt (and the message's "done") comes only once the answer is
// in yggd's journal.
func recordWorker() int {
	dir, ok := workerDir()
	if !ok {
		return 2
	}
	return runWorker(&worker.Worker{Handler: "rec", Sync: true,
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			appendLine(filepath.Join(dir, "received"), m.ID)
			if err := w.Reply(ctx, m, m.Content, m.Metadata); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			return nil
		}})
}

// appendLine appends line to the file at path.
func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

// dispatchersHere returns the dispatcher sockets listed in /proc/net/unix
// (world-readable: any local user can list them) under this script's
// runtime directory, so as not to disturb the other scripts' yggds.
func dispatchersHere() ([]string, error) {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return nil, err
	}
	dir := os.Getenv("RUNTIME_DIRECTORY") + "/"
	var addrs []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && strings.HasPrefix(f[7], dir) && strings.HasSuffix(f[7], "/dispatcher.sock") && !slices.Contains(addrs, f[7]) {
			addrs = append(addrs, f[7])
		}
	}
	return addrs, nil
}

func runWorker(w *worker.Worker) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// stray is a local process that yggd did not start: it finds the dispatcher
// socket the way any local user can (/proc/net/unix) and tries to register
// and to send. It prints what each dispatcher answered and exits 0 only if
// every one refused both.
func stray() int {
	addrs, err := dispatchersHere()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if len(addrs) == 0 {
		fmt.Println("no dispatcher found")
		return 2
	}
	admitted := false
	for _, addr := range addrs {
		cc, err := grpc.NewClient("unix:"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		client := pb.NewDispatcherClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := client.Register(ctx, &pb.RegistrationRequest{Handler: "echo", Pid: 1})
		if err == nil && resp.GetRegistered() {
			admitted = true
			fmt.Println("register: admitted")
		} else {
			fmt.Printf("register: refused (%v)\n", err)
		}
		_, err = client.Send(ctx, &pb.Data{MessageId: "stray-1", Directive: "echo", Content: []byte(`"injected"`)})
		if err == nil {
			admitted = true
			fmt.Println("send: admitted")
		} else {
			fmt.Printf("send: refused (%v)\n", err)
		}
		cancel()
		cc.Close()
	}
	if admitted {
		return 1
	}
	return 0
}
