package yggdrasil

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestDetachedReleasesFetchedBody: the body fetched for a detached worker
// is given back to Release once the worker's Send has succeeded, and only
// then (a failed Send may still be reading it).
func TestDetachedReleasesFetchedBody(t *testing.T) {
	tests := []struct {
		name        string
		sendErr     error
		wantRelease bool
	}{
		{name: "send_ok", wantRelease: true},
		{name: "send_failed", sendErr: errors.New("connection refused"), wantRelease: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte("fetched body")
			var mu sync.Mutex
			var released [][]byte
			var got []string
			r, tr := newTestRouter(t, RouterConfig{
				DispatchTimeout: time.Second,
				Fetch:           func(context.Context, *Data) ([]byte, error) { return body, nil },
				Release: func(b []byte) {
					mu.Lock()
					released = append(released, b)
					mu.Unlock()
				},
			})
			conn := &sendFunc{send: func(_ context.Context, d *Data) error {
				mu.Lock()
				got = append(got, string(d.Content)) // what the worker got, before any release
				mu.Unlock()
				return tt.sendErr
			}}
			r.Registry().Add(&Worker{Handler: "det", Pid: 1, Detached: true, Conn: conn})
			r.HandleData(dataIn("m1", "det", `"http://example.invalid/x"`))
			if tt.sendErr != nil {
				tr.awaitPublished(t, "yggdrasil/host-1/data/out", 1) // the nack: the delivery is over
			} else {
				await(t, "the delivery to end", func() bool { return r.Stats().Delivered == 1 })
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 || got[0] != "fetched body" {
				t.Errorf("worker got %q, want the fetched body once", got)
			}
			switch {
			case tt.wantRelease && (len(released) != 1 || &released[0][0] != &body[0]):
				t.Errorf("released %d bodies, want the fetched one once", len(released))
			case !tt.wantRelease && len(released) != 0:
				t.Errorf("released %d bodies after a failed Send, want none", len(released))
			}
		})
	}
}

// sendFunc is a worker connection whose Send is a function.
type sendFunc struct {
	send func(context.Context, *Data) error
}

func (c *sendFunc) Send(ctx context.Context, d *Data) error { return c.send(ctx, d) }
func (c *sendFunc) Close() error                            { return nil }
