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
			first := firstArrivals(f.acked)
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

// heldAsync is an AsyncPublisher whose publishes wait for release.
type heldAsync struct {
	mu      sync.Mutex
	sent    []*fakePending
	payload []int // sizes, in the order sent
}

func (h *heldAsync) PublishAsync(topic string, payload []byte, retained bool) (Pending, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := &fakePending{acked: make(chan struct{}), lost: make(chan struct{})}
	h.sent = append(h.sent, p)
	h.payload = append(h.payload, len(payload))
	return p, nil
}

func (h *heldAsync) Publish(context.Context, string, []byte, bool) error {
	panic("the outbox must use PublishAsync")
}
func (h *heldAsync) WaitConnected(context.Context) error { return nil }

func (h *heldAsync) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sent)
}

func (h *heldAsync) release(i int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.sent[i].acked)
}

// TestOutboxWindowBytes: large answers go out a few at a time, however
// many are queued, so that yggd's memory follows what is on the wire; one
// larger than the whole window still goes.
func TestOutboxWindowBytes(t *testing.T) {
	h := &heldAsync{}
	o := NewOutbox(testJournal(t, journal.Options{}), nil)
	sizes := []int{OutboxWindowBytes + 1, OutboxWindowBytes / 2, OutboxWindowBytes / 2, OutboxWindowBytes / 2}
	for i, n := range sizes {
		if err := o.Put(context.Background(), "t", fmt.Sprint("m", i), "", journal.IfHanding, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx, h); close(done) }()
	defer func() { cancel(); <-done }()

	// The first is alone in flight, larger than the window as it is.
	await(t, "the first answer to be sent", func() bool { return h.count() >= 1 })
	if n := h.count(); n != 1 {
		t.Fatalf("%d answers in flight with one larger than the window, want 1", n)
	}
	// Once it is acknowledged, the next two fill the window.
	h.release(0)
	await(t, "the next answers to be sent", func() bool { return h.count() >= 3 })
	if n := h.count(); n != 3 {
		t.Fatalf("%d answers sent, want 3: two halves of the window fill it", n)
	}
	h.release(1)
	await(t, "the last answer to be sent", func() bool { return h.count() >= 4 })
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, n := range h.payload {
		if n != sizes[i] {
			t.Errorf("answer %d sent has %d bytes, want %d (in order)", i, n, sizes[i])
		}
	}
}

// TestOutboxPutWhileRunning: answers put while the outbox runs (most of
// them published by Put itself, the rest by the pump) all reach the
// broker, each producer's in the order it put them, also when the
// connection drops on the way.
func TestOutboxPutWhileRunning(t *testing.T) {
	for _, dropAt := range []int{0, 5, 150} {
		t.Run(fmt.Sprint("drop_at_", dropAt), func(t *testing.T) {
			const producers, each = 8, 60
			f := &fakeAsync{dropAt: dropAt, got: make(chan struct{}, 1)}
			o := NewOutbox(testJournal(t, journal.Options{}), nil)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { o.Run(ctx, f); close(done) }()
			defer func() { cancel(); <-done }()
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					for i := range each {
						m := fmt.Sprintf("p%d-%03d", p, i)
						if err := o.Put(context.Background(), "t", m, "", journal.IfHanding, []byte(m)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			await(t, "every answer to be acknowledged", func() bool { c, _ := o.Len(); return c == 0 })
			f.mu.Lock()
			defer f.mu.Unlock()
			seen := map[string]bool{}
			last := map[byte]string{}
			for _, m := range f.acked {
				if seen[m] {
					continue
				}
				seen[m] = true
				if m <= last[m[1]] {
					t.Fatalf("%s reached the broker after %s", m, last[m[1]])
				}
				last[m[1]] = m
			}
			if len(seen) != producers*each {
				t.Fatalf("%d distinct answers acknowledged, want %d", len(seen), producers*each)
			}
			if dropAt > 0 && !f.dropped {
				t.Error("the connection never dropped: the test did not test a loss")
			}
		})
	}
}

// healingAsync is an AsyncPublisher whose connection drops at one publish
// and is back at the next, as the transport's reconnect loop may have it
// back before the outbox notices the loss.
type healingAsync struct {
	mu     sync.Mutex
	n      int
	dropAt int
	acked  []string
}

func (h *healingAsync) PublishAsync(topic string, payload []byte, retained bool) (Pending, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	p := &fakePending{acked: make(chan struct{}), lost: make(chan struct{})}
	if h.n == h.dropAt {
		close(p.lost)
		return p, nil
	}
	h.acked = append(h.acked, string(payload))
	close(p.acked)
	return p, nil
}

func (h *healingAsync) Publish(context.Context, string, []byte, bool) error {
	panic("the outbox must use PublishAsync")
}
func (h *healingAsync) WaitConnected(context.Context) error { return nil }

// TestOutboxOrderAcrossQuickReconnect: an answer lost with a connection
// that is back at once reaches the broker before the answers after it.
func TestOutboxOrderAcrossQuickReconnect(t *testing.T) {
	for _, running := range []bool{false, true} {
		t.Run(fmt.Sprint("put_while_running_", running), func(t *testing.T) {
			const n = 40
			h := &healingAsync{dropAt: 3}
			o := NewOutbox(testJournal(t, journal.Options{}), nil)
			put := func(i int) {
				if err := o.Put(context.Background(), "t", fmt.Sprint("m", i), "", journal.IfHanding, []byte(fmt.Sprintf("m%02d", i))); err != nil {
					t.Fatal(err)
				}
			}
			if !running {
				for i := range n {
					put(i)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { o.Run(ctx, h); close(done) }()
			defer func() { cancel(); <-done }()
			if running {
				for i := range n {
					put(i)
				}
			}
			await(t, "every answer to be acknowledged", func() bool { c, _ := o.Len(); return c == 0 })
			h.mu.Lock()
			defer h.mu.Unlock()
			first := firstArrivals(h.acked)
			for i, m := range first {
				if m != fmt.Sprintf("m%02d", i) {
					t.Fatalf("answers reached the broker first in the order %v", first)
				}
			}
		})
	}
}

// firstArrivals returns the payloads the broker acknowledged, each at its
// first arrival only.
func firstArrivals(acked []string) []string {
	seen := map[string]bool{}
	var first []string
	for _, p := range acked {
		if !seen[p] {
			seen[p] = true
			first = append(first, p)
		}
	}
	return first
}
