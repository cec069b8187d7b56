package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/agent"
	"github.com/ygglab/yggdrasil/yggdrasil/worker"
)

// TestMain runs the test binary as the example's worker when the agent
// starts it as one.
func TestMain(m *testing.M) {
	if os.Getenv("AGENT_EXAMPLE_WORKER") != "" {
		os.Exit(greetWorker())
	}
	os.Exit(m.Run())
}

// greetWorker serves the directive "greet": it answers each message with
// a greeting for the host it runs on.
func greetWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	w := &worker.Worker{Handler: "greet", Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
		var name string
		if err := json.Unmarshal(m.Content, &name); err != nil {
			return fmt.Errorf("reading the name: %w", err)
		}
		answer, err := json.Marshal("hello " + name + ", from " + os.Getenv("YGG_CLIENT_ID"))
		if err != nil {
			return err
		}
		return w.Reply(ctx, m, answer, nil)
	}}
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// A small daemon: an agent connected to a broker (here the simulated
// cloud's, in the same process), running one worker executable, answering
// a message from the cloud.
func Example() {
	// The cloud: yggsim's broker and message journal.
	cloud := &sim.Server{TLSAddr: sim.Off, APIAddr: sim.Off, Logger: slog.New(slog.DiscardHandler)}
	if err := cloud.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer cloud.Close()

	// The host: a worker directory with one worker (this program, run as
	// greetWorker), and the directories of the dispatcher's sockets and of
	// the journal.
	dir, _ := os.MkdirTemp("", "agent")
	defer os.RemoveAll(dir)
	workers := filepath.Join(dir, "workers")
	os.Mkdir(workers, 0o755)
	exe, _ := os.Executable()
	script := "#!/bin/sh\nAGENT_EXAMPLE_WORKER=1 exec " + strconv.Quote(exe) + "\n"
	os.WriteFile(filepath.Join(workers, "greet-worker"), []byte(script), 0o755)

	a, err := agent.New(agent.Config{
		ClientID:   "host-1",
		Brokers:    []string{cloud.BrokerURL()},
		WorkerDir:  workers,
		RuntimeDir: filepath.Join(dir, "run"),
		StateDir:   filepath.Join(dir, "state"),
		UserAgent:  "example-agent/1.0",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nil) }()
	defer func() {
		stop()
		<-done
	}()

	// The cloud waits for the host to be online, sends it a message, and
	// prints the answer.
	wait, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cloud.Await(wait, 0, func(sim.Message) bool {
		h, ok := cloud.Host("host-1")
		return ok && h.State == yggdrasil.StateOnline
	}); err != nil {
		fmt.Println("host not online:", err)
		return
	}
	id, err := cloud.SendData(wait, "host-1", "greet", nil, json.RawMessage(`"cloud"`))
	if err != nil {
		fmt.Println(err)
		return
	}
	answer, err := cloud.AwaitAnswer(wait, id)
	if err != nil {
		fmt.Println("no answer:", err)
		return
	}
	var d yggdrasil.Data
	json.Unmarshal(answer.Payload, &d)
	fmt.Println(string(d.Content))
	// Output: "hello cloud, from host-1"
}
