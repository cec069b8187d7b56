package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// clientTLS returns a TLS configuration for a host whose certificate has CN
// cn, trusting the sim's CA.
func clientTLS(t *testing.T, s *Server, cn string) *tls.Config {
	t.Helper()
	certPEM, keyPEM, err := s.CertificateAuthority().IssueClient(cn)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CertificateAuthority().CertPEM())
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool}
}

func hasRefusal(s *Server, client, action, reason string) bool {
	for _, r := range s.Refusals() {
		if r.ClientID == client && r.Action == action && strings.Contains(r.Reason, reason) {
			return true
		}
	}
	return false
}

func TestACLTopics(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	a := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "A"})

	tests := []struct {
		name   string
		filter string
		ok     bool
	}{
		{"own_in_wildcard", "yggdrasil/A/+/in", true},
		{"own_data_in", "yggdrasil/A/data/in", true},
		{"other_host", "yggdrasil/B/+/in", false},
		{"other_host_exact", "yggdrasil/B/data/in", false},
		{"every_host", "yggdrasil/+/data/in", false},
		{"own_out", "yggdrasil/A/data/out", false},
		{"everything", "#", false},
		{"own_subtree", "yggdrasil/A/#", false},
	}
	for _, tt := range tests {
		t.Run("subscribe_"+tt.name, func(t *testing.T) {
			err := a.subscribe(tt.filter)
			if (err == nil) != tt.ok {
				t.Errorf("subscribe %s: err = %v, want ok=%v", tt.filter, err, tt.ok)
			}
		})
	}
	if !hasRefusal(s, "A", "subscribe", `belongs to "B"`) {
		t.Errorf("refusals = %v, want A's subscription to B's topics", s.Refusals())
	}

	// Publishing to its own out topics is fine.
	a.mustPublish("yggdrasil/A/data/out", []byte(`{}`), false)
	// Publishing to another host's topic is refused (MQTT 3.1.1 closes the
	// connection) and never reaches anybody.
	a.publish("yggdrasil/B/data/out", []byte(`{"forged":true}`), false)
	ctx := testContext(t)
	if _, err := s.Await(ctx, 0, func(m Message) bool { return m.Topic == "yggdrasil/A/data/out" }); err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Messages(0) {
		if m.Topic == "yggdrasil/B/data/out" {
			t.Errorf("a forged message was delivered: %v", m)
		}
	}
	if !hasRefusal(s, "A", "publish", `topic belongs to "B", not to "A"`) {
		t.Errorf("refusals = %v, want A's publish to B's topic", s.Refusals())
	}
}

func TestACLWillOnOtherHost(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	_, err := connectHost(t, hostOpts{broker: s.BrokerURL(), id: "A", noReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	// A will on another host's topic is refused at connect.
	h, err := connectHost(t, hostOpts{broker: s.BrokerURL(), id: "C", noReconnect: true,
		will: []byte("x"), willTopic: "yggdrasil/B/control/out"})
	if err == nil {
		h.client.Disconnect(0)
		t.Fatal("connect with a will on B's topic succeeded, want refused")
	}
	if !hasRefusal(s, "C", "connect", "will") {
		t.Errorf("refusals = %v, want C's connect refused for its will", s.Refusals())
	}
}

func TestACLOpen(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off, OpenACL: true})
	a := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "A"})
	a.mustSubscribe("#")
	a.mustPublish("yggdrasil/B/data/out", []byte(`{}`), false)
}

func TestTLSClientIdentity(t *testing.T) {
	s := MustStart(t, &Server{})
	if !strings.HasPrefix(s.TLSBrokerURL(), "ssl://127.0.0.1:") {
		t.Fatalf("TLSBrokerURL = %q", s.TLSBrokerURL())
	}
	tests := []struct {
		name, id, cn string
		noCert       bool
		ok           bool
		reason       string
	}{
		{name: "cn_matches", id: "h1", cn: "h1", ok: true},
		{name: "cn_differs", id: "h2", cn: "h1", reason: `client id "h2" differs from certificate CN "h1"`},
		{name: "no_certificate", id: "h3", cn: "h3", noCert: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := clientTLS(t, s, tt.cn)
			if tt.noCert {
				cfg.Certificates = nil
			}
			h, err := connectHost(t, hostOpts{broker: s.TLSBrokerURL(), id: tt.id, tls: cfg, noReconnect: true})
			if (err == nil) != tt.ok {
				t.Fatalf("connect: err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok {
				h.mustSubscribe(h.topic("data", "in"))
			}
			if tt.reason != "" && !hasRefusal(s, tt.id, "connect", tt.reason) {
				t.Errorf("refusals = %v, want %q", s.Refusals(), tt.reason)
			}
		})
	}
}

func TestCAKeptInStateDir(t *testing.T) {
	dir := t.TempDir()
	ca1, err := OpenCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca1.IssueClient("h1")
	if err != nil {
		t.Fatal(err)
	}
	srv1, err := ca1.ServerCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := OpenCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(ca1.CertPEM()) != string(ca2.CertPEM()) {
		t.Error("the CA changed across opens of the same directory")
	}
	srv2, err := ca2.ServerCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if string(srv1.Certificate[0]) != string(srv2.Certificate[0]) {
		t.Error("the server certificate changed across opens of the same directory")
	}
	// A client certificate issued before still verifies.
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca2.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify old client certificate: %v", err)
	}
	if cert.Subject.CommonName != "h1" {
		t.Errorf("CN = %q, want h1", cert.Subject.CommonName)
	}
	// The server certificate names the loopback addresses.
	leaf := srv2.Leaf
	if leaf == nil {
		leaf, _ = x509.ParseCertificate(srv2.Certificate[0])
	}
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("server certificate: %v", err)
		}
	}
	// In memory, two CAs differ.
	m1, _ := OpenCA("")
	m2, _ := OpenCA("")
	if string(m1.CertPEM()) == string(m2.CertPEM()) {
		t.Error("two in-memory CAs are the same")
	}
}

// TestACLCheckClient: ygg check's connection, the host's client id with
// yggdrasil.CheckClientSuffix, gets the host's topics and no others, on
// both listeners; on the TLS listener only with the host's certificate.
func TestACLCheckClient(t *testing.T) {
	s := MustStart(t, &Server{})
	checkID := "h1" + yggdrasil.CheckClientSuffix
	tests := []struct {
		name   string
		broker string
		cn     string // "" on the plain listener
		ok     bool
		reason string
	}{
		{name: "plain", broker: s.BrokerURL(), ok: true},
		{name: "tls_host_certificate", broker: s.TLSBrokerURL(), cn: "h1", ok: true},
		{name: "tls_other_certificate", broker: s.TLSBrokerURL(), cn: "h2", reason: `client id "h1/check" differs from certificate CN "h2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := hostOpts{broker: tt.broker, id: checkID, noReconnect: true, willTopic: "yggdrasil/h1/control/out", will: []byte("x")}
			if tt.cn != "" {
				o.tls = clientTLS(t, s, tt.cn)
			}
			h, err := connectHost(t, o)
			if (err == nil) != tt.ok {
				t.Fatalf("connect: err = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				if !hasRefusal(s, checkID, "connect", tt.reason) {
					t.Errorf("refusals = %v, want %q", s.Refusals(), tt.reason)
				}
				return
			}
			h.mustSubscribe("yggdrasil/h1/control/in")
			if err := h.subscribe("yggdrasil/h2/control/in"); err == nil {
				t.Error("subscribe to h2's topic: ok, want refused")
			}
			h.mustPublish("yggdrasil/h1/data/out", []byte{}, false)
		})
	}
}

// TestACLDenyHost: the fault refuses a host its own topics until lifted.
func TestACLDenyHost(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	if err := s.DenyHost("A", true); err != nil {
		t.Fatal(err)
	}
	a := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "A", noReconnect: true})
	if err := a.subscribe("yggdrasil/A/control/in"); err == nil {
		t.Error("subscribe to own topic while denied: ok, want refused")
	}
	if !hasRefusal(s, "A", "read", "denied every topic") {
		t.Errorf("refusals = %v, want A's own topic refused", s.Refusals())
	}
	if err := s.DenyHost("A", false); err != nil {
		t.Fatal(err)
	}
	a.mustSubscribe("yggdrasil/A/control/in")
}

// awaitRefusal polls s's refusals until one matches, or fails the test.
func awaitRefusal(ctx context.Context, t *testing.T, s *Server, client, action, reason string) {
	t.Helper()
	for !hasRefusal(s, client, action, reason) {
		select {
		case <-ctx.Done():
			t.Fatalf("refusals = %v, want %s's %s (%s)", s.Refusals(), client, action, reason)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestPlainWillAfterTakeover: a client on the plain listener using a host's
// id before the host was seen on TLS leaves a retained "offline" will; the
// real host then connects over TLS, taking the id over, and publishes
// "online". The impostor's will, due at the takeover, is dropped and
// listed as a refusal: the host stays online.
func TestPlainWillAfterTakeover(t *testing.T) {
	s := MustStart(t, &Server{})
	ctx := testContext(t)
	mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "h1", noReconnect: true,
		will: statusPayloadJSON(t, yggdrasil.StateOffline, time.Now()), willRetain: true})

	h1 := mustConnectHost(t, hostOpts{broker: s.TLSBrokerURL(), id: "h1", tls: clientTLS(t, s, "h1"), noReconnect: true})
	h1.mustPublish(h1.topic("control", "out"), statusPayloadJSON(t, yggdrasil.StateOnline, time.Now()), true)

	awaitRefusal(ctx, t, s, "h1", "will", `host "h1" authenticates with a certificate`)
	for _, m := range s.Messages(0) {
		if m.Will {
			t.Errorf("a forged will was recorded: %v", m)
		}
	}
	for {
		if h, ok := s.Host("h1"); ok && h.Online() {
			break
		}
		select {
		case <-ctx.Done():
			h, _ := s.Host("h1")
			t.Fatalf("host h1 = %+v, want online", h)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestPlainDelayedWill: a will with a delay on the plain listener is
// refused at CONNECT, since mochi sends a delayed will without asking the
// ACL whether its client still may.
func TestPlainDelayedWill(t *testing.T) {
	s := MustStart(t, &Server{})
	c := mustDialBroker(t, s)
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 5,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            true,
			Keepalive:        30,
			ClientIdentifier: "h2",
			WillFlag:         true,
			WillTopic:        yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, "h2", "control", "out"),
			WillPayload:      []byte("offline"),
			WillRetain:       true,
			WillProperties:   packets.Properties{WillDelayInterval: 60},
		},
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	awaitClosed(t, c, 5*time.Second)
	if !hasRefusal(s, "h2", "connect", "will delay") {
		t.Errorf("refusals = %v, want h2's connect refused for its will delay", s.Refusals())
	}
}

// TestPlainClientIDs: on the plain listener a client id is a level of the
// host's topics, so one with a wildcard or a level separator is refused
// at CONNECT; the check form keeps its "/".
func TestPlainClientIDs(t *testing.T) {
	s := MustStart(t, &Server{})
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"host", "h3", true},
		{"check", "h3" + yggdrasil.CheckClientSuffix, true},
		{"plus", "+", false},
		{"hash", "#", false},
		{"plus_in_id", "a+b", false},
		{"slash", "a/b", false},
		{"plus_check", "+" + yggdrasil.CheckClientSuffix, false},
		{"slash_check", "a/b" + yggdrasil.CheckClientSuffix, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := connectHost(t, hostOpts{broker: s.BrokerURL(), id: tt.id, noReconnect: true})
			if (err == nil) != tt.ok {
				t.Fatalf("connect %q: %v, want ok=%v", tt.id, err, tt.ok)
			}
			if tt.ok {
				h.client.Disconnect(0)
				return
			}
			if !hasRefusal(s, tt.id, "connect", "is not a host id") {
				t.Errorf("refusals = %v, want %q's connect", s.Refusals(), tt.id)
			}
		})
	}
}

// TestTLSHostsFile: the set of TLS hosts follows its file when the file
// is replaced by a shorter one, adds no id the file already has (a sim
// started again in the same state directory), and reports a file it
// cannot read once, not at every look.
func TestTLSHostsFile(t *testing.T) {
	readFile := func(t *testing.T, path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	writeFile := func(t *testing.T, path, s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustHave := func(t *testing.T, h *tlsHosts, id string, want bool) {
		t.Helper()
		got, err := h.has(id, true)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("has(%q) = %v, want %v", id, got, want)
		}
	}

	t.Run("file_replaced_shorter", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, tlsHostsFile)
		writeFile(t, path, "\"alpha\"\n\"bravo\"\n")
		h := newTLSHosts(dir)
		mustHave(t, h, "alpha", true)
		writeFile(t, path, "\"c\"\n")
		mustHave(t, h, "c", true)
		mustHave(t, h, "bravo", true) // the set only grows
	})
	t.Run("restart_adds_no_duplicate", func(t *testing.T) {
		dir := t.TempDir()
		if err := newTLSHosts(dir).add("h1"); err != nil {
			t.Fatal(err)
		}
		again := newTLSHosts(dir) // the sim started again
		for _, id := range []string{"h1", "h2"} {
			if err := again.add(id); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := readFile(t, filepath.Join(dir, tlsHostsFile)), "\"h1\"\n\"h2\"\n"; got != want {
			t.Errorf("file = %q, want %q", got, want)
		}
	})
	t.Run("unreadable_reported_once", func(t *testing.T) {
		notDir := filepath.Join(t.TempDir(), "file")
		writeFile(t, notDir, "")
		h := newTLSHosts(notDir) // its file is under a regular file
		var errs int
		for range 3 {
			if _, err := h.has("x", true); err != nil {
				errs++
			}
		}
		if errs != 1 {
			t.Errorf("errors reported = %d, want 1", errs)
		}
	})
}
