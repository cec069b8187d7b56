package yggdrasil

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/journal"
)

// TestRouterTakesUpJournal: after a restart, a message that was waiting is
// delivered, one that was being handed is answered as interrupted (never
// run again, even when the broker sends it again), a done one is dropped
// when the broker sends it again, and an
// answer not yet acknowledged by the broker is published.
func TestRouterTakesUpJournal(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(dir, journal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"waiting", "handing", "done"} {
		if _, err := j.AddInbound(ctx, id, dataIn(id, "echo", `1`)); err != nil {
			t.Fatal(err)
		}
	}
	j.Handing(ctx, "handing")
	j.Handing(ctx, "done")
	j.Done("done")
	if _, _, err := j.AppendOutbound(ctx, Topic(DefaultTopicPrefix, testID, KindData, DirOut), []byte(`{"answer":"kept"}`)); err != nil {
		t.Fatal(err)
	}
	j.Close() // yggd stops (or dies: the records are in the file either way)

	j, err = journal.Open(dir, journal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	conn := &fakeConn{}
	// The worker registers once the router runs, as yggd's do: until
	// then one is expected, so the waiting message waits for it.
	r, tr := newTestRouter(t, RouterConfig{Journal: j, Starting: func() bool { return true }})
	r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: conn})
	await(t, "the waiting message to be delivered", func() bool { return conn.count() == 1 })
	if got := conn.sent[0].MessageID; got != "waiting" {
		t.Errorf("delivered %q, want waiting", got)
	}
	out := tr.awaitPublished(t, Topic(DefaultTopicPrefix, testID, KindData, DirOut), 2)
	var sawKept, sawInterrupted bool
	for _, p := range out {
		if string(p.payload) == `{"answer":"kept"}` {
			sawKept = true
			continue
		}
		d, c := nackOf(t, p)
		if d.ResponseTo == "handing" && c["error"] == string(CodeInterrupted) {
			sawInterrupted = true
		}
	}
	if !sawKept || !sawInterrupted {
		t.Errorf("published %d: kept answer %v, interrupted nack for the handing message %v", len(out), sawKept, sawInterrupted)
	}
	if got := r.Stats().RejectedByCode; got[CodeInterrupted] != 1 || len(got) != 1 {
		t.Errorf("Stats().RejectedByCode = %v, want interrupted: 1", got)
	}
	r.HandleData(dataIn("done", "echo", `1`))
	if r.Stats().Duplicates != 1 || conn.count() != 1 {
		t.Errorf("a done message sent again: duplicates %d, delivered %d; want 1 and 1", r.Stats().Duplicates, conn.count())
	}
	// The broker sends the interrupted message again (yggd died before
	// its PUBACK): it may have run, so it is not run again.
	r.HandleData(dataIn("handing", "echo", `1`))
	if r.Stats().Duplicates != 2 || conn.count() != 1 {
		t.Errorf("an interrupted message sent again: duplicates %d, delivered %d; want 2 and 1", r.Stats().Duplicates, conn.count())
	}
}

// TestHungWorkerDelaysOnlyItsOwn: messages wait in their directive's lane,
// not in the broker's window: a worker that never takes its messages does
// not delay another worker's, whatever their number.
func TestHungWorkerDelaysOnlyItsOwn(t *testing.T) {
	r, _ := newTestRouter(t, RouterConfig{DispatchTimeout: time.Hour, StopGrace: 10 * time.Millisecond})
	hung, echo := &fakeConn{block: true}, &fakeConn{}
	r.Registry().Add(&Worker{Handler: "hung", Pid: 1, Conn: hung})
	r.Registry().Add(&Worker{Handler: "echo", Pid: 2, Conn: echo})
	for i := range 3 * laneWidth {
		if !r.HandleData(dataIn(fmt.Sprint("hung-", i), "hung", `1`)) {
			t.Fatal("HandleData = false for a message to the hung worker, want it journalled and acknowledged")
		}
	}
	r.HandleData(dataIn("echo-1", "echo", `1`))
	await(t, "the echo worker to get its message", func() bool { return echo.count() == 1 })
	r.lanesMu.Lock()
	l := r.lanes["hung"]
	running, waiting := l.running, len(l.waiting)
	r.lanesMu.Unlock()
	if running != laneWidth || waiting != 2*laneWidth {
		t.Errorf("hung lane: %d running, %d waiting; want %d and %d", running, waiting, laneWidth, 2*laneWidth)
	}
}

// answerThenFail is a worker connection that answers inside its Send, then
// fails the Send, as a worker whose receipt missed the deadline would.
type answerThenFail struct{ r *Router }

func (c answerThenFail) Send(ctx context.Context, d *Data) error {
	c.r.HandleAnswer(ctx, &Data{MessageID: "answer-" + d.MessageID, ResponseTo: d.MessageID, Directive: d.Directive, Content: d.Content})
	return errors.New("receipt lost")
}

func (answerThenFail) Close() error { return nil }

// TestAnswerThenFailedReceipt: a message whose worker answered is not
// refused on top of its answer when the receipt then fails.
func TestAnswerThenFailedReceipt(t *testing.T) {
	r, tr := newTestRouter(t, RouterConfig{})
	r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: answerThenFail{r}})
	r.HandleData(dataIn("m1", "echo", `1`))
	await(t, "the delivery", func() bool { return r.Stats().Delivered == 1 })
	out := tr.awaitPublished(t, Topic(DefaultTopicPrefix, testID, KindData, DirOut), 1)
	if d, _ := nackOf(t, out[0]); d.Metadata[MetadataError] != "" || r.Stats().Rejected != 0 {
		t.Errorf("published %s, rejected %d; want only the answer", out[0].payload, r.Stats().Rejected)
	}
}
