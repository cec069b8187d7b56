// Package echoworker is the echo worker: it registers the handler "echo" and
// answers every message with the content and metadata it received, with
// the directive "echo" and response_to set to the message's id. It also
// registers "echo-detached", a detached-content worker: yggd fetches the
// content from the URL the message holds, and the worker POSTs the bytes
// back to the URL in the message's "return_url" metadata (or, without one,
// answers on MQTT with the bytes as a JSON string). It is the worker of the
// demo and of the tests, and the example of the worker SDK. It is
// importable so that the e2e suite runs the real program.
package echoworker

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/worker"
)

const usage = `Usage: echo-worker [--help]

echo-worker is an yggdrasil worker: yggd starts it from its worker directory
with YGG_SOCKET_ADDR set. It registers two handlers:

  echo           answers every message with the content and metadata it
                 received (directive "echo", response_to = the message's id)
  echo-detached  a detached-content worker: yggd fetches the content from
                 the URL the message holds; the worker answers with the
                 fetched bytes by HTTP POST to the URL in the metadata key
                 "return_url" (the metadata goes along as headers), or, when
                 there is none, on MQTT with the bytes as a JSON string

Install it by copying it into yggd's worker directory
(pkg-config --variable workerexecdir yggdrasil).

Environment:
  YGG_SOCKET_ADDR  the dispatcher's address (required)
  YGG_LOG_LEVEL    error, warn, info, debug or trace (default info)
`

// Main runs the echo worker with os.Args and returns the exit code.
func Main() int {
	fs := flag.NewFlagSet("echo-worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			fmt.Print(usage)
			return 0
		}
		fmt.Fprintf(os.Stderr, "echo-worker: %v\n%s", err, usage)
		return 2
	}
	log := worker.Logger()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, log); err != nil {
		log.Error("echo-worker stopped", "error", err)
		return 1
	}
	return 0
}

// Run serves both handlers until ctx ends, or until one of them fails.
func Run(ctx context.Context, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	for _, w := range []*worker.Worker{Echo(log), Detached(log)} {
		go func() {
			err := w.Run(ctx)
			cancel()
			errs <- err
		}()
	}
	return errors.Join(<-errs, <-errs)
}

// Echo returns the worker of the handler "echo".
func Echo(log *slog.Logger) *worker.Worker {
	return &worker.Worker{
		Handler: "echo",
		Log:     log,
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			log.Debug("echo", "message_id", m.ID, "bytes", len(m.Content))
			return w.Reply(ctx, m, m.Content, m.Metadata)
		},
	}
}

// Detached returns the worker of the handler "echo-detached".
func Detached(log *slog.Logger) *worker.Worker {
	return &worker.Worker{
		Handler:  "echo-detached",
		Detached: true,
		Recycle:  true, // the content is sent on, and not kept
		Log:      log,
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			log.Debug("echo detached", "message_id", m.ID, "bytes", len(m.Content))
			answer := worker.Message{ID: yggdrasil.NewMessageID(), ResponseTo: m.ID, Directive: m.Directive,
				Metadata: m.Metadata, Content: m.Content}
			if url := m.Metadata["return_url"]; url != "" {
				answer.Directive = url
			} else {
				answer.Content, _ = json.Marshal(string(m.Content))
			}
			return w.SendData(ctx, answer)
		},
	}
}
