package ceiling

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/worker"
)

func TestEncodeAnswer(t *testing.T) {
	sent := time.Date(2026, 12, 1, 6, 0, 0, 123, time.UTC)
	for _, tc := range []struct {
		name    string
		content string
		wantErr bool
	}{
		{name: "string", content: `"hello"`},
		{name: "object", content: `{"a":[1,2,{"b":null}],"c":"<&>"}`},
		{name: "number", content: `42`},
		{name: "large_string", content: `"` + strings.Repeat("x", 64<<10) + `"`},
		{name: "empty_is_null", content: ``},
		{name: "not_json", content: `{"a":`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := yggdrasil.Data{Type: yggdrasil.TypeData, MessageID: "m<1>", ResponseTo: "r&1", Version: yggdrasil.Version,
				Sent: sent, Directive: "echo", Metadata: map[string]string{"k": "v\u2028"}, Content: json.RawMessage(tc.content)}
			got, err := encodeAnswer(d)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("encodeAnswer = %s, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.content == "" {
				d.Content = nil
			}
			want, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			// The same JSON value; json.Marshal also escapes <, > and &
			// inside the content, which encodeAnswer copies as it is.
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("encodeAnswer gave invalid JSON: %v: %.200s", err, got)
			}
			json.Unmarshal(want, &w)
			if diff := cmp.Diff(w, g); diff != "" {
				t.Errorf("encodeAnswer (-json.Marshal +got):\n%s", diff)
			}
			if !strings.ContainsAny(tc.content, "<>&") && !bytes.Equal(got, want) {
				t.Errorf("encodeAnswer:\n got %.200s\nwant %.200s", got, want)
			}
		})
	}
}

// TestMain runs the test binary as the pipeline's echo worker when a
// script of TestPipelineJournals starts it with CEILING_TEST_WORKER set.
func TestMain(m *testing.M) {
	if h := os.Getenv("CEILING_TEST_WORKER"); h != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		w := &worker.Worker{Handler: h, Log: slog.New(slog.DiscardHandler),
			Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
				return w.Reply(ctx, m, m.Content, m.Metadata)
			}}
		err := w.Run(ctx)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "test worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestPipelineJournals runs ceiling bj (with a journal) against the sim's
// broker and an echo worker, inline as at one message in flight and not
// inline as at many: one message goes round, and the journal holds the
// message and then the answer, byte for byte, in the layout of the sync
// method bj uses there.
func TestPipelineJournals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inline bool
		method SyncMethod
	}{
		{"inline", true, SyncDirect},
		{"many_in_flight", false, SyncFdatasync},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pipeline{Host: Host{ClientID: "ceiling-test-" + tc.name, Inline: tc.inline}}
			if got := p.journalMethod(); got != tc.method {
				t.Fatalf("journal method %v, want %v", got, tc.method)
			}
			testPipelineJournals(t, p)
		})
	}
}

func testPipelineJournals(t *testing.T, p *Pipeline) {
	s := &sim.Server{OpenACL: true, TLSAddr: sim.Off, APIAddr: sim.Off, Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "echo-worker")
	if err := os.WriteFile(script, fmt.Appendf(nil, "#!/bin/sh\nCEILING_TEST_WORKER=echo exec %s\n", exe), 0o755); err != nil {
		t.Fatal(err)
	}
	host := p.ClientID
	p.Broker, p.Workers, p.Journal = s.BrokerURL(), []string{script}, dir

	// Listen before the pipeline starts: the online status is retained,
	// answers are not.
	got := make(chan paho.Message, 16)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(s.BrokerURL()).SetClientID("ceiling-test-cloud"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	topic := func(kind, dir string) string { return yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, host, kind, dir) }
	sub := map[string]byte{topic(yggdrasil.KindData, yggdrasil.DirOut): 1, topic(yggdrasil.KindControl, yggdrasil.DirOut): 1}
	if tok := c.SubscribeMultiple(sub, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			t.Errorf("pipeline: %v", err)
		}
	})

	awaitMsg := func(what string, ok func(paho.Message) bool) paho.Message {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m := <-got:
				if ok(m) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %s within 20s", what)
			}
		}
	}
	awaitMsg("online status listing echo", func(m paho.Message) bool {
		var st yggdrasil.ConnectionStatus
		if json.Unmarshal(m.Payload(), &st) != nil || st.Type != yggdrasil.TypeConnectionStatus {
			return false
		}
		_, listed := st.Content.Dispatchers["echo"]
		return listed
	})
	msg := []byte(`{"type":"data","message_id":"m-1","response_to":"","version":1,"sent":"2026-12-01T06:00:00Z","directive":"echo","metadata":{},"content":"hello"}`)
	if tok := c.Publish(topic(yggdrasil.KindData, yggdrasil.DirIn), 1, false, msg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	answer := awaitMsg("answer to m-1", func(m paho.Message) bool {
		var d yggdrasil.Data
		return json.Unmarshal(m.Payload(), &d) == nil && d.ResponseTo == "m-1"
	})
	var d yggdrasil.Data
	json.Unmarshal(answer.Payload(), &d)
	if string(d.Content) != `"hello"` {
		t.Errorf("answer content %s, want \"hello\"", d.Content)
	}

	path := filepath.Join(dir, "journal")
	if got := record(t, path, 0); !bytes.Equal(got, msg) {
		t.Errorf("journal record 0: %s, want the message %s", got, msg)
	}
	next := span(p.journalMethod(), len(msg))
	if got := record(t, path, next); !bytes.Equal(got, answer.Payload()) {
		t.Errorf("journal record 1: %s, want the answer %s", got, answer.Payload())
	}
}

// span is how far the record after one of n bytes starts.
func span(m SyncMethod, n int) int64 {
	s := int64(headerSize + n)
	if m == SyncDirect {
		s = (s + blockSize - 1) / blockSize * blockSize
	}
	return s
}
