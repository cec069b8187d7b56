package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ygglab/yggdrasil/yggdrasil/worker"
	"github.com/ygglab/yggdrasil/yggdrasil/worker/workertest"
)

// TestCancel: a cancel ends the message's Receive context with the cause
// ErrCancelled, and what Receive returns decides the answer: an error is
// answered with a "cancelled" nack, nil with nothing more than what it
// sent. Other messages in flight go on.
func TestCancel(t *testing.T) {
	tests := []struct {
		name  string
		ret   func(ctx context.Context, w *worker.Worker, m worker.Message) error
		codes []string // yggdrasil-error of each answer to the cancelled message ("" for a plain answer)
	}{
		{name: "error", ret: func(ctx context.Context, _ *worker.Worker, _ worker.Message) error {
			return ctx.Err()
		}, codes: []string{"cancelled"}},
		{name: "own_answer", ret: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			return w.Reply(context.WithoutCancel(ctx), m, []byte(`{"stopped_at":3}`), nil)
		}, codes: []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			causes := make(chan error, 2)
			d := workertest.New(t, &worker.Worker{Handler: "t", Log: slog.New(slog.DiscardHandler),
				Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
					<-ctx.Done()
					causes <- context.Cause(ctx)
					return tt.ret(ctx, w, m)
				}})
			ctx := deadline(t)
			for _, id := range []string{"slow", "other"} {
				if _, err := d.Dispatch(ctx, worker.Message{ID: id, Content: []byte(`1`)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Cancel(ctx, "slow"); err != nil {
				t.Fatalf("Cancel: %v", err)
			}
			// A message is cancelled once: a second cancel, even while
			// Receive is still answering, finds it gone.
			if err := d.Cancel(ctx, "slow"); status.Code(errors.Unwrap(err)) != codes.NotFound {
				t.Errorf("second Cancel = %v, want NotFound", err)
			}
			if cause := <-causes; !errors.Is(cause, worker.ErrCancelled) {
				t.Errorf("cause of the Receive context = %v, want ErrCancelled", cause)
			}
			got, err := d.Await(ctx, "slow", len(tt.codes))
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range got {
				if a.Metadata["yggdrasil-error"] != tt.codes[i] {
					t.Errorf("answer %d = %+v, want yggdrasil-error %q", i, a, tt.codes[i])
				}
			}
			if tt.codes[0] == "cancelled" {
				var c map[string]string
				if err := json.Unmarshal(got[0].Content, &c); err != nil || c["error"] != "cancelled" {
					t.Errorf("nack content %s, want error cancelled", got[0].Content)
				}
			}
			// The other message was not cancelled: it is still held, so
			// a cancel for it is accepted.
			if as := d.Answers(); len(as) != len(tt.codes) {
				t.Errorf("answers = %+v, want only those to slow", as)
			}
			if err := d.Cancel(ctx, "other"); err != nil {
				t.Errorf("Cancel(other): %v", err)
			}
		})
	}
}

// TestCancelUnknown: a message the worker does not hold, never received or
// finished, is answered NotFound.
func TestCancelUnknown(t *testing.T) {
	d := workertest.New(t, &worker.Worker{Handler: "t", Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
		return w.Reply(ctx, m, m.Content, nil)
	}})
	ctx := deadline(t)
	if _, err := d.Dispatch(ctx, worker.Message{ID: "done", Content: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Await(ctx, "done", 1); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"never", "done"} {
		// "done" may still be between its answer and Receive's return:
		// poll until it is gone.
		for {
			err := d.Cancel(ctx, id)
			if status.Code(errors.Unwrap(err)) == codes.NotFound {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("Cancel(%s) = %v, want NotFound", id, err)
			}
		}
	}
}
