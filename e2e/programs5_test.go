package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ygglab/yggdrasil/yggdrasil/worker"
)

// Test workers of the worker SDK's failure handling.
var testPrograms5 = map[string]func() int{
	"panic-worker":      panicWorker,
	"bad-answer-worker": badAnswerWorker,
	"slow-worker":       slowWorker,
}

// panicWorker serves "panicky": a message whose content is "panic" makes
// its Receive panic; any other is echoed. It appends a line to the file
// "starts" beside its executable each time it starts, so that a script
// can tell that it was not restarted.
func panicWorker() int {
	dir, ok := workerDir()
	if !ok {
		return 2
	}
	appendLine(filepath.Join(dir, "starts"), fmt.Sprint(os.Getpid()))
	return runWorker(&worker.Worker{Handler: "panicky",
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			if string(m.Content) == `"panic"` {
				var handlers map[string]int
				handlers["boom"]++ // a bug: assignment to entry in nil map
			}
			return w.Reply(ctx, m, m.Content, m.Metadata)
		}})
}

// badAnswerWorker serves "badanswer": it answers every message with
// content that is not JSON, prints the error its Reply gets, and reports
// no failure of its own.
func badAnswerWorker() int {
	return runWorker(&worker.Worker{Handler: "badanswer",
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			if err := w.Reply(ctx, m, []byte(`not JSON`), nil); err != nil {
				fmt.Fprintln(os.Stderr, "reply refused:", err)
			}
			return nil
		}})
}

// slowWorker serves "slow": it works on each message until the message is
// cancelled, then returns the context's error, which the SDK answers with
// a cancelled nack. It creates the file "taken-<message id>" beside its
// executable when it takes a message.
func slowWorker() int {
	dir, ok := workerDir()
	if !ok {
		return 2
	}
	return runWorker(&worker.Worker{Handler: "slow",
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			if err := os.WriteFile(filepath.Join(dir, "taken-"+m.ID), nil, 0o644); err != nil {
				return err
			}
			<-ctx.Done()
			return context.Cause(ctx)
		}})
}
