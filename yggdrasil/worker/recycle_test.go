package worker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/ygglab/yggdrasil/yggdrasil/worker"
	"github.com/ygglab/yggdrasil/yggdrasil/worker/workertest"
)

// TestRecycle: with Recycle, the memory of a large content serves a later
// message once Receive has returned nil; without it, or after a failed
// Receive, a content is never handed out again while it may be in use.
func TestRecycle(t *testing.T) {
	tests := []struct {
		name      string
		recycle   bool
		fail      bool
		wantReuse bool
	}{
		{name: "recycle", recycle: true, wantReuse: true},
		{name: "no_recycle", recycle: false, wantReuse: false},
		{name: "recycle_failed_receive", recycle: true, fail: true, wantReuse: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var held [][]byte // keeps every content alive: a reused address is a reused buffer
			bad := 0
			w := &worker.Worker{Handler: "t", Detached: true, Sync: true, Recycle: tt.recycle,
				Log: slog.New(slog.DiscardHandler),
				Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
					mu.Lock()
					defer mu.Unlock()
					if !bytes.Equal(m.Content, bytes.Repeat([]byte{m.Content[0]}, len(m.Content))) {
						bad++
					}
					held = append(held, m.Content)
					if tt.fail {
						return errors.New("failed")
					}
					return nil
				}}
			d := workertest.New(t, w)
			for i := range 10 {
				content := bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
				if _, err := d.Dispatch(deadline(t), worker.Message{Content: content}); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			seen := map[*byte]bool{}
			reused := false
			for _, c := range held {
				reused = reused || seen[&c[0]]
				seen[&c[0]] = true
			}
			if bad > 0 {
				t.Errorf("%d messages arrived with a content other than the one sent", bad)
			}
			if reused != tt.wantReuse {
				t.Errorf("a content's memory served again: %v, want %v", reused, tt.wantReuse)
			}
		})
	}
}
