package yggdrasil

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/journal"
)

// fakeAsync is an AsyncPublisher whose connection drops once, at a given
// publish: that publish and those after it on the same connection are
// lost; WaitConnected reconnects.
type fakeAsync struct {
	mu      sync.Mutex
	n       int
	dropAt  int
	down    bool
	dropped bool
	acked   []string // payloads, in the order the broker acknowledged them
	got     chan struct{}
}

type fakePending struct {
	acked, lost chan struct{}
}

func (p *fakePending) Acked() <-chan struct{} { return p.acked }
func (p *fakePending) Lost() <-chan struct{}  { return p.lost }
func (p *fakePending) Err() error             { return nil }

func (f *fakeAsync) PublishAsync(topic string, payload []byte, retained bool) (Pending, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	p := &fakePending{acked: make(chan struct{}), lost: make(chan struct{})}
	if f.n == f.dropAt && !f.dropped {
		f.dropped, f.down = true, true
	}
	if f.down {
		close(p.lost)
		return p, nil
	}
	f.acked = append(f.acked, string(payload))
	close(p.acked)
	select {
	case f.got <- struct{}{}:
	default:
	}
	return p, nil
}

func (f *fakeAsync) Publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	panic("the outbox must use PublishAsync")
}

func (f *fakeAsync) WaitConnected(ctx context.Context) error {
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	return nil
}

func TestOutboxWindowResendsInOrderAfterLoss(t *testing.T) {
	for _, dropAt := range []int{1, 7, 300, 0} {
		t.Run(fmt.Sprint("drop_at_", dropAt), func(t *testing.T) {
			const n = 600 // more than the window
			f := &fakeAsync{dropAt: dropAt, got: make(chan struct{}, 1)}
			o := NewOutbox(testJournal(t, journal.Options{}), nil)
			for i := range n {
				if err := o.Put(context.Background(), "t", fmt.Sprint("m", i), "", journal.IfHanding, []byte(fmt.Sprint("m", i))); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { o.Run(ctx, f); close(done) }()
			defer func() { cancel(); <-done }()
			deadline := time.Now().Add(10 * time.Second)
			for {
				if c, _ := o.Len(); c == 0 {
					break
				}
				if time.Now().After(deadline) {
					c, _ := o.Len()
					t.Fatalf("%d messages still queued", c)
				}
				select {
				case <-f.got:
				case <-time.After(10 * time.Millisecond):
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			// Every message reached the broker, and the first time each did
			// was in the order they were put.
			seen := map[string]bool{}
			var first []string
			for _, p := range f.acked {
				if !seen[p] {
					seen[p] = true
					first = append(first, p)
				}
			}
			if len(first) != n {
				t.Fatalf("%d distinct messages acknowledged, want %d", len(first), n)
			}
			for i, p := range first {
				if p != fmt.Sprint("m", i) {
					t.Fatalf("message %d to reach the broker first is %s, want m%d", i, p, i)
				}
			}
			if dropAt > 0 && !f.dropped {
				t.Error("the connection never dropped: the test did not test a loss")
			}
		})
	}
}
