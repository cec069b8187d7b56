package yggsimcmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/ygglab/yggdrasil/sim/ceiling"
	"github.com/ygglab/yggdrasil/yggdrasil/worker"
)

func init() {
	hidden["ceiling-relay"] = runCeilingRelay
	hidden["ceiling-pipeline"] = runCeilingPipeline
	hidden["bench-worker"] = runBenchWorker
}

const ceilingRelayUsage = `
Usage: yggsim ceiling-relay --broker URL --client-id ID [--handlers a,b]

Reference ceiling a of "make bench" (hidden): a host that republishes each
data/in payload to data/out unchanged, answers ping, and publishes a
retained online status listing --handlers. It measures the bare MQTT round
trip through the broker. Runs until SIGINT or SIGTERM.
`

func runCeilingRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ceiling-relay", ceilingRelayUsage, stdout, stderr)
	var r ceiling.Relay
	fs.StringVar(&r.Broker, "broker", "tcp://"+defaultMQTT, "broker `URL`")
	fs.StringVar(&r.ClientID, "client-id", "", "client `id` (the host)")
	fs.StringVar(&r.Prefix, "prefix", "yggdrasil", "topic `prefix`")
	handlers := fs.String("handlers", "echo", "comma-separated `handlers` to list in the status")
	if _, err := parse(fs, args, stdout); err != nil {
		return err
	}
	if r.ClientID == "" {
		return fmt.Errorf("%w: --client-id is required", ErrUsage)
	}
	r.Handlers = strings.Split(*handlers, ",")
	r.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return r.Run(ctx)
}

const ceilingPipelineUsage = `
Usage: yggsim ceiling-pipeline --broker URL --client-id ID [--inline] [--journal DIR] WORKER...

Reference ceiling b of "make bench" (hidden): the ideal yggd data path
from the same libraries. It serves the Dispatcher gRPC service, starts each
WORKER executable with YGG_SOCKET_ADDR as yggd does, and for each data/in
message decodes the JSON, makes one unary Worker.Send call and returns; each
answer (Dispatcher.Send) is encoded to JSON and published to data/out. It
answers ping and publishes a retained online status listing the handlers
that registered. Runs until SIGINT or SIGTERM, then stops its workers.

--inline handles each message on the MQTT client's own goroutine, in
order, instead of on a goroutine per message: its best configuration with
one message in flight. --journal DIR makes it the durable ceiling bj: each
message is appended to DIR/journal and made durable before the worker's
Send, and each answer before it is published (two synced writes per
message, the price of yggd's delivery guarantee). With --inline each
record is written through O_DIRECT|O_DSYNC; without, the records of
concurrent messages share one fdatasync (group commit).
`

func runCeilingPipeline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ceiling-pipeline", ceilingPipelineUsage, stdout, stderr)
	var p ceiling.Pipeline
	fs.StringVar(&p.Broker, "broker", "tcp://"+defaultMQTT, "broker `URL`")
	fs.StringVar(&p.ClientID, "client-id", "", "client `id` (the host)")
	fs.StringVar(&p.Prefix, "prefix", "yggdrasil", "topic `prefix`")
	fs.BoolVar(&p.Inline, "inline", false, "handle each message in order on the MQTT client's goroutine")
	fs.StringVar(&p.Journal, "journal", "", "keep a durable journal in this `directory` (ceiling bj)")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if p.ClientID == "" || len(pos) == 0 {
		return fmt.Errorf("%w: --client-id and at least one WORKER are required", ErrUsage)
	}
	p.Workers = pos
	p.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return p.Run(ctx)
}

const benchWorkerUsage = `
Usage: yggsim bench-worker HANDLER

A worker for "make bench" (hidden): it registers HANDLER with the
dispatcher at $YGG_SOCKET_ADDR and answers every message with its content
and metadata, like echo-worker's "echo". yggd passes workers no arguments,
so install it as a script named <handler>-worker:

  #!/bin/sh
  exec /path/to/yggsim bench-worker echo3
`

func runBenchWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench-worker", benchWorkerUsage, stdout, stderr)
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: bench-worker takes one HANDLER", ErrUsage)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w := &worker.Worker{
		Handler: pos[0],
		Log:     log,
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			return w.Reply(ctx, m, m.Content, m.Metadata)
		},
	}
	if os.Getenv("YGG_SOCKET_ADDR") == "" {
		return fmt.Errorf("bench-worker: YGG_SOCKET_ADDR is not set (workers are started by yggd)")
	}
	return w.Run(ctx)
}
