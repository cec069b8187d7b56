package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// TestPlainListenerTakeover: with host B connected over TLS, a client on
// the plain listener using B's client id (or its check form) is refused,
// listed in the refusals, and B's session keeps its messages.
func TestPlainListenerTakeover(t *testing.T) {
	s := MustStart(t, &Server{})
	b := mustConnectHost(t, hostOpts{broker: s.TLSBrokerURL(), id: "B", tls: clientTLS(t, s, "B"), persistent: true})
	b.mustSubscribe(b.topic("data", "in"))

	for _, id := range []string{"B", "B" + yggdrasil.CheckClientSuffix} {
		_, err := connectHost(t, hostOpts{broker: s.BrokerURL(), id: id, noReconnect: true,
			will: statusPayloadJSON(t, yggdrasil.StateOffline, time.Now()), willRetain: true,
			willTopic: b.topic("control", "out")})
		if err == nil {
			t.Fatalf("plain listener accepted client id %q of a TLS host", id)
		}
		if !hasRefusal(s, id, "connect", `host "B" authenticates with a certificate`) {
			t.Errorf("refusals = %v, want %s's connect", s.Refusals(), id)
		}
	}

	ctx := testContext(t)
	for i := range 3 {
		if _, err := s.SendData(ctx, "B", "echo", nil, fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := b.awaitMessage(ctx, fmt.Sprintf(`"content":{"n":%d}`, i)); err != nil {
			t.Fatalf("TLS host lost a message: %v", err)
		}
	}
	if !b.client.IsConnectionOpen() {
		t.Error("the TLS session was disturbed")
	}
	for _, m := range s.Messages(0) {
		if m.Will || m.Kind == yggdrasil.KindControl {
			t.Errorf("a forged message was recorded: %v", m)
		}
	}
}

// TestPlainListenerIssuedHosts: a host whose certificate the CA in the
// state directory issued (by yggsim cert, in another process) is a TLS
// host too, even before it first connects; a client already connected on
// the plain listener with its id may no longer publish.
func TestPlainListenerIssuedHosts(t *testing.T) {
	dir := t.TempDir()
	s := MustStart(t, &Server{StateDir: dir})
	early := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "C", noReconnect: true})

	// yggsim cert opens the same directory on its own.
	other, err := OpenCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, cn := range []string{"C", "D"} {
		if _, _, err := other.IssueClient(cn); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := connectHost(t, hostOpts{broker: s.BrokerURL(), id: "D", noReconnect: true}); err == nil {
		t.Error("plain listener accepted D, whose certificate the CA issued")
	}
	// The forged retained status is refused (MQTT 3.1.1 closes the
	// connection) and reaches nobody.
	early.publish(early.topic("control", "out"), statusPayloadJSON(t, yggdrasil.StateOnline, time.Now()), true)
	if !hasRefusal(s, "C", "publish", `host "C" authenticates with a certificate`) {
		t.Errorf("refusals = %v, want C's publish", s.Refusals())
	}
	if h, ok := s.Host("C"); ok {
		t.Errorf("host C = %+v, want unknown", h)
	}
	// Hosts without certificates still use the plain listener.
	e := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "E", noReconnect: true})
	e.mustPublish(e.topic("data", "out"), []byte(`{}`), false)
	// And C with its certificate is welcome on TLS.
	mustConnectHost(t, hostOpts{broker: s.TLSBrokerURL(), id: "C", tls: clientTLS(t, s, "C"), noReconnect: true})
}

func TestPlainListenerOff(t *testing.T) {
	s := MustStart(t, &Server{MQTTAddr: Off, Proxy: true})
	if s.BrokerURL() != "" || !strings.HasPrefix(s.TLSBrokerURL(), "ssl://") {
		t.Errorf("broker URLs = %q, %q; want none and a TLS one", s.BrokerURL(), s.TLSBrokerURL())
	}
	h := mustConnectHost(t, hostOpts{broker: s.TLSBrokerURL(), id: "h1", tls: clientTLS(t, s, "h1"), noReconnect: true})
	h.mustSubscribe(h.topic("data", "in"))
	if err := (&Server{MQTTAddr: Off, TLSAddr: Off}).Start(); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("start with both listeners off: %v, want an error", err)
	}
}
