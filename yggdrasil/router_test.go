package yggdrasil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/yggdrasil/journal"
)

// fakeTransport records publishes; it is always connected unless down.
type fakeTransport struct {
	mu          sync.Mutex
	published   []published
	down        bool
	disconnects int
	reconnects  []time.Duration
	notify      chan struct{}
}

type published struct {
	topic    string
	payload  []byte
	retained bool
}

var _ Transport = (*fakeTransport)(nil)

func newFakeTransport() *fakeTransport { return &fakeTransport{notify: make(chan struct{}, 1000)} }

func (f *fakeTransport) Publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("not connected")
	}
	f.published = append(f.published, published{topic, payload, retained})
	select {
	case f.notify <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeTransport) WaitConnected(ctx context.Context) error {
	for {
		f.mu.Lock()
		down := f.down
		f.mu.Unlock()
		if !down {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (f *fakeTransport) Disconnect() {
	f.mu.Lock()
	f.disconnects++
	f.mu.Unlock()
}

func (f *fakeTransport) Reconnect(d time.Duration) {
	f.mu.Lock()
	f.reconnects = append(f.reconnects, d)
	f.mu.Unlock()
}

func (f *fakeTransport) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

// awaitPublished polls until match has seen n publishes on topic.
func (f *fakeTransport) awaitPublished(t *testing.T, topic string, n int) []published {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		var got []published
		for _, p := range f.published {
			if p.topic == topic {
				got = append(got, p)
			}
		}
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("published on %s: got %d messages, want %d", topic, len(got), n)
		}
		select {
		case <-f.notify:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// fakeConn is a worker connection that records what it is sent.
type fakeConn struct {
	mu     sync.Mutex
	sent   []*Data
	err    error
	block  bool
	closed bool
}

func (c *fakeConn) Send(ctx context.Context, d *Data) error {
	if c.block {
		<-ctx.Done()
		return ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, d)
	return c.err
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sent)
}

const testID = "host-1"

// await polls cond until it holds, for at most 10 s.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newTestRouter(t *testing.T, cfg RouterConfig) (*Router, *fakeTransport) {
	t.Helper()
	tr := newFakeTransport()
	cfg.ClientID = testID
	if cfg.Journal == nil {
		cfg.Journal = testJournal(t, journal.Options{})
	}
	r := NewRouter(cfg, tr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, tr
}

func dataIn(id, directive, content string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "data", "message_id": id, "version": 1,
		"sent": "2021-01-12T15:30:08+00:00", "directive": directive, "content": json.RawMessage(content)})
	return b
}

// nackOf decodes a negative acknowledgement.
func nackOf(t *testing.T, p published) (Data, map[string]string) {
	t.Helper()
	var d Data
	if err := json.Unmarshal(p.payload, &d); err != nil {
		t.Fatalf("decode data/out %s: %v", p.payload, err)
	}
	var c map[string]string
	json.Unmarshal(d.Content, &c)
	return d, c
}

func TestHandleDataDeliversToWorker(t *testing.T) {
	r, _ := newTestRouter(t, RouterConfig{})
	conn := &fakeConn{}
	r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: conn})
	if !r.HandleData(dataIn("a6a7d866-7de0-409a-84e0-3c56c4171bb7", "echo", `"Hello world!"`)) {
		t.Fatal("HandleData = false, want true (journalled: acknowledge it)")
	}
	await(t, "the worker to get the message", func() bool { return conn.count() == 1 })
	got := conn.sent[0]
	if got.MessageID != "a6a7d866-7de0-409a-84e0-3c56c4171bb7" || string(got.Content) != `"Hello world!"` {
		t.Errorf("worker got id %q content %s; want the message's id and its exact JSON content", got.MessageID, got.Content)
	}
}

func TestHandleDataRejects(t *testing.T) {
	big := `"` + strings.Repeat("x", 2000) + `"`
	manyKeys := map[string]string{}
	for i := range MaxMetadataKeys + 1 {
		manyKeys[fmt.Sprint("k", i)] = "v"
	}
	meta, _ := json.Marshal(map[string]any{"type": "data", "message_id": "m-meta", "version": 1, "directive": "echo", "metadata": manyKeys})
	tests := []struct {
		name, payload string
		code          ErrorCode
		responseTo    string
	}{
		{"empty", "", CodeMalformed, ""},
		{"truncated", `{"type":"data","message_id":"m1"`, CodeMalformed, "m1"}, // the id was readable before the end,
		{"array", `[]`, CodeMalformed, ""},
		{"null", `null`, CodeMalformed, ""},
		{"wrong_type", `{"type":"command","message_id":"m2","version":1,"directive":"echo"}`, CodeMalformed, "m2"},
		{"version_string", `{"type":"data","message_id":"m3","version":"1","directive":"echo"}`, CodeMalformed, "m3"},
		{"version_2", `{"type":"data","message_id":"m4","version":2,"directive":"echo"}`, CodeUnsupportedVersion, "m4"},
		{"version_missing", `{"type":"data","message_id":"m5","directive":"echo"}`, CodeUnsupportedVersion, "m5"},
		{"invalid_utf8", "{\"type\":\"data\",\"message_id\":\"m6\",\"version\":1,\"directive\":\"echo\",\"content\":\"\xff\"}", CodeMalformed, "m6"},
		{"unknown_directive", string(dataIn("m7", "nobody", `1`)), CodeUnknownDirective, "m7"},
		{"too_large", string(dataIn("m8", "echo", big)), CodeTooLarge, "m8"},
		{"too_many_metadata_keys", string(meta), CodeTooLarge, "m-meta"},
		{"no_directive", `{"type":"data","message_id":"m9","version":1}`, CodeMalformed, "m9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, tr := newTestRouter(t, RouterConfig{MaxMessageSize: 1000})
			conn := &fakeConn{}
			r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: conn})
			r.HandleData([]byte(tc.payload))
			out := tr.awaitPublished(t, "yggdrasil/host-1/data/out", 1)
			d, content := nackOf(t, out[0])
			if d.ResponseTo != tc.responseTo || d.Metadata[MetadataError] != string(tc.code) || content["error"] != string(tc.code) || content["message"] == "" {
				t.Errorf("nack = response_to %q metadata %v content %v; want response_to %q and code %q", d.ResponseTo, d.Metadata, content, tc.responseTo, tc.code)
			}
			if conn.count() != 0 {
				t.Errorf("worker got %d messages, want none", conn.count())
			}
			if r.Stats().Rejected != 1 {
				t.Errorf("Rejected = %d, want 1", r.Stats().Rejected)
			}
		})
	}
}

func TestHandleDataWorkerFailures(t *testing.T) {
	tests := []struct {
		name string
		conn *fakeConn
		code ErrorCode
	}{
		{"worker_timeout", &fakeConn{block: true}, CodeWorkerTimeout},
		{"worker_unavailable", &fakeConn{err: errors.New("connection refused")}, CodeWorkerUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, tr := newTestRouter(t, RouterConfig{DispatchTimeout: 50 * time.Millisecond})
			r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: tc.conn})
			r.HandleData(dataIn("m1", "echo", `1`))
			d, _ := nackOf(t, tr.awaitPublished(t, "yggdrasil/host-1/data/out", 1)[0])
			if d.Metadata[MetadataError] != string(tc.code) || d.ResponseTo != "m1" || d.Directive != "echo" {
				t.Errorf("nack = %+v, want code %s for m1", d, tc.code)
			}
		})
	}
}

func TestHandleDataDropsDuplicates(t *testing.T) {
	r, _ := newTestRouter(t, RouterConfig{})
	conn := &fakeConn{}
	r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: conn})
	for range 3 { // while the first is in flight
		r.HandleData(dataIn("same-id", "echo", `1`))
	}
	await(t, "the worker to get the message", func() bool { return conn.count() == 1 })
	r.HandleData(dataIn("same-id", "echo", `1`)) // once it is done
	if conn.count() != 1 || r.Stats().Duplicates != 3 {
		t.Errorf("worker got %d, duplicates %d; want 1 and 3", conn.count(), r.Stats().Duplicates)
	}
}

// TestHandleDataRetryAfterNack: a refused message is not "done": sent
// again with the same id once the cause is gone, it is delivered.
func TestHandleDataRetryAfterNack(t *testing.T) {
	r, _ := newTestRouter(t, RouterConfig{})
	r.HandleData(dataIn("retry-id", "echo", `1`)) // no worker yet: unknown-directive
	await(t, "the refusal", func() bool { return r.Stats().Rejected == 1 })
	conn := &fakeConn{}
	r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: conn})
	r.HandleData(dataIn("retry-id", "echo", `1`))
	await(t, "the worker to get the message", func() bool { return conn.count() == 1 })
	if conn.count() != 1 || r.Stats().Duplicates != 0 || r.Stats().Rejected != 1 {
		t.Errorf("worker got %d, duplicates %d, rejected %d; want 1, 0 and 1", conn.count(), r.Stats().Duplicates, r.Stats().Rejected)
	}
}

func TestHandleDataWaitsForLateWorker(t *testing.T) {
	starting := true
	r, _ := newTestRouter(t, RouterConfig{Starting: func() bool { return starting }})
	conn := &fakeConn{}
	r.HandleData(dataIn("m1", "late", `1`))
	// The message waits: register the worker once the router waits for it.
	await(t, "the router to wait for the late worker", func() bool {
		r.reg.mu.Lock()
		defer r.reg.mu.Unlock()
		return len(r.reg.waiting) == 1
	})
	r.Registry().Add(&Worker{Handler: "late", Pid: 2, Conn: conn})
	await(t, "the late worker to get the message", func() bool { return conn.count() == 1 })
	await(t, "the router to stop waiting", func() bool {
		r.reg.mu.Lock()
		defer r.reg.mu.Unlock()
		return len(r.reg.waiting) == 0
	})
	r.reg.mu.Lock()
	defer r.reg.mu.Unlock()
	if len(r.reg.waiting) != 0 {
		t.Errorf("registry still holds %d waiters", len(r.reg.waiting))
	}
}

func TestHandleAnswer(t *testing.T) {
	r, tr := newTestRouter(t, RouterConfig{})
	tests := []struct {
		name    string
		in      Data
		wantErr bool
		content string
	}{
		{"json_string", Data{MessageID: "r1", ResponseTo: "m1", Directive: "echo", Content: []byte(`"hi"`)}, false, `"hi"`},
		{"empty_content_is_null", Data{MessageID: "r2", Directive: "echo"}, false, `null`},
		{"not_json", Data{MessageID: "r3", Directive: "echo", Content: []byte(`hi`)}, true, ""},
		{"no_id", Data{Directive: "echo", Content: []byte(`1`)}, true, ""},
		{"no_directive", Data{MessageID: "r4", Content: []byte(`1`)}, true, ""},
	}
	n := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.HandleAnswer(context.Background(), &tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("HandleAnswer error = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidAnswer) {
					t.Errorf("error %v is not ErrInvalidAnswer", err)
				}
				return
			}
			n++
			out := tr.awaitPublished(t, "yggdrasil/host-1/data/out", n)
			var got map[string]json.RawMessage
			json.Unmarshal(out[n-1].payload, &got)
			if string(got["content"]) != tc.content || string(got["message_id"]) != `"`+tc.in.MessageID+`"` || string(got["type"]) != `"data"` {
				t.Errorf("published %s, want content %s", out[n-1].payload, tc.content)
			}
		})
	}
}

// TestInvalidAnswerIsNacked: an answer yggd cannot send is refused to the
// worker and, when it answers a message from the cloud, the cloud gets an
// invalid-answer nack for that message; a marker answer sent after it
// shows what went out, in order.
func TestInvalidAnswerIsNacked(t *testing.T) {
	tests := []struct {
		name     string
		in       Data
		local    bool   // in answers a local dispatch
		wantNack string // the nack's response_to; "" for no nack
	}{
		{name: "not_json", in: Data{MessageID: "r1", ResponseTo: "m1", Directive: "echo", Content: []byte(`hi`)}, wantNack: "m1"},
		{name: "too_large", in: Data{MessageID: "r2", ResponseTo: "m2", Directive: "echo", Content: []byte(`"` + strings.Repeat("x", 200) + `"`)}, wantNack: "m2"},
		{name: "no_message_id", in: Data{ResponseTo: "m3", Directive: "echo", Content: []byte(`1`)}, wantNack: "m3"},
		{name: "no_response_to", in: Data{MessageID: "r4", Directive: "echo", Content: []byte(`hi`)}},
		{name: "local_not_json", in: Data{MessageID: "r5", Directive: "echo", Content: []byte(`hi`)}, local: true},
		{name: "local_no_message_id", in: Data{Directive: "echo", Content: []byte(`1`)}, local: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, tr := newTestRouter(t, RouterConfig{MaxMessageSize: 100})
			if tc.local {
				r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: &fakeConn{}})
				var got answers
				d := &Data{Directive: "echo", Content: []byte(`1`)}
				done, err := r.DispatchLocal(d, got.add)
				if err != nil {
					t.Fatal(err)
				}
				defer done()
				tc.in.ResponseTo = d.MessageID
			}
			err := r.HandleAnswer(context.Background(), &tc.in)
			if !errors.Is(err, ErrInvalidAnswer) {
				t.Fatalf("HandleAnswer: %v, want ErrInvalidAnswer", err)
			}
			if err := r.HandleAnswer(context.Background(), &Data{MessageID: "marker", Directive: "echo", Content: []byte(`1`)}); err != nil {
				t.Fatal(err)
			}
			want := 1
			if tc.wantNack != "" {
				want = 2
			}
			out := tr.awaitPublished(t, "yggdrasil/host-1/data/out", want)
			if d, _ := nackOf(t, out[len(out)-1]); d.MessageID != "marker" || len(out) != want {
				t.Fatalf("published %d messages ending with %q, want %d ending with the marker", len(out), d.MessageID, want)
			}
			if tc.wantNack == "" {
				return
			}
			d, content := nackOf(t, out[0])
			if d.ResponseTo != tc.wantNack || d.Directive != "echo" || d.Metadata[MetadataError] != string(CodeInvalidAnswer) ||
				content["error"] != string(CodeInvalidAnswer) || !strings.Contains(content["message"], "refused") {
				t.Errorf("nack = response_to %q directive %q metadata %v content %v; want an invalid-answer nack to %q",
					d.ResponseTo, d.Directive, d.Metadata, content, tc.wantNack)
			}
		})
	}
}

func TestAnswersSurviveOutageInOrder(t *testing.T) {
	r, tr := newTestRouter(t, RouterConfig{})
	tr.setDown(true)
	for i := range 50 {
		r.HandleAnswer(context.Background(), &Data{MessageID: fmt.Sprint("r", i), Directive: "echo", Content: []byte(`1`)})
	}
	tr.setDown(false)
	out := tr.awaitPublished(t, "yggdrasil/host-1/data/out", 50)
	for i, p := range out {
		var d Data
		json.Unmarshal(p.payload, &d)
		if want := fmt.Sprint("r", i); d.MessageID != want {
			t.Fatalf("answer %d is %q, want %q: order lost", i, d.MessageID, want)
		}
	}
}

func TestControl(t *testing.T) {
	cmd := func(c string, args string) []byte {
		return []byte(`{"type":"command","message_id":"c1","version":1,"sent":"2021-01-12T15:30:08Z","content":{"command":"` + c + `","arguments":` + args + `}}`)
	}
	t.Run("ping", func(t *testing.T) {
		r, tr := newTestRouter(t, RouterConfig{})
		r.HandleControl(cmd("ping", "null"))
		var ev Event
		json.Unmarshal(tr.awaitPublished(t, "yggdrasil/host-1/control/out", 1)[0].payload, &ev)
		if ev.Type != TypeEvent || ev.Content != EventPong || ev.ResponseTo != "c1" || ev.MessageID == "" {
			t.Errorf("pong = %+v", ev)
		}
	})
	// The transport publishes the offline status as it closes
	// (mqtt.TestCommandRunsOnce).
	t.Run("disconnect", func(t *testing.T) {
		r, tr := newTestRouter(t, RouterConfig{})
		r.HandleControl(cmd("disconnect", "{}"))
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if tr.disconnects != 1 || len(tr.reconnects) != 0 {
			t.Errorf("disconnects %d, reconnects %v; want one disconnect", tr.disconnects, tr.reconnects)
		}
	})
	for _, tc := range []struct {
		name, args string
		want       time.Duration
	}{
		{"reconnect_string_delay", `{"delay":"5"}`, 5 * time.Second},
		{"reconnect_number_delay", `{"delay":2.5}`, 2500 * time.Millisecond},
		{"reconnect_no_delay", `null`, 0},
		{"reconnect_bad_delay", `{"delay":"soon"}`, 0},
		{"reconnect_duration_delay", `{"delay":"1.5s"}`, 1500 * time.Millisecond},
		{"reconnect_duration_delay_capped", `{"delay":"8760h"}`, 0},
		{"reconnect_number_delay_capped", `{"delay":86401}`, 0},
		{"reconnect_negative_duration", `{"delay":"-1s"}`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, tr := newTestRouter(t, RouterConfig{})
			r.HandleControl(cmd("reconnect", tc.args))
			if diff := cmp.Diff([]time.Duration{tc.want}, tr.reconnects); diff != "" {
				t.Errorf("reconnect delays (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("unknown_command_ignored", func(t *testing.T) {
		r, tr := newTestRouter(t, RouterConfig{})
		r.HandleControl(cmd("dance", "{}"))
		r.HandleControl(cmd("ping", "{}"))
		out := tr.awaitPublished(t, "yggdrasil/host-1/control/out", 1)
		if len(out) != 1 || !strings.Contains(string(out[0].payload), `"pong"`) {
			t.Errorf("published %d messages on control/out; want only the pong", len(out))
		}
	})
}

func TestStatusListsDispatchers(t *testing.T) {
	r, tr := newTestRouter(t, RouterConfig{Facts: func() CanonicalFacts { return CanonicalFacts{FQDN: "host1"} }})
	r.Registry().Add(&Worker{Handler: "echo", Pid: 1, Conn: &fakeConn{}})
	r.Registry().Add(&Worker{Handler: "feat", Pid: 2, Features: map[string]string{"v": "1"}, Conn: &fakeConn{}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := tr.awaitPublished(t, "yggdrasil/host-1/control/out", 1)
		var s ConnectionStatus
		json.Unmarshal(out[len(out)-1].payload, &s)
		want := map[string]map[string]string{"echo": nil, "feat": {"v": "1"}}
		if cmp.Equal(want, s.Content.Dispatchers) {
			if s.Content.State != StateOnline || !out[len(out)-1].retained || s.Content.CanonicalFacts.FQDN != "host1" {
				t.Errorf("status = %+v retained %v; want online, retained, with facts", s.Content, out[len(out)-1].retained)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dispatchers = %v, want %v", s.Content.Dispatchers, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRegistryRefusesDuplicateHandler(t *testing.T) {
	reg := NewRegistry(nil)
	if err := reg.Add(&Worker{Handler: "echo", Pid: 1}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(&Worker{Handler: "echo", Pid: 2}); !errors.Is(err, ErrDuplicateHandler) {
		t.Fatalf("second registration: err = %v, want ErrDuplicateHandler", err)
	}
	first := &fakeConn{}
	reg = NewRegistry(nil)
	reg.Add(&Worker{Handler: "a", Pid: 1, Owner: "a-worker", Conn: first})
	reg.Add(&Worker{Handler: "b", Pid: 3, Owner: "b-worker", Conn: &fakeConn{}})
	if got := reg.RemoveOwner("a-worker"); !cmp.Equal(got, []string{"a"}) || !first.closed {
		t.Errorf("RemoveOwner = %v closed %v; want [a] and its connection closed", got, first.closed)
	}
	if _, ok := reg.Lookup("b"); !ok {
		t.Error("removing a's owner removed b")
	}
}
