package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/fakes/logbuf"
	"github.com/ygglab/yggdrasil/yggdrasil/worker"
	"github.com/ygglab/yggdrasil/yggdrasil/worker/workertest"
)

func deadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestFailedReceiveIsNacked: a Receive that fails gets its message a
// worker-failed negative acknowledgement, after whatever it answered
// before failing, and the worker serves the next message.
func TestFailedReceiveIsNacked(t *testing.T) {
	tests := []struct {
		name    string
		sync    bool
		fail    func(ctx context.Context, w *worker.Worker, m worker.Message) error
		answers int    // before the nack
		message string // the nack's
		log     string
	}{
		{name: "error", fail: func(context.Context, *worker.Worker, worker.Message) error {
			return errors.New("no such playbook")
		}, message: "no such playbook", log: `level=ERROR msg="receive failed" handler=t message_id=m1 error="no such playbook"`},
		{name: "panic", fail: func(context.Context, *worker.Worker, worker.Message) error {
			var m map[string]int
			m["x"]++
			return nil
		}, message: "panic: assignment to entry in nil map", log: `level=ERROR msg="receive panicked" handler=t message_id=m1 panic="assignment to entry in nil map" stack=`},
		{name: "panic_sync", sync: true, fail: func(context.Context, *worker.Worker, worker.Message) error {
			panic("boom")
		}, message: "panic: boom", log: `msg="receive panicked"`},
		{name: "error_after_progress", fail: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			if err := w.Reply(ctx, m, []byte(`{"progress":50}`), nil); err != nil {
				return err
			}
			return errors.New("half done")
		}, answers: 1, message: "half done", log: `error="half done"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log logbuf.Buffer
			w := &worker.Worker{Handler: "t", Sync: tt.sync, Log: slog.New(slog.NewTextHandler(&log, nil)),
				Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
					if string(m.Content) == `"fail"` {
						return tt.fail(ctx, w, m)
					}
					return w.Reply(ctx, m, m.Content, nil)
				}}
			d := workertest.New(t, w)
			ctx := deadline(t)
			if _, err := d.Dispatch(ctx, worker.Message{ID: "m1", Content: []byte(`"fail"`)}); err != nil {
				t.Fatal(err)
			}
			got, err := d.Await(ctx, "m1", tt.answers+1)
			if err != nil {
				t.Fatal(err)
			}
			nack := got[len(got)-1]
			var content map[string]string
			if err := json.Unmarshal(nack.Content, &content); err != nil {
				t.Fatalf("nack content %s: %v", nack.Content, err)
			}
			want := map[string]string{"error": "worker-failed", "message": tt.message}
			if diff := cmp.Diff(want, content); diff != "" {
				t.Errorf("nack content (-want +got):\n%s", diff)
			}
			if nack.Metadata["yggdrasil-error"] != "worker-failed" || nack.ResponseTo != "m1" || nack.Directive != "t" || nack.ID == "" {
				t.Errorf("nack = %+v, want metadata yggdrasil-error=worker-failed, response_to m1, directive t", nack)
			}
			if len(got) != tt.answers+1 {
				t.Errorf("got %d answers to m1, want %d", len(got), tt.answers+1)
			}
			if !strings.Contains(log.String(), tt.log) {
				t.Errorf("log:\n%s\nwant a line with %s", log.String(), tt.log)
			}

			// The same worker serves the next message.
			if _, err := d.Dispatch(ctx, worker.Message{ID: "m2", Content: []byte(`"ok"`)}); err != nil {
				t.Fatal(err)
			}
			next, err := d.Await(ctx, "m2", 1)
			if err != nil {
				t.Fatal(err)
			}
			if string(next[0].Content) != `"ok"` || next[0].Metadata["yggdrasil-error"] != "" {
				t.Errorf("answer to m2 = %+v, want the echo", next[0])
			}
		})
	}
}

// TestInvalidAnswerIsRefused: an answer that is not JSON is refused to the
// worker's Reply, as yggd refuses it; returned from Receive, the error
// becomes the worker-failed nack.
func TestInvalidAnswerIsRefused(t *testing.T) {
	replyErr := make(chan error, 1)
	d := workertest.New(t, &worker.Worker{Handler: "t", Log: slog.New(slog.DiscardHandler),
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			err := w.Reply(ctx, m, []byte(`not json`), nil)
			replyErr <- err
			return err
		}})
	ctx := deadline(t)
	if _, err := d.Dispatch(ctx, worker.Message{ID: "m1", Content: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	got, err := d.Await(ctx, "m1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-replyErr; err == nil || !strings.Contains(err.Error(), "invalid answer: content is not JSON") {
		t.Errorf("Reply: %v, want the refusal", err)
	}
	if len(got) != 1 || got[0].Metadata["yggdrasil-error"] != "worker-failed" {
		t.Errorf("answers = %+v, want only the worker-failed nack", got)
	}
}

func TestWorkertestRegistration(t *testing.T) {
	d := workertest.New(t, &worker.Worker{Handler: "t", Detached: true, Features: map[string]string{"v": "1"},
		Receive: func(context.Context, *worker.Worker, worker.Message) error { return nil }})
	want := workertest.Registration{Handler: "t", Detached: true, Features: map[string]string{"v": "1"}}
	if diff := cmp.Diff(want, d.Registration()); diff != "" {
		t.Errorf("registration (-want +got):\n%s", diff)
	}
}

func TestWorkertestStartFails(t *testing.T) {
	_, err := workertest.Start(t.Context(), &worker.Worker{Handler: "t"})
	if err == nil || !strings.Contains(err.Error(), "Handler and Receive are required") {
		t.Errorf("Start of a worker without Receive: %v, want Run's error", err)
	}
}
