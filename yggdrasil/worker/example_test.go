package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/worker"
	"github.com/ygglab/yggdrasil/yggdrasil/worker/workertest"
)

// A worker's main: serve until yggd sends SIGTERM. The worker runs here
// against workertest's dispatcher instead of yggd's.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	w := &worker.Worker{
		Handler: "hello", // the directive it serves
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			// m.Content is the message's content as JSON text.
			return w.Reply(ctx, m, []byte(`"hello back"`), nil)
		},
	}
	// A real worker calls w.Run(ctx), which finds yggd by YGG_SOCKET_ADDR.
	d, err := workertest.Start(ctx, w)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	id, err := d.Dispatch(ctx, worker.Message{Content: []byte(`"hello"`)})
	if err != nil {
		log.Fatal(err)
	}
	answers, err := d.Await(ctx, id, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s\n", answers[0].Directive, answers[0].Content)
	// Output: hello "hello back"
}

// Several answers to one message: progress, then the result.
func ExampleWorker_Reply_progress() {
	w := &worker.Worker{
		Handler: "job",
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			for _, p := range []string{`{"progress":50}`, `{"progress":100}`} {
				if err := w.Reply(ctx, m, []byte(p), nil); err != nil {
					return err
				}
			}
			return w.Reply(ctx, m, []byte(`{"result":"done"}`), map[string]string{"status": "ok"})
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := workertest.Start(ctx, w)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	id, _ := d.Dispatch(ctx, worker.Message{Content: []byte(`{}`)})
	answers, err := d.Await(ctx, id, 3)
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range answers {
		fmt.Printf("%s %v\n", a.Content, a.Metadata)
	}
	// Output:
	// {"progress":50} map[]
	// {"progress":100} map[]
	// {"result":"done"} map[status:ok]
}

// A Receive that fails: the cloud gets a negative acknowledgement
// worker-failed for the message, and the worker goes on serving.
func ExampleWorker_failure() {
	w := &worker.Worker{
		Handler: "strict",
		Log:     slog.New(slog.DiscardHandler), // by default, stderr: yggd's log
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			if string(m.Content) != `"ok"` {
				return errors.New("want \"ok\"")
			}
			return w.Reply(ctx, m, m.Content, nil)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := workertest.Start(ctx, w)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	for _, content := range []string{`"nope"`, `"ok"`} {
		id, _ := d.Dispatch(ctx, worker.Message{Content: []byte(content)})
		answers, err := d.Await(ctx, id, 1)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%v %s\n", answers[0].Metadata, answers[0].Content)
	}
	// Output:
	// map[yggdrasil-error:worker-failed] {"error":"worker-failed","message":"want \"ok\""}
	// map[] "ok"
}

// A long task that the cloud cancels (yggdrasil 0.4's cancel command):
// Receive sees its context end with the cause ErrCancelled, reports how
// far it got, and returns nil, so nothing more is sent. Returning the
// context's error instead would answer the message "cancelled".
func ExampleErrCancelled() {
	started := make(chan struct{})
	w := &worker.Worker{
		Handler: "long",
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			close(started)
			<-ctx.Done() // the work, stopped by the cancel
			if !errors.Is(context.Cause(ctx), worker.ErrCancelled) {
				return ctx.Err()
			}
			return w.Reply(context.WithoutCancel(ctx), m, []byte(`{"stopped":true,"done":"3 of 10"}`), nil)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := workertest.Start(ctx, w)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	id, _ := d.Dispatch(ctx, worker.Message{Content: []byte(`{"steps":10}`)})
	<-started
	if err := d.Cancel(ctx, id); err != nil {
		log.Fatal(err)
	}
	answers, err := d.Await(ctx, id, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", answers[0].Content)
	// Output: {"stopped":true,"done":"3 of 10"}
}

// A worker logs to stderr, which yggd logs, at the level yggd passes in
// YGG_LOG_LEVEL.
func ExampleLogger() {
	log := worker.Logger()
	w := &worker.Worker{
		Handler: "hello",
		Log:     log,
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			log.Debug("received", "message_id", m.ID, "bytes", len(m.Content))
			return w.Reply(ctx, m, m.Content, nil)
		},
	}
	_ = w // w.Run(ctx)
}
