package sim

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

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

// mustServe serves l with a new mochi server until the end of t.
func mustServe(t *testing.T, l *listener, establish listeners.EstablishFn) {
	t.Helper()
	if l.ln == nil {
		if err := l.Init(testLogger(t)); err != nil {
			t.Fatal(err)
		}
	}
	l.log = testLogger(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Serve(establish)
	}()
	t.Cleanup(func() {
		l.Close(func(string) {})
		<-done
	})
}

// TestListenerConnectDeadline: a connection that sends no CONNECT is
// closed once the connect deadline passes.
func TestListenerConnectDeadline(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Logger: testLogger(t)})
	l := newListener(srv, "t", "127.0.0.1:0", nil)
	l.within = 100 * time.Millisecond
	mustServe(t, l, srv.EstablishConnection)
	c, err := net.DialTimeout("tcp", l.Address(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	awaitClosed(t, c, 5*time.Second)
}

// failingListener's Accept fails with err fails times, then hands out
// conns, then blocks until closed.
type failingListener struct {
	net.Listener // for Addr
	err          error
	fails        int
	conns        chan net.Conn
	closed       chan struct{}
	once         sync.Once
}

func (f *failingListener) Accept() (net.Conn, error) {
	if f.fails > 0 {
		f.fails--
		return nil, f.err
	}
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.closed:
		return nil, net.ErrClosed
	}
}

func (f *failingListener) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

// TestListenerAcceptError: a failed Accept (out of file descriptors) does
// not stop the listener: the next connection is still served.
func TestListenerAcceptError(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Logger: testLogger(t)})
	l := newListener(srv, "t", "127.0.0.1:0", nil)
	f := &failingListener{err: syscall.EMFILE, fails: 3, conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	l.ln = f
	served := make(chan net.Conn, 1)
	mustServe(t, l, func(_ string, c net.Conn) error {
		served <- c
		return nil
	})
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	f.conns <- a
	select {
	case c := <-served:
		if c != a {
			t.Errorf("served %v, want the accepted connection", c)
		}
	case <-testContext(t).Done():
		t.Fatal("the listener stopped serving after a failed accept")
	}
}
