package yggsimcmd

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/sim"
)

// TestWatchFollowsPages: watch --since 0 prints a history longer than one
// page of the event stream, in order, then goes on with new messages.
func TestWatchFollowsPages(t *testing.T) {
	a := startServe(t)
	publish := func(n int) {
		t.Helper()
		for i := range n {
			body := fmt.Sprintf(`{"topic":"yggdrasil/h1/data/in","payload":{"n":%d},"qos":0}`, i)
			resp, err := http.Post(a.API+sim.SimPath+"/publish", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("publish: %s", resp.Status)
			}
		}
	}
	const history = 2500 // two pages and a half
	publish(history)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"watch", "--api", a.API, "--since", "0", "--json"}, &stdout, &stderr)
	}()
	await := func(n int) []string {
		t.Helper()
		for {
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			if len(lines) >= n {
				return lines
			}
			select {
			case <-ctx.Done():
				t.Fatalf("watch printed %d lines, want %d\n%s", len(lines), n, stderr.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	await(history)
	publish(1)
	lines := await(history + 1)
	for i, l := range lines {
		if !strings.HasPrefix(l, fmt.Sprintf(`{"seq":%d,`, i+1)) {
			t.Fatalf("line %d = %.60s, want seq %d", i+1, l, i+1)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watch: %v", err)
	}
}
