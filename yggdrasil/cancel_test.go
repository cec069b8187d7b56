package yggdrasil

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// cancelConn is a worker connection that takes every message and answers
// cancels with err, recording them.
type cancelConn struct {
	fakeConn
	err     error
	mu      sync.Mutex
	cancels [][3]string
}

func (c *cancelConn) Cancel(ctx context.Context, directive, messageID, cancelID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancels = append(c.cancels, [3]string{directive, messageID, cancelID})
	return c.err
}

func cancelCommand(id string, args map[string]string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "command", "message_id": id, "version": 1,
		"sent": "2024-01-01T00:00:00Z", "content": map[string]any{"command": "cancel", "arguments": args}})
	return b
}

func TestCancelPassedToWorker(t *testing.T) {
	tests := []struct {
		name     string
		conn     WorkerConn
		args     map[string]string
		wantCode ErrorCode // "" for no answer
	}{
		{"taken", &cancelConn{}, map[string]string{"directive": "echo", "messageID": "m1"}, ""},
		{"worker_0_1_x", &fakeConn{}, map[string]string{"directive": "echo", "messageID": "m1"}, CodeCancelUnsupported},
		{"worker_unimplemented", &cancelConn{err: ErrCancelUnsupported}, map[string]string{"directive": "echo", "messageID": "m1"}, CodeCancelUnsupported},
		{"worker_does_not_hold_it", &cancelConn{err: ErrCancelUnknown}, map[string]string{"directive": "echo", "messageID": "m1"}, CodeCancelUnknown},
		{"worker_gone", &cancelConn{err: fmt.Errorf("connection refused")}, map[string]string{"directive": "echo", "messageID": "m1"}, CodeWorkerUnavailable},
		{"unknown_directive", &cancelConn{}, map[string]string{"directive": "nobody", "messageID": "m1"}, CodeUnknownDirective},
		{"no_message_id", &cancelConn{}, map[string]string{"directive": "echo"}, CodeMalformed},
		{"no_directive", &cancelConn{}, map[string]string{"messageID": "m1"}, CodeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, tr := newTestRouter(t, RouterConfig{})
			r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: tt.conn})
			r.HandleControl(cancelCommand("c1", tt.args))
			// A marker answer: whatever the cancel published came before it.
			if err := r.HandleAnswer(context.Background(), &Data{MessageID: "marker", ResponseTo: "x", Directive: "echo", Content: []byte(`1`)}); err != nil {
				t.Fatal(err)
			}
			want := 1
			if tt.wantCode != "" {
				want = 2
			}
			out := tr.awaitPublished(t, "yggdrasil/host-1/data/out", want)
			if len(out) != want {
				t.Fatalf("published %d messages on data/out, want %d", len(out), want)
			}
			if tt.wantCode != "" {
				d, content := nackOf(t, out[0])
				if d.ResponseTo != "c1" || content["error"] != string(tt.wantCode) || content["message"] == "" {
					t.Errorf("answer = response_to %q content %v, want response_to c1 (the command) and code %s", d.ResponseTo, content, tt.wantCode)
				}
			}
			if cc, ok := tt.conn.(*cancelConn); ok && tt.name == "taken" {
				if len(cc.cancels) != 1 || cc.cancels[0] != [3]string{"echo", "c1", "m1"} {
					t.Errorf("worker got cancels %v, want [echo c1 m1]", cc.cancels)
				}
			}
		})
	}
}

func TestCancelWaitingMessage(t *testing.T) {
	r, tr := newTestRouter(t, RouterConfig{StopGrace: 10 * time.Millisecond})
	hung := &cancelConn{fakeConn: fakeConn{block: true}}
	r.Registry().Add(&Worker{Handler: "hung", Pid: 1, Conn: hung})
	// The lane is full: the last message waits in it.
	for i := range laneWidth + 1 {
		r.HandleData(dataIn(fmt.Sprintf("m%d", i), "hung", `1`))
	}
	last := fmt.Sprintf("m%d", laneWidth)
	r.HandleControl(cancelCommand("c1", map[string]string{"directive": "hung", "messageID": last}))
	out := tr.awaitPublished(t, "yggdrasil/host-1/data/out", 1)
	d, content := nackOf(t, out[0])
	if d.ResponseTo != last || content["error"] != string(CodeCancelled) {
		t.Errorf("answer = response_to %q content %v, want the waiting message cancelled", d.ResponseTo, content)
	}
	if len(hung.cancels) != 0 {
		t.Errorf("worker got cancels %v for a message it never had", hung.cancels)
	}
	// Finished, not forgotten: the broker's redelivery is a duplicate.
	await(t, "the journal to settle the cancelled message", func() bool { return !r.j.Waiting(last) })
	r.HandleData(dataIn(last, "hung", `1`))
	if r.Stats().Duplicates != 1 {
		t.Errorf("duplicates = %d, want the redelivery of the cancelled message dropped", r.Stats().Duplicates)
	}
}
