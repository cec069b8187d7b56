package yggdrasil

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/journal"
)

// waitingTransport is a fakeTransport that says when the status loop's
// publish starts waiting for a connection.
type waitingTransport struct {
	*fakeTransport
	waiting chan struct{}
	once    sync.Once
}

func (w *waitingTransport) WaitConnected(ctx context.Context) error {
	w.once.Do(func() { close(w.waiting) })
	return w.fakeTransport.WaitConnected(ctx)
}

// TestRouterAlive checks that the status loop answers the watchdog's probe
// in every state, even while its publish waits for a connection, and that
// a lock held forever (RouterConfig.Wedge) or a stopped router fails the
// probe by its deadline. (Not in a synctest bubble: a goroutine blocked on
// a mutex does not let its fake time advance.)
func TestRouterAlive(t *testing.T) {
	const answerWithin, failAfter = 10 * time.Second, 100 * time.Millisecond
	tests := []struct {
		name    string
		before  func(t *testing.T, r *Router, tr *waitingTransport, wedge chan struct{}, stop func())
		wantErr bool
	}{
		{name: "idle"},
		{name: "waiting_to_publish_the_status", before: func(t *testing.T, r *Router, tr *waitingTransport, _ chan struct{}, _ func()) {
			tr.setDown(true)
			r.KickStatus()
			<-tr.waiting
		}},
		{name: "lock_held", wantErr: true, before: func(t *testing.T, r *Router, _ *waitingTransport, wedge chan struct{}, _ func()) {
			close(wedge)
			await(t, "the wedge to hold the router's lock", func() bool {
				if r.lanesMu.TryLock() {
					r.lanesMu.Unlock()
					return false
				}
				return true
			})
		}},
		{name: "stopped", wantErr: true, before: func(_ *testing.T, _ *Router, _ *waitingTransport, _ chan struct{}, stop func()) {
			stop()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &waitingTransport{fakeTransport: newFakeTransport(), waiting: make(chan struct{})}
			wedge := make(chan struct{})
			r := NewRouter(RouterConfig{ClientID: testID, Journal: testJournal(t, journal.Options{}), Wedge: wedge}, tr)
			ctx, cancel := context.WithCancel(t.Context())
			var running sync.WaitGroup
			running.Go(func() { r.Run(ctx) })
			stop := func() { cancel(); running.Wait() }
			defer stop()
			if tt.before != nil {
				tt.before(t, r, tr, wedge, stop)
			}

			deadline := answerWithin
			if tt.wantErr {
				deadline = failAfter
			}
			start := time.Now() // before the deadline is set, which counts from its own clock reading
			pctx, pcancel := context.WithTimeout(t.Context(), deadline)
			defer pcancel()
			err := r.Alive(pctx)
			switch {
			case tt.wantErr && err == nil:
				t.Fatalf("Alive = nil, want an error")
			case tt.wantErr && time.Since(start) < failAfter:
				t.Errorf("Alive failed after %v, before its deadline %v: %v", time.Since(start), failAfter, err)
			case !tt.wantErr && err != nil:
				t.Fatalf("Alive = %v, want nil", err)
			}
		})
	}
}
