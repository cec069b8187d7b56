package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// Off disables a listener when given as its address.
const Off = "off"

// ErrNoProxy is returned by the network fault methods when the Server was
// started without Proxy.
var ErrNoProxy = errors.New("no proxy in front of the broker (start the sim with Proxy)")

// Server is the simulated cloud. Its exported fields are its configuration,
// read once by Start; the zero value listens on loopback ports chosen by
// the kernel, with an in-memory CA.
type Server struct {
	MQTTAddr string // plain MQTT listener (no authentication); "" means 127.0.0.1:0, Off disables it
	TLSAddr  string // MQTT over TLS with client certificates; "" means 127.0.0.1:0, Off disables it
	APIAddr  string // HTTP API; "" means 127.0.0.1:0, Off serves no listener (Handler still works)

	// ExternalBroker is the URL (tcp://host:port) of a broker to use
	// instead of the embedded one, for example mosquitto. The sim then
	// records traffic by subscribing to "#"; it enforces no ACL and cannot
	// stop the broker.
	ExternalBroker string

	StateDir string // keeps the CA; "" keeps it in memory
	CA       *CA    // a CA to use instead of opening one in StateDir

	Prefix  string // topic prefix; "" means yggdrasil.DefaultTopicPrefix
	Proxy   bool   // put fault-injection proxies in front of the listeners; the broker URLs then name the proxies
	OpenACL bool   // let any client use any topic

	PSK string // when set, the cloud-connector API requires this pre-shared key
	Account,
	OrgID string // identity given to hosts in the cloud-connector API; "" means "0000001" and "000001"

	HistoryLimit    int   // messages kept per host (while the journal holds them); 0 means 200
	JournalLimit    int   // messages kept in all; 0 means DefaultJournalLimit (100,000)
	JournalMaxBytes int64 // bytes kept in all (payloads, encodings, overhead); 0 means DefaultJournalMaxBytes (64 MiB)
	// ForgetAfter is how long a host that is not online is kept after the
	// latest message it sent; 0 means DefaultForgetAfter, a negative
	// value keeps every host.
	ForgetAfter time.Duration

	// APIReadHeaderTimeout bounds how long a client of the API may take
	// to send a request's headers; 0 means DefaultAPIReadHeaderTimeout.
	APIReadHeaderTimeout time.Duration
	// APIWriteTimeout bounds each write of an event stream or a page of
	// messages, so that a reader that stopped reading releases its stream;
	// 0 means DefaultAPIWriteTimeout.
	APIWriteTimeout time.Duration

	Logger *slog.Logger // nil means slog.Default()

	streams atomic.Int64 // event streams open, for tests

	unguarded bool        // tests only: start the broker without idGuard
	ungated   bool        // tests only: start the broker without takeoverGate
	testHooks []mqtt.Hook // tests only: more hooks for the broker
	onPark    func()      // tests only: a publish waits for a session takeover

	mu        sync.Mutex
	started   bool
	closed    bool
	log       *slog.Logger
	ca        *CA
	journal   *journal
	registry  *registry
	broker    *broker   // nil with an external broker
	ext       *external // nil with the embedded broker
	tcpProxy  *Proxy
	tlsProxy  *Proxy
	refusals  []Refusal
	handler   http.Handler
	api       *http.Server
	apiLn     net.Listener
	cancelAPI context.CancelFunc
	wg        sync.WaitGroup
}

// Start starts the broker (or connects to the external one), the proxies
// and the API.
func (s *Server) Start() (err error) {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("start sim: already started")
	}
	s.started = true
	s.mu.Unlock()
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	s.log = s.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "sim")
	if s.Prefix == "" {
		s.Prefix = yggdrasil.DefaultTopicPrefix
	}
	if s.Account == "" {
		s.Account = "0000001"
	}
	if s.OrgID == "" {
		s.OrgID = "000001"
	}
	if s.HistoryLimit <= 0 {
		s.HistoryLimit = 200
	}
	if s.APIReadHeaderTimeout <= 0 {
		s.APIReadHeaderTimeout = DefaultAPIReadHeaderTimeout
	}
	if s.APIWriteTimeout <= 0 {
		s.APIWriteTimeout = DefaultAPIWriteTimeout
	}
	s.journal = newJournal(s.JournalLimit, s.JournalMaxBytes)
	s.JournalLimit, s.JournalMaxBytes = s.journal.limit, s.journal.maxBytes
	s.registry = newRegistry(s.Prefix, s.HistoryLimit, s.log)
	if s.ForgetAfter != 0 {
		s.registry.forgetAfter = s.ForgetAfter
	}

	s.ca = s.CA
	if s.ca == nil {
		if s.ca, err = OpenCA(s.StateDir); err != nil {
			return fmt.Errorf("start sim: %w", err)
		}
	}

	if s.ExternalBroker != "" {
		s.ext = &external{url: s.ExternalBroker, log: s.log, record: s.recordExternal}
		if err := s.ext.start(); err != nil {
			return fmt.Errorf("start sim: %w", err)
		}
		if s.Proxy {
			u, err := url.Parse(s.ExternalBroker)
			if err != nil || u.Host == "" {
				return fmt.Errorf("start sim: external broker %q: not a URL like tcp://host:port", s.ExternalBroker)
			}
			s.tcpProxy = &Proxy{Target: u.Host, Logger: s.log.With("proxy", "mqtt")}
			if err := s.tcpProxy.Start(); err != nil {
				return fmt.Errorf("start sim: %w", err)
			}
		}
	} else {
		if s.MQTTAddr == Off && s.TLSAddr == Off {
			return errors.New("start sim: both MQTT listeners are off")
		}
		b := &broker{
			store:  newSessionStore(),
			log:    s.log,
			record: s.recordEmbedded,
			acl: &acl{prefix: s.Prefix, open: s.OpenACL, tlsListener: listenerTLS,
				tlsHosts: newTLSHosts(s.ca.dir), log: s.log, refused: s.addRefusal},
			unguarded: s.unguarded,
			ungated:   s.ungated,
			testHooks: s.testHooks,
			onPark:    s.onPark,
		}
		if s.MQTTAddr != Off {
			b.tcpAddr = orDefault(s.MQTTAddr, "127.0.0.1:0")
		}
		if s.TLSAddr != Off {
			b.tlsAddr = orDefault(s.TLSAddr, "127.0.0.1:0")
			if b.tlsConfig, err = s.ca.ServerTLSConfig(); err != nil {
				return fmt.Errorf("start sim: %w", err)
			}
		}
		if err := b.start(); err != nil {
			return fmt.Errorf("start sim: %w", err)
		}
		s.mu.Lock()
		s.broker = b
		s.mu.Unlock()
		if s.Proxy {
			if b.tcpAddr != "" {
				s.tcpProxy = &Proxy{Target: b.tcpAddr, Logger: s.log.With("proxy", "mqtt")}
				if err := s.tcpProxy.Start(); err != nil {
					return fmt.Errorf("start sim: %w", err)
				}
			}
			if b.tlsAddr != "" {
				s.tlsProxy = &Proxy{Target: b.tlsAddr, Logger: s.log.With("proxy", "mqtts")}
				if err := s.tlsProxy.Start(); err != nil {
					return fmt.Errorf("start sim: %w", err)
				}
			}
		}
	}

	s.handler = s.newAPI()
	if s.APIAddr != Off {
		ln, err := net.Listen("tcp", orDefault(s.APIAddr, "127.0.0.1:0"))
		if err != nil {
			return fmt.Errorf("start sim: listen api: %w", err)
		}
		s.mu.Lock()
		s.apiLn = ln
		// Requests (event streams, long waits) end when the sim closes.
		ctx, cancel := context.WithCancel(context.Background())
		s.cancelAPI = cancel
		s.api = &http.Server{Handler: s.handler, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			BaseContext:       func(net.Listener) context.Context { return ctx },
			ReadHeaderTimeout: s.APIReadHeaderTimeout}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("serve api", "error", err)
			}
		}()
	}
	s.log.Info("sim started", "mqtt", s.BrokerURL(), "mqtts", s.TLSBrokerURL(), "api", s.APIURL())
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Run starts the sim, serves until ctx ends, then closes it. An end caused
// by ctx is not an error.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}

// Close stops everything and waits for it. It may be called more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	api, b, ext, cancelAPI := s.api, s.broker, s.ext, s.cancelAPI
	s.mu.Unlock()
	if api != nil {
		cancelAPI()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		api.Shutdown(ctx) // ends SSE streams through their request contexts
		cancel()
		api.Close()
	}
	for _, p := range []*Proxy{s.tcpProxy, s.tlsProxy} {
		if p != nil {
			p.Close()
		}
	}
	if b != nil {
		b.stop(false)
	}
	if ext != nil {
		ext.stop()
	}
	s.wg.Wait()
	return nil
}

// BrokerURL returns tcp://host:port of the plain MQTT listener (of its
// proxy with Proxy; of the external broker, or its proxy, with one); ""
// when it is off.
func (s *Server) BrokerURL() string {
	switch {
	case s.tcpProxy != nil:
		return "tcp://" + s.tcpProxy.Addr()
	case s.ext != nil:
		return s.ExternalBroker
	case s.broker != nil && s.broker.tcpAddr != "":
		return "tcp://" + s.broker.tcpAddr
	}
	return ""
}

// TLSBrokerURL returns ssl://host:port of the TLS listener (of its proxy
// with Proxy), "" without one.
func (s *Server) TLSBrokerURL() string {
	switch {
	case s.tlsProxy != nil:
		return "ssl://" + s.tlsProxy.Addr()
	case s.broker != nil && s.broker.tlsAddr != "":
		return "ssl://" + s.broker.tlsAddr
	}
	return ""
}

// APIURL returns the base URL of the HTTP API, "" without a listener.
func (s *Server) APIURL() string {
	if s.apiLn == nil {
		return ""
	}
	return "http://" + s.apiLn.Addr().String()
}

// Handler returns the HTTP API (available after Start).
func (s *Server) Handler() http.Handler { return s.handler }

// CA returns the sim's certificate authority (available after Start).
func (s *Server) CertificateAuthority() *CA { return s.ca }

// TopicPrefix returns the topic prefix in use.
func (s *Server) TopicPrefix() string { return s.Prefix }

// recordEmbedded records what the embedded broker published.
func (s *Server) recordEmbedded(cl *mqtt.Client, pk packets.Packet, will bool) {
	if pk.TopicName == "" {
		return
	}
	m := newMessage(s.Prefix, pk.TopicName, append([]byte(nil), pk.Payload...))
	if !cl.Net.Inline {
		m.From = cl.ID
	}
	m.QoS, m.Retain, m.Will, m.Dup = pk.FixedHeader.Qos, pk.FixedHeader.Retain, will, pk.FixedHeader.Dup
	s.record(m)
}

// recordExternal records what the external broker delivered to us.
func (s *Server) recordExternal(topic string, payload []byte, qos byte, retained bool) {
	m := newMessage(s.Prefix, topic, payload)
	m.QoS, m.Retain = qos, retained
	s.record(m)
}

func (s *Server) record(m Message) {
	s.journal.add(m, func(m Message) {
		s.log.Debug("message", "seq", m.Seq, "topic", m.Topic, "from", m.From, "qos", m.QoS, "retain", m.Retain, "will", m.Will, "dup", m.Dup, "bytes", len(m.Payload))
		s.registry.observe(m)
	})
}

func (s *Server) addRefusal(r Refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusals = append(s.refusals, r)
	if len(s.refusals) > 1000 {
		s.refusals = s.refusals[len(s.refusals)-1000:]
	}
}

// Refusals returns what the ACL refused, oldest first (the latest 1000).
func (s *Server) Refusals() []Refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Refusal{}, s.refusals...)
}

// Publish publishes payload on topic as the cloud side.
func (s *Server) Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	if topic == "" || strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("publish %q: topic must be a non-empty name without wildcards", topic)
	}
	if qos > 2 {
		return fmt.Errorf("publish %s: qos %d is not 0, 1 or 2", topic, qos)
	}
	var err error
	if s.ext != nil {
		err = s.ext.publish(ctx, topic, payload, qos, retain)
	} else {
		err = s.broker.publish(ctx, topic, payload, qos, retain)
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// SendData publishes a data message to host's data/in topic, as
// cloud-connector does for POST .../message, and returns its message id.
func (s *Server) SendData(ctx context.Context, host, directive string, metadata map[string]string, content json.RawMessage) (string, error) {
	if directive == "" {
		return "", errors.New("send data: directive is empty")
	}
	if len(content) == 0 {
		content = json.RawMessage("null")
	}
	d := yggdrasil.Data{Type: yggdrasil.TypeData, MessageID: yggdrasil.NewMessageID(), Version: yggdrasil.Version,
		Sent: time.Now(), Directive: directive, Metadata: metadata, Content: content}
	payload, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("send data: %w", err)
	}
	if err := s.Publish(ctx, yggdrasil.Topic(s.Prefix, host, yggdrasil.KindData, yggdrasil.DirIn), payload, 1, false); err != nil {
		return "", fmt.Errorf("send data: %w", err)
	}
	return d.MessageID, nil
}

// SendCommand publishes a control command to host's control/in topic and
// returns its message id.
func (s *Server) SendCommand(ctx context.Context, host, command string, args map[string]string) (string, error) {
	c := yggdrasil.NewCommand(command, args)
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("send %s: %w", command, err)
	}
	if err := s.Publish(ctx, yggdrasil.Topic(s.Prefix, host, yggdrasil.KindControl, yggdrasil.DirIn), payload, 1, false); err != nil {
		return "", fmt.Errorf("send %s: %w", command, err)
	}
	return c.MessageID, nil
}

// Messages returns the recorded messages whose Seq is greater than since
// that the journal still holds.
func (s *Server) Messages(since int64) []Message {
	msgs, _ := s.journal.since(since)
	return msgs
}

// Journal returns what the journal holds and has dropped.
func (s *Server) Journal() JournalStats { return s.journal.stats() }

// LastSeq returns the Seq of the latest recorded message (0 if none), a
// cursor for Messages and Await.
func (s *Server) LastSeq() int64 { return s.journal.last() }

// Await returns the first recorded message after since for which match is
// true, waiting for it until ctx ends.
func (s *Server) Await(ctx context.Context, since int64, match func(Message) bool) (Message, error) {
	var found Message
	err := s.journal.await(ctx, since, func(m Message) bool {
		if match(m) {
			found = m
			return true
		}
		return false
	})
	return found, err
}

// Watch calls visit with every message after since as it is recorded,
// until visit returns false or ctx ends.
func (s *Server) Watch(ctx context.Context, since int64, visit func(Message) bool) error {
	return s.journal.await(ctx, since, func(m Message) bool { return !visit(m) })
}

// AwaitAnswer waits for the message on a data/out topic whose response_to
// is id (recorded at any time, before or after the call).
func (s *Server) AwaitAnswer(ctx context.Context, id string) (Message, error) {
	return s.Await(ctx, 0, func(m Message) bool {
		return m.Kind == yggdrasil.KindData && m.Dir == yggdrasil.DirOut && m.ResponseTo == id
	})
}

// Ping sends a ping command to host and waits for its pong; it returns the
// pong and the round-trip time.
func (s *Server) Ping(ctx context.Context, host string) (Message, time.Duration, error) {
	since := s.LastSeq()
	start := time.Now()
	id, err := s.SendCommand(ctx, host, yggdrasil.CommandPing, nil)
	if err != nil {
		return Message{}, 0, err
	}
	pong, err := s.Await(ctx, since, func(m Message) bool {
		return m.Host == host && m.Kind == yggdrasil.KindControl && m.Dir == yggdrasil.DirOut &&
			m.Type == yggdrasil.TypeEvent && m.ResponseTo == id
	})
	if err != nil {
		return Message{}, 0, fmt.Errorf("ping %s: wait for pong: %w", host, err)
	}
	return pong, pong.Time.Sub(start), nil
}

// Hosts returns every host the sim has seen, sorted by id.
func (s *Server) Hosts() []Host { return s.registry.list() }

// Host returns the host with id, and whether the sim has seen it.
func (s *Server) Host(id string) (Host, bool) { return s.registry.host(id) }

// StopBroker stops the embedded broker, closing every connection. Its
// sessions (persistent subscriptions, queued QoS 1 and 2 messages, retained
// messages) are kept for StartBroker unless loseSessions is set.
func (s *Server) StopBroker(loseSessions bool) error {
	if s.broker == nil {
		return ErrNotSupported
	}
	s.broker.stop(loseSessions)
	return nil
}

// StartBroker starts the embedded broker again on the same ports.
func (s *Server) StartBroker() error {
	if s.broker == nil {
		return ErrNotSupported
	}
	return s.broker.start()
}

// DenyHost makes the broker's ACL refuse every topic to host (its own
// included) as long as deny is true: the fault of a broker whose ACL is
// wrong. A refused subscription gets SUBACK 0x80; a refused QoS 1 publish
// ends the connection. Not supported with an external broker.
func (s *Server) DenyHost(host string, deny bool) error {
	if s.broker == nil {
		return ErrNotSupported
	}
	s.broker.acl.deny(host, deny)
	return nil
}

// BrokerRunning reports whether the broker accepts connections.
func (s *Server) BrokerRunning() bool {
	if s.broker == nil {
		return s.ext != nil
	}
	return s.broker.running()
}

// proxies returns the fault proxies, or ErrNoProxy.
func (s *Server) proxies() ([]*Proxy, error) {
	var ps []*Proxy
	for _, p := range []*Proxy{s.tcpProxy, s.tlsProxy} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil, ErrNoProxy
	}
	return ps, nil
}

// Network applies a network fault to every proxy: one of NetCut,
// NetBlackhole or NetHealthy (which heals and removes any delay).
func (s *Server) Network(mode NetMode) error {
	ps, err := s.proxies()
	if err != nil {
		return err
	}
	for _, p := range ps {
		switch mode {
		case NetCut:
			p.Cut()
		case NetBlackhole:
			p.Blackhole()
		case NetHealthy:
			p.Heal()
		default:
			return fmt.Errorf("network mode %q: want cut, blackhole or healthy", mode)
		}
	}
	return nil
}

// Delay adds latency d to every byte through the proxies (0 removes it).
func (s *Server) Delay(d time.Duration) error {
	ps, err := s.proxies()
	if err != nil {
		return err
	}
	for _, p := range ps {
		p.Delay(d)
	}
	return nil
}

// NetworkState returns the proxies' state, or ErrNoProxy.
func (s *Server) NetworkState() (NetState, error) {
	ps, err := s.proxies()
	if err != nil {
		return NetState{}, err
	}
	return ps[0].State(), nil
}

// HostMessages returns the latest messages to and from host id (at most
// HistoryLimit, and only those the journal still holds), oldest first, and
// whether the sim has seen the host.
func (s *Server) HostMessages(id string) ([]Message, bool) {
	seqs, ok := s.registry.history(id)
	if !ok {
		return nil, false
	}
	return messagesOf(s.journal.lookup(seqs)), true
}
