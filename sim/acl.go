package sim

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// Refusal is something the broker's ACL refused: a connection, a
// subscription or a publish.
type Refusal struct {
	Time     time.Time `json:"time"`
	ClientID string    `json:"client_id"`
	Action   string    `json:"action"`          // "connect", "subscribe" (a filter with wildcards), "read" (subscribe to or receive on a topic), "publish" or "will" (a will dropped when it was due)
	Topic    string    `json:"topic,omitempty"` // the topic or filter, for everything but connect
	Reason   string    `json:"reason"`
}

func (r Refusal) String() string {
	if r.Topic == "" {
		return fmt.Sprintf("refused %s by %q: %s", r.Action, r.ClientID, r.Reason)
	}
	return fmt.Sprintf("refused %s %s by %q: %s", r.Action, r.Topic, r.ClientID, r.Reason)
}

// acl is the broker's access policy, the one a cloud-connector deployment
// gives its broker: a host may subscribe only to <prefix>/<its id>/+/in and
// publish only to <prefix>/<its id>/+/out (its will included), and on the
// TLS listener its client id must be the CN of its certificate. The sim's
// own inline client is not subject to it.
//
// One exception, for ygg check's test connection: a client id of the
// host's id followed by yggdrasil.CheckClientSuffix ("host1/check") counts
// as the host for the topics, and on the TLS listener it is accepted with
// the host's certificate. The host is then the CN, not the client id, so a
// certificate gives no more topics than before; on the plain listener,
// which authenticates nobody, any client could claim the host's id anyway.
//
// The plain listener authenticates nobody, so it must not let a client
// stand in for a host that authenticates with a certificate: a client id
// (or its <id>/check form) that is a TLS host's (see tlsHosts) is refused
// there at CONNECT, and a client already connected there with such an id
// may no longer publish or subscribe, nor leave its will: mochi sends a
// will without asking the ACL again, so willHook drops it when it is due
// if its client's id has become a TLS host's since CONNECT (the real host
// took its id over). A delayed will (MQTT 5's will delay interval) is
// refused there at CONNECT, because mochi sends it later without asking
// any hook. Other ids are taken on trust.
//
// DenyHost is a fault: it refuses every topic to a host, its own included,
// as a broker with a wrong ACL would.
type acl struct {
	prefix      string
	open        bool   // allow every topic (the ACL is off)
	tlsListener string // the listener id on which the CN rule applies
	tlsHosts    *tlsHosts
	log         *slog.Logger
	refused     func(Refusal)

	mu     sync.Mutex
	denied map[string]bool // hosts refused every topic
}

// deny refuses (or allows again) every topic to host.
func (a *acl) deny(host string, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.denied == nil {
		a.denied = map[string]bool{}
	}
	if on {
		a.denied[host] = true
	} else {
		delete(a.denied, host)
	}
}

func (a *acl) isDenied(host string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.denied[host]
}

// host returns whom cl acts for: on the TLS listener the CN of its
// certificate (connect checked that its id is the CN, or the CN and
// yggdrasil.CheckClientSuffix), else its client id without that suffix.
func (a *acl) host(cl *mqtt.Client) string {
	if cl.Net.Listener == a.tlsListener && a.tlsListener != "" {
		if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
			if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
				return certs[0].Subject.CommonName
			}
		}
	}
	return strings.TrimSuffix(cl.ID, yggdrasil.CheckClientSuffix)
}

// checkTopic says why client may not use topic (a name or a filter) in
// direction dir ("in" to subscribe and receive, "out" to publish); "" when
// it may.
func (a *acl) checkTopic(client, topic, dir string) string {
	if a.isDenied(client) {
		return fmt.Sprintf("host %q is denied every topic (sim fault)", client)
	}
	if a.open {
		return ""
	}
	parts := strings.Split(topic, "/")
	prefix := strings.Split(a.prefix, "/")
	want := fmt.Sprintf("%s/%s/+/%s", a.prefix, client, dir)
	if len(parts) != len(prefix)+3 {
		return "topic is not " + want
	}
	for i, p := range prefix {
		if parts[i] != p {
			return "topic is not " + want
		}
	}
	host, kind, d := parts[len(prefix)], parts[len(prefix)+1], parts[len(prefix)+2]
	switch {
	case host != client:
		return fmt.Sprintf("topic belongs to %q, not to %q", host, client)
	case kind == "#" || d != dir:
		return "topic is not " + want
	}
	return ""
}

// onTLS reports whether cl came through the TLS listener.
func (a *acl) onTLS(cl *mqtt.Client) bool {
	return cl.Net.Listener == a.tlsListener && a.tlsListener != ""
}

// tlsHostOnPlain says why cl, not on the TLS listener, may not act for
// the host it names; "" when it may. At CONNECT (fresh) the state
// directory's list is read again if it grew; for each publish and
// delivery at most once a second.
func (a *acl) tlsHostOnPlain(cl *mqtt.Client, fresh bool) string {
	if !a.checksPlain(cl) {
		return ""
	}
	host := strings.TrimSuffix(cl.ID, yggdrasil.CheckClientSuffix)
	has, err := a.tlsHosts.has(host, fresh)
	if err != nil {
		a.log.Error("tls hosts unreadable: the plain listener takes every id on trust until they are read again", "error", err)
	}
	if has {
		return fmt.Sprintf("host %q authenticates with a certificate: use the TLS listener", host)
	}
	return ""
}

// connect says why a CONNECT may not be accepted; "" when it may.
func (a *acl) connect(cl *mqtt.Client, pk packets.Packet) string {
	if why := badPlainID(cl, a.onTLS(cl)); why != "" {
		return why
	}
	if why := a.tlsHostOnPlain(cl, true); why != "" {
		return why
	}
	if a.onTLS(cl) {
		tc, ok := cl.Net.Conn.(*tls.Conn)
		if !ok {
			return "not a TLS connection"
		}
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			return "no client certificate"
		}
		cn := certs[0].Subject.CommonName
		if cl.ID != cn && cl.ID != cn+yggdrasil.CheckClientSuffix {
			return fmt.Sprintf("client id %q differs from certificate CN %q", cl.ID, cn)
		}
		if a.tlsHosts != nil {
			if err := a.tlsHosts.add(cn); err != nil {
				a.log.Warn("remember a TLS host", "host", cn, "error", err)
			}
		}
	}
	if pk.Connect.WillFlag {
		if why := a.checkTopic(a.host(cl), pk.Connect.WillTopic, "out"); why != "" {
			return "will " + pk.Connect.WillTopic + ": " + why
		}
		if d := pk.Connect.WillProperties.WillDelayInterval; d > 0 && a.checksPlain(cl) {
			return fmt.Sprintf("will %s: a will delay (%d s) on the plain listener: the will could not be checked when sent", pk.Connect.WillTopic, d)
		}
	}
	return ""
}

// badPlainID says why the client id of cl, when not on the TLS listener
// (where it is its certificate's CN), cannot be a host's; "" when it can.
// A host's id is one level of its topics, and so of the ACL's: a "+" or
// "#" in it would make the host's own filter a wildcard over other hosts'
// topics (each delivery then a refusal), and a "/" would shift the
// levels. The <id>/check form of ygg check's connection is a host's.
func badPlainID(cl *mqtt.Client, onTLS bool) string {
	if cl.Net.Inline || onTLS {
		return ""
	}
	if id := strings.TrimSuffix(cl.ID, yggdrasil.CheckClientSuffix); strings.ContainsAny(id, "+#/") {
		return fmt.Sprintf("client id %q is not a host id: it has a %q, %q or %q", cl.ID, "+", "#", "/")
	}
	return ""
}

// checksPlain reports whether cl is subject to tlsHostOnPlain.
func (a *acl) checksPlain(cl *mqtt.Client) bool {
	return !cl.Net.Inline && !a.onTLS(cl) && a.tlsHosts != nil
}

// will says why cl's will may not be sent now; "" when it may.
func (a *acl) will(cl *mqtt.Client) string {
	return a.tlsHostOnPlain(cl, true)
}

func (a *acl) refuse(r Refusal) {
	r.Time = time.Now()
	a.log.Warn("acl "+r.String(), "client", r.ClientID, "action", r.Action, "topic", r.Topic, "reason", r.Reason)
	if a.refused != nil {
		a.refused(r)
	}
}

// hook returns a mochi hook enforcing a.
func (a *acl) hook() mqtt.Hook { return &aclHook{acl: a} }

type aclHook struct {
	mqtt.HookBase
	acl *acl
}

func (h *aclHook) ID() string { return "sim-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnWill}, []byte{b})
}

// droppedWill is what OnWill makes of a will it drops. mochi sends what
// OnWill returns (an error only keeps the will as it was), so a dropped
// will becomes one without a topic and not retained: no subscription
// matches an empty topic, and recordHook records no will without one.
var droppedWill = mqtt.Will{}

// OnWill drops the will of a client that may no longer act for the host
// it names (see acl.will). mochi calls it when the will is due, as the
// client's connection ends or is taken over.
func (h *aclHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if why := h.acl.will(cl); why != "" {
		h.acl.refuse(Refusal{ClientID: cl.ID, Action: "will", Topic: will.TopicName, Reason: why})
		return droppedWill, nil
	}
	return will, nil
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if why := h.acl.connect(cl, pk); why != "" {
		h.acl.refuse(Refusal{ClientID: cl.ID, Action: "connect", Reason: why})
		return false
	}
	return true
}

func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	dir, action := "in", "subscribe"
	if write {
		dir, action = "out", "publish"
	} else if !strings.ContainsAny(topic, "+#") {
		action = "read" // subscribe to an exact topic, or receive on it
	}
	why := h.acl.tlsHostOnPlain(cl, false)
	if why == "" {
		why = h.acl.checkTopic(h.acl.host(cl), topic, dir)
	}
	if why != "" {
		h.acl.refuse(Refusal{ClientID: cl.ID, Action: action, Topic: topic, Reason: why})
		return false
	}
	return true
}

// tlsHostsFile, in a CA's state directory, lists the TLS hosts, one
// quoted id a line, appended to by every process using the directory.
const tlsHostsFile = "tls-hosts"

// tlsHosts is the set of hosts that authenticate with a certificate: the
// CNs seen on the TLS listener and, with a state directory, every CN its
// CA issued a certificate for (yggsim cert, in another process, included).
// The set only grows.
type tlsHosts struct {
	file string // "" keeps the set in memory only

	mu     sync.Mutex
	ids    map[string]bool
	read   int64     // bytes of file read so far
	looked time.Time // when the file was last looked at
	failed bool      // the last look at the file failed
}

func newTLSHosts(dir string) *tlsHosts {
	t := &tlsHosts{ids: map[string]bool{}}
	if dir != "" {
		t.file = filepath.Join(dir, tlsHostsFile)
	}
	return t
}

// has reports whether id is a TLS host, reading what the file gained
// since the last look if fresh or if that was a second ago or more. A
// failure to read the file leaves the set as it was (the check fails
// open); it is returned the first time only, until a look succeeds
// again, so that its caller logs it once rather than at every publish.
func (t *tlsHosts) has(id string, fresh bool) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ids[id] || t.file == "" || (!fresh && time.Since(t.looked) < time.Second) {
		return t.ids[id], nil
	}
	t.looked = time.Now()
	err := t.refresh()
	return t.ids[id], t.failure(err)
}

// failure returns err if the previous look succeeded, nil otherwise, and
// remembers whether this one failed. t.mu is held.
func (t *tlsHosts) failure(err error) error {
	was := t.failed
	t.failed = err != nil
	if was {
		return nil
	}
	return err
}

// refresh reads the lines the file gained since the last read, all of it
// again if it shrank (it was replaced). t.mu is held.
func (t *tlsHosts) refresh() error {
	st, err := os.Stat(t.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no TLS host yet
	}
	if err != nil {
		return fmt.Errorf("read tls hosts: %w", err)
	}
	if st.Size() < t.read {
		t.read = 0
	}
	if st.Size() == t.read {
		return nil
	}
	f, err := os.Open(t.file)
	if err != nil {
		return fmt.Errorf("read tls hosts: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(t.read, io.SeekStart); err != nil {
		return fmt.Errorf("read tls hosts: %w", err)
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // a line being written is read next time
		}
		t.read += int64(len(line))
		if v, err := strconv.Unquote(strings.TrimSpace(line)); err == nil {
			t.ids[v] = true
		}
	}
	return nil
}

// add makes id a TLS host, appending it to the file unless the file has
// it already (a sim started again in the same state directory).
func (t *tlsHosts) add(id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ids[id] {
		return nil
	}
	if t.file == "" {
		t.ids[id] = true
		return nil
	}
	rerr := t.refresh()
	if t.ids[id] {
		return rerr
	}
	t.ids[id] = true
	return errors.Join(rerr, appendTLSHost(filepath.Dir(t.file), id))
}

// appendTLSHost records id as a TLS host in a state directory.
func appendTLSHost(dir, id string) error {
	f, err := os.OpenFile(filepath.Join(dir, tlsHostsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record tls host %q: %w", id, err)
	}
	_, werr := f.WriteString(strconv.Quote(id) + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("record tls host %q: %w", id, err)
	}
	return nil
}
