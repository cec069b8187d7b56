package yggsimcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/fakes/logbuf"
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
	var stdout, stderr logbuf.Buffer
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

// TestStreamPageResetAndLargeEvent: the event stream of a sim that
// restarted starts with "event: reset", which moves since back; a message
// of 5 MiB (beyond the 4 MiB lines the reader once took) is read whole.
func TestStreamPageResetAndLargeEvent(t *testing.T) {
	big, err := json.Marshal(sim.Message{Seq: 1, Topic: "t", Payload: bytes.Repeat([]byte("y"), 5<<20)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sinces []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		since := r.URL.Query().Get("since")
		mu.Lock()
		sinces = append(sinces, since)
		mu.Unlock()
		switch since {
		case "100":
			fmt.Fprintf(w, "event: reset\ndata: {\"since\":100,\"oldest_seq\":1,\"last_seq\":2}\n\n")
			fmt.Fprintf(w, "id: 1\nevent: message\ndata: %s\n\n", big)
			fmt.Fprintf(w, "id: 1\nevent: more\ndata: {\"next\":1}\n\n")
		default:
			fmt.Fprintf(w, "id: 2\nevent: message\ndata: {\"seq\":2,\"topic\":\"t\"}\n\n")
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []int64
	err = streamEvents(ctx, srv.URL, 100, func(m sim.Message) bool {
		got = append(got, m.Seq)
		if m.Seq == 1 && len(m.Payload) != 5<<20 {
			t.Errorf("message 1 has %d bytes of payload, want %d", len(m.Payload), 5<<20)
		}
		return m.Seq < 2
	})
	if err != nil {
		t.Fatalf("streamEvents: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[1 2]" || fmt.Sprint(sinces) != "[100 1]" {
		t.Errorf("messages %v asking with since %v, want [1 2] asking with [100 1]", got, sinces)
	}
}
