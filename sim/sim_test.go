package sim

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ygglab/yggdrasil/fakes/logbuf"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// testLogger writes to the test's output until the test ends: mochi's
// listener may log from a goroutine Close does not wait for.
func testLogger(t *testing.T) *slog.Logger { return logbuf.TestLogger(t, slog.LevelDebug) }

// MustStart starts s with a test logger and closes it at the end of t.
func MustStart(t *testing.T, s *Server) *Server {
	t.Helper()
	if s.Logger == nil {
		s.Logger = testLogger(t)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// host is a paho client standing in for a host.
type host struct {
	t      *testing.T
	id     string
	client paho.Client
	mu     sync.Mutex
	got    []paho.Message
	notify chan struct{}
}

type hostOpts struct {
	broker      string
	id          string
	tls         *tls.Config
	persistent  bool // clean session off
	will        []byte
	willRetain  bool
	willTopic   string // default: the host's control/out
	noReconnect bool
}

// connectHost connects a paho client; it fails the test if the connection
// fails, unless mayFail, in which case it returns the error.
func connectHost(t *testing.T, o hostOpts) (*host, error) {
	t.Helper()
	h := &host{t: t, id: o.id, notify: make(chan struct{})}
	opts := paho.NewClientOptions().AddBroker(o.broker).SetClientID(o.id).
		SetCleanSession(!o.persistent).SetAutoReconnect(!o.noReconnect).
		SetConnectTimeout(5 * time.Second).SetMaxReconnectInterval(100 * time.Millisecond).
		SetKeepAlive(2 * time.Second).SetPingTimeout(time.Second).SetOrderMatters(false)
	if o.tls != nil {
		opts.SetTLSConfig(o.tls)
	}
	if o.will != nil {
		topic := o.willTopic
		if topic == "" {
			topic = yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, o.id, "control", "out")
		}
		opts.SetBinaryWill(topic, o.will, 1, o.willRetain)
	}
	opts.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		h.mu.Lock()
		h.got = append(h.got, m)
		close(h.notify)
		h.notify = make(chan struct{})
		h.mu.Unlock()
	})
	h.client = paho.NewClient(opts)
	tok := h.client.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", o.id)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { h.client.Disconnect(0) })
	return h, nil
}

func mustConnectHost(t *testing.T, o hostOpts) *host {
	t.Helper()
	h, err := connectHost(t, o)
	if err != nil {
		t.Fatalf("connect host %s: %v", o.id, err)
	}
	return h
}

func (h *host) topic(kind, dir string) string {
	return yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, h.id, kind, dir)
}

// subscribe subscribes and returns the SUBACK's result (paho reports a
// refused subscription as an error).
func (h *host) subscribe(filter string) error {
	tok := h.client.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("subscribe %s: timed out", filter)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	st := tok.(*paho.SubscribeToken)
	if code := st.Result()[filter]; code >= 0x80 {
		return fmt.Errorf("subscribe %s: refused with code %#x", filter, code)
	}
	return nil
}

func (h *host) mustSubscribe(filter string) {
	h.t.Helper()
	if err := h.subscribe(filter); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) publish(topic string, payload []byte, retain bool) error {
	tok := h.client.Publish(topic, 1, retain, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("publish %s: timed out", topic)
	}
	return tok.Error()
}

func (h *host) mustPublish(topic string, payload []byte, retain bool) {
	h.t.Helper()
	if err := h.publish(topic, payload, retain); err != nil {
		h.t.Fatal(err)
	}
}

// awaitMessage waits for a received message whose payload contains want.
func (h *host) awaitMessage(ctx context.Context, want string) (paho.Message, error) {
	for {
		h.mu.Lock()
		got, notify := h.got, h.notify
		h.mu.Unlock()
		for _, m := range got {
			if strings.Contains(string(m.Payload()), want) {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("host %s: no message containing %q: %w", h.id, want, ctx.Err())
		case <-notify:
		}
	}
}

func statusPayloadJSON(t *testing.T, state string, sent time.Time) []byte {
	t.Helper()
	cs := yggdrasil.ConnectionStatus{Type: yggdrasil.TypeConnectionStatus, MessageID: yggdrasil.NewMessageID(),
		Version: 1, Sent: sent, Content: yggdrasil.StatusContent{State: state,
			Dispatchers:    map[string]map[string]string{"echo": nil},
			CanonicalFacts: yggdrasil.CanonicalFacts{FQDN: "host.example", MachineID: "m1"}}}
	if state == yggdrasil.StateOffline {
		cs.Content.Dispatchers = nil
		cs.Content.CanonicalFacts = yggdrasil.CanonicalFacts{}
	}
	b, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublishAndRecord(t *testing.T) {
	s := MustStart(t, &Server{})
	ctx := testContext(t)
	h := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "h1"})
	h.mustSubscribe(h.topic("data", "in"))

	// The cloud publishes, the host receives, the sim records.
	id, err := s.SendData(ctx, "h1", "echo", map[string]string{"k": "v"}, json.RawMessage(`"hello"`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.awaitMessage(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The host answers; AwaitAnswer finds it by response_to.
	answer := fmt.Sprintf(`{"type":"data","message_id":"a1","response_to":%q,"version":1,"directive":"echo","content":"hello"}`, id)
	h.mustPublish(h.topic("data", "out"), []byte(answer), false)
	m, err := s.AwaitAnswer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.From != "h1" || m.Host != "h1" || m.MessageID != "a1" || string(m.Payload) != answer {
		t.Errorf("answer = %+v, want from h1 with id a1 and payload %s", m, answer)
	}
	// Every message is in the journal, in order, the sim's own with From "".
	var topics []string
	for _, m := range s.Messages(0) {
		topics = append(topics, m.From+">"+m.Topic)
	}
	want := []string{">yggdrasil/h1/data/in", "h1>yggdrasil/h1/data/out"}
	if fmt.Sprint(topics) != fmt.Sprint(want) {
		t.Errorf("journal = %v, want %v", topics, want)
	}
}

func TestPublishRefusesWildcards(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	for _, topic := range []string{"", "a/+/b", "a/#"} {
		if err := s.Publish(testContext(t), topic, nil, 1, false); err == nil {
			t.Errorf("Publish(%q) succeeded, want an error", topic)
		}
	}
}

func TestMessageJSON(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		key     string
	}{
		{"json", []byte(`{"a":1}`), `"payload":{"a":1}`},
		{"text", []byte(`not json`), `"payload_text":"not json"`},
		{"empty", nil, `"payload_text":""`},
		{"binary", []byte{0xff, 0}, `"payload_base64":"/wA="`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Message{Seq: 3, Topic: "t", Payload: tt.payload}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), tt.key) {
				t.Errorf("json = %s, want it to contain %s", b, tt.key)
			}
			var back Message
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if string(back.Payload) != string(tt.payload) || back.Seq != 3 {
				t.Errorf("round trip = %+v, want payload %q", back, tt.payload)
			}
		})
	}
}

type (
	pahoClient  = paho.Client
	pahoMessage = paho.Message
)
