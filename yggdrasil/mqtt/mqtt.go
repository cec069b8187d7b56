// Package mqtt is yggd's connection to the broker, over paho.
//
// Unlike yggdrasil 0.1.x it makes a new paho client for every connection, so
// that each connection carries a fresh will (a retained offline status with
// a current id and time); it connects with clean session off, so the broker
// keeps QoS 1 messages for this client id while it is away; it never gives up
// connecting (a broker that is down at boot does not end the daemon) and
// backs off exponentially with jitter between attempts; and every wait on a
// paho token is bounded.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/internal/gopool"
)

// Handler is what the transport calls: the core router implements it.
type Handler interface {
	// Will returns the payload of the will for a new connection.
	Will() []byte
	// WillTopic returns the topic of the will.
	WillTopic() string
	// Connected is called after each connection, once subscribed.
	Connected()
	// HandleControl and HandleData handle a payload from control/in and
	// data/in; HandleData returns false when yggd is stopping and the
	// message was not handled, so that it is not acknowledged and the
	// broker delivers it again to the next session. They run concurrently, each message on a goroutine of its
	// own (pooled); the broker's QoS 1 message is acknowledged when they
	// return.
	HandleControl(payload []byte)
	HandleData(payload []byte) (handled bool)
}

// Config configures a Transport. Zero values mean the defaults.
type Config struct {
	Brokers        []string    // tried in order on each connect: tcp://, ssl://, ws://, wss://, ...
	ClientID       string      // the MQTT client id, also in every topic
	TopicPrefix    string      // default yggdrasil.DefaultTopicPrefix
	TLS            *tls.Config // for ssl://, tls://, mqtts://, wss:// brokers
	KeepAlive      time.Duration
	ConnectTimeout time.Duration
	MaxBackoff     time.Duration // cap of the delay between attempts; default 30 s
	// HandlerWorkers is how many goroutines, at most, wait for the next
	// incoming message once they have handled one (more start when all
	// are busy; each exits after 30 s without a message); default 64. A
	// process that runs many transports (yggsim fleet) sets it low.
	HandlerWorkers int
	Log            *slog.Logger

	// OnState, when set, is called at each change of what the transport
	// does (connecting, connected, waiting to reconnect, staying offline),
	// on the transport's loop: it must not block.
	OnState func(State)
}

// State is what the transport is doing, as Config.OnState reports it. The
// zero value means connecting.
type State struct {
	// Broker is the URL of the broker connected to (any password left
	// out); empty while not connected.
	Broker string
	// Retry is how long until the next attempt to connect, while waiting
	// for it.
	Retry time.Duration
	// Err is why the last attempt failed or the connection ended, while
	// waiting to retry; nil when a reconnect command asked for the wait.
	Err error
	// Offline says that the transport stays disconnected, after a
	// disconnect command, until the process restarts.
	Offline bool
}

// ErrNotConnected is returned by Publish while there is no connection.
var ErrNotConnected = errors.New("not connected to the broker")

// Transport keeps yggd connected to the broker.
type Transport struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	client paho.Client   // nil while disconnected
	up     chan struct{} // closed while connected
	down   chan struct{} // closed when the current connection ends

	cmds    chan command  // Disconnect and Reconnect requests
	updated chan struct{} // capacity 1: Update changed cfg.Brokers or cfg.TLS

	probes chan chan struct{} // Alive's probes, answered by Run's loop

	handlers *gopool.Pool // set by Run before it connects
}

type command struct {
	stay  bool // stay disconnected
	delay time.Duration
}

// New returns a transport; Run connects it.
func New(cfg Config) *Transport {
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = yggdrasil.DefaultTopicPrefix
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.HandlerWorkers <= 0 {
		cfg.HandlerWorkers = handlerWorkers
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Transport{cfg: cfg, log: log, up: make(chan struct{}), down: make(chan struct{}), cmds: make(chan command, 1),
		updated: make(chan struct{}, 1), probes: make(chan chan struct{})}
}

// Run connects and stays connected until ctx ends, then disconnects
// cleanly. It returns an error only for a configuration that can never
// connect.
func (t *Transport) Run(ctx context.Context, h Handler) error {
	if brokers, _ := t.target(); len(brokers) == 0 {
		return errors.New("mqtt: no broker configured")
	}
	if t.cfg.ClientID == "" {
		return errors.New("mqtt: no client id")
	}
	t.handlers = gopool.New(t.cfg.HandlerWorkers, handlerIdle)
	defer t.handlers.Stop()
	failures := 0
	for {
		if ctx.Err() != nil {
			return nil
		}
		t.report(State{})
		c, broker, lost, err := t.connect(ctx, h)
		if err != nil {
			failures++
			d := Backoff(failures, t.cfg.MaxBackoff)
			brokers, _ := t.target()
			t.log.Warn("connect to broker failed", "brokers", brokers, "error", err, "retry_in", d.Round(time.Millisecond))
			t.report(State{Retry: d, Err: err})
			if !t.pause(ctx, d) {
				return nil
			}
			continue
		}
		failures = 0
		t.setClient(c)
		t.log.Info("connected to broker", "broker", broker)
		t.report(State{Broker: broker})
		h.Connected()
	connected:
		for {
			select {
			case reply := <-t.probes:
				t.answer(reply)
			case <-ctx.Done():
				t.setClient(nil)
				c.Disconnect(250)
				t.log.Info("disconnected from broker")
				return nil
			case err := <-lost:
				t.setClient(nil)
				failures = 1 // the first retry comes after about a second
				d := Backoff(failures, t.cfg.MaxBackoff)
				t.log.Warn("connection to broker lost", "error", err)
				t.report(State{Retry: d, Err: err})
				if !t.pause(ctx, d) {
					return nil
				}
				break connected
			case <-t.updated:
				t.setClient(nil)
				c.Disconnect(250)
				t.log.Info("reconnecting to the broker with new settings")
				break connected
			case cmd := <-t.cmds:
				t.setClient(nil)
				t.sayOffline(ctx, c, h, lost)
				c.Disconnect(250)
				if cmd.stay {
					t.log.Info("disconnected from broker on request; restart yggd to connect again")
					t.report(State{Offline: true})
					t.await(ctx, nil, nil, -1)
					return nil
				}
				t.log.Info("disconnected from broker on request", "reconnect_in", cmd.delay)
				if cmd.delay > 0 {
					t.report(State{Retry: cmd.delay})
				}
				if !t.sleep(ctx, cmd.delay) {
					return nil
				}
				break connected
			}
		}
	}
}

// offlineWait bounds the wait for the broker's acknowledgement of the
// offline status published before a close on request.
const offlineWait = 10 * time.Second

// sayOffline publishes the will, retained, before a close on request, and
// waits for the broker's acknowledgement (at most offlineWait, answering
// Alive's probes). The broker discards the will of a clean close, so
// without it the cloud would go on seeing the host online. The
// acknowledgement also shows that the broker has read every packet sent
// before it on this connection, since a broker handles a connection's
// packets in order: among them the acknowledgement of the command that
// asked for the close. A broker that hands the session to the next
// connection at once (mochi does, while the old connection's last packets
// may still be unread) would otherwise send the command again, and it would
// run twice.
func (t *Transport) sayOffline(ctx context.Context, c paho.Client, h Handler, lost <-chan error) {
	tok := c.Publish(h.WillTopic(), 1, true, h.Will())
	switch t.await(ctx, tok.Done(), lost, offlineWait) {
	case doneFirst:
		if err := tok.Error(); err != nil {
			t.log.Warn("publish offline status", "error", err)
		}
	case lostFirst:
		t.log.Warn("publish offline status: connection lost before the broker acknowledged")
	case timedOut:
		t.log.Warn("publish offline status: no acknowledgement from the broker", "waited", offlineWait)
	}
}

// report tells Config.OnState what the transport does now.
func (t *Transport) report(s State) {
	if t.cfg.OnState != nil {
		t.cfg.OnState(s)
	}
}

// Alive returns nil once Run's loop has answered a probe, or an error when
// it has not by the time ctx ends. The loop answers in every state
// (connecting, connected, waiting to reconnect, staying offline), after
// taking the transport's lock: a loop that is stuck, or a lock that is
// never released, fails the probe. yggd's watchdog asks it.
func (t *Transport) Alive(ctx context.Context) error {
	return yggdrasil.Probe(ctx, t.probes, "mqtt transport loop")
}

// answer answers a probe of Alive.
func (t *Transport) answer(reply chan<- struct{}) {
	t.mu.Lock()
	reply <- struct{}{}
	t.mu.Unlock()
}

// outcome is what ended an await.
type outcome int

const (
	doneFirst outcome = iota
	lostFirst
	timedOut
	cancelled
)

// await waits until done is closed, lost (a connection's loss) has a
// value, timeout has passed (never, when it is negative) or ctx ends,
// answering Alive's probes meanwhile: every wait of Run's loop goes
// through it, so that the loop is seen alive in every state. done and lost
// may be nil.
func (t *Transport) await(ctx context.Context, done <-chan struct{}, lost <-chan error, timeout time.Duration) outcome {
	var expired <-chan time.Time
	if timeout >= 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	for {
		select {
		case <-done:
			return doneFirst
		case <-lost:
			return lostFirst
		case <-expired:
			return timedOut
		case <-ctx.Done():
			return cancelled
		case reply := <-t.probes:
			t.answer(reply)
		}
	}
}

// connect makes a new client with a fresh will, connects it and subscribes.
// It returns the URL of the broker it connected to.
func (t *Transport) connect(ctx context.Context, h Handler) (paho.Client, string, <-chan error, error) {
	lost := make(chan error, 1)
	brokers, tlsConfig := t.target()
	var broker atomic.Pointer[string] // the broker of the last attempt
	controlIn := yggdrasil.Topic(t.cfg.TopicPrefix, t.cfg.ClientID, yggdrasil.KindControl, yggdrasil.DirIn)
	dataIn := yggdrasil.Topic(t.cfg.TopicPrefix, t.cfg.ClientID, yggdrasil.KindData, yggdrasil.DirIn)
	// paho calls route in arrival order on one goroutine; each message is
	// handled on a worker of t.handlers (or, when all are busy, a goroutine
	// of its own), and acknowledged once handled.
	route := func(_ paho.Client, m paho.Message) {
		switch {
		case m.Topic() == controlIn && m.Retained():
			// A command is meant for the moment it is sent: a retained one
			// would run again on every connection (a reconnect with delay
			// 0 made yggd reconnect thousands of times a minute).
			t.log.Warn("retained command ignored: commands are not meant to be retained", "topic", m.Topic(), "bytes", len(m.Payload()))
			m.Ack()
		case m.Topic() == controlIn:
			// Acknowledged first: a command is for the moment it is sent,
			// and reconnect or disconnect close the connection its
			// acknowledgement would go out on, so the broker would send
			// it again and it would run twice. (sayOffline then makes
			// sure the broker has read the acknowledgement.)
			m.Ack()
			t.handlers.Go(func() { h.HandleControl(m.Payload()) })
		case m.Topic() == dataIn:
			t.handlers.Go(func() {
				if h.HandleData(m.Payload()) {
					m.Ack()
				}
			})
		default:
			t.log.Warn("message on an unexpected topic dropped", "topic", m.Topic())
			m.Ack()
		}
	}
	opts := paho.NewClientOptions().
		SetClientID(t.cfg.ClientID).
		SetCleanSession(false).
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(t.cfg.KeepAlive).
		SetPingTimeout(10*time.Second).
		SetConnectTimeout(t.cfg.ConnectTimeout).
		SetWriteTimeout(30*time.Second).
		SetBinaryWill(h.WillTopic(), h.Will(), 1, true).
		SetDefaultPublishHandler(route).
		SetConnectionAttemptHandler(func(u *url.URL, tlsConfig *tls.Config) *tls.Config {
			b := u.Redacted()
			broker.Store(&b)
			return tlsConfig
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if tlsConfig != nil {
		opts.SetTLSConfig(tlsConfig)
	}
	for _, b := range brokers {
		opts.AddBroker(b)
	}
	c := paho.NewClient(opts)
	ctok := c.Connect()
	if err := t.wait(ctx, ctok, t.cfg.ConnectTimeout+time.Second); err != nil {
		c.Disconnect(0)
		return nil, "", nil, fmt.Errorf("connect: %w", err)
	}
	resumed := ctok.(*paho.ConnectToken).SessionPresent()
	// 0.1.x publishes an empty message to data/out on connect (a topic must
	// exist before use on some brokers); clouds ignore it.
	c.Publish(yggdrasil.Topic(t.cfg.TopicPrefix, t.cfg.ClientID, yggdrasil.KindData, yggdrasil.DirOut), 0, false, []byte{})
	tok := c.SubscribeMultiple(map[string]byte{controlIn: 1, dataIn: 1}, route)
	if err := t.wait(ctx, tok, t.cfg.ConnectTimeout); err != nil {
		c.Disconnect(0)
		return nil, "", nil, fmt.Errorf("subscribe: %w", err)
	}
	for topic, code := range tok.(*paho.SubscribeToken).Result() {
		switch {
		case code < 0x80:
		case resumed:
			// The resumed session still holds the subscription made on an
			// earlier connection. (Mochi refuses a SUBSCRIBE whose packet
			// id is also one of its own messages in flight to us, which a
			// new client's first id often is when messages were queued.)
			t.log.Debug("subscription refused; the resumed session keeps it", "topic", topic, "code", fmt.Sprintf("%#x", code))
		default:
			c.Disconnect(0)
			return nil, "", nil, fmt.Errorf("subscribe %s: refused by the broker (code %#x)", topic, code)
		}
	}
	addr := ""
	if b := broker.Load(); b != nil {
		addr = *b
	}
	return c, addr, lost, nil
}

func (t *Transport) setClient(c paho.Client) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.client = c
	if c != nil {
		close(t.up)
		t.down = make(chan struct{})
		return
	}
	select {
	case <-t.up:
		t.up = make(chan struct{})
		close(t.down) // publishes waiting on the old connection give up
	default:
	}
}

// Publish sends payload on topic at QoS 1 and waits for the broker's
// acknowledgement until ctx ends.
func (t *Transport) Publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	t.mu.Lock()
	c, down := t.client, t.down
	t.mu.Unlock()
	if c == nil {
		return ErrNotConnected
	}
	tok := c.Publish(topic, 1, retained, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		return nil
	case <-down:
		return fmt.Errorf("publish %s: connection lost before the broker acknowledged", topic)
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, context.Cause(ctx))
	}
}

// PublishAsync hands payload to the current connection at QoS 1 and
// returns at once; the outbox keeps a window of these in flight. Paho
// sends publishes in the order of the calls.
func (t *Transport) PublishAsync(topic string, payload []byte, retained bool) (yggdrasil.Pending, error) {
	t.mu.Lock()
	c, down := t.client, t.down
	t.mu.Unlock()
	if c == nil {
		return nil, ErrNotConnected
	}
	return pending{tok: c.Publish(topic, 1, retained, payload), down: down}, nil
}

// pending is a publish in flight on one connection.
type pending struct {
	tok  paho.Token
	down chan struct{}
}

func (p pending) Acked() <-chan struct{} { return p.tok.Done() }
func (p pending) Lost() <-chan struct{}  { return p.down }
func (p pending) Err() error             { return p.tok.Error() }

var _ yggdrasil.AsyncPublisher = (*Transport)(nil)

// WaitConnected returns once connected, or with ctx's error.
func (t *Transport) WaitConnected(ctx context.Context) error {
	t.mu.Lock()
	up := t.up
	t.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connected reports whether there is a connection now.
func (t *Transport) Connected() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.client != nil
}

// Disconnect publishes the offline status (the will, which the broker
// discards on a clean close), closes the connection cleanly and stays
// disconnected until the process restarts.
func (t *Transport) Disconnect() { t.request(command{stay: true}) }

// Reconnect publishes the offline status as Disconnect does, closes the
// connection cleanly, waits delay and connects again.
func (t *Transport) Reconnect(delay time.Duration) { t.request(command{delay: delay}) }

// Update makes the transport connect to brokers with tlsConfig from now on,
// and reconnect at once: a connection is closed cleanly (so the broker
// keeps the session and discards the will), a wait between failed attempts
// is cut short. While disconnected on request it stays so. Nothing is
// lost: a publish in flight on the old connection reports it lost, and the
// outbox sends it again on the new one.
func (t *Transport) Update(brokers []string, tlsConfig *tls.Config) {
	t.mu.Lock()
	t.cfg.Brokers = slices.Clone(brokers)
	t.cfg.TLS = tlsConfig
	t.mu.Unlock()
	select {
	case t.updated <- struct{}{}:
	default: // a reconnect is already due; it reads the new settings
	}
}

// target returns the brokers and TLS configuration to connect with.
func (t *Transport) target() ([]string, *tls.Config) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cfg.Brokers, t.cfg.TLS
}

// pause waits d between connection attempts, or less when Update asks for
// a reconnect, answering Alive's probes; it returns false when ctx ends.
func (t *Transport) pause(ctx context.Context, d time.Duration) bool {
	return t.await(ctx, t.updated, nil, d) != cancelled
}

func (t *Transport) request(c command) {
	select {
	case t.cmds <- c:
	default: // one request is already pending: it wins
	}
}

// handlerWorkers is how many goroutines wait for incoming messages at
// most, by default; handlerIdle how long each waits before it exits.
//
// paho's own dispatch (OrderMatters off) started a goroutine per message,
// whose stack then grew through gRPC's call path on every message
// (runtime.copystack, 10% of yggd's CPU at 4 KiB); a kept goroutine's
// stack stays grown. When none is waiting (handlers wait for workers to
// take their messages), a message gets a goroutine of its own, so nothing
// ever waits behind a slow worker: a ping is answered however busy the
// data path is.
const (
	handlerWorkers = 64
	handlerIdle    = 30 * time.Second
)

// Backoff returns the delay before attempt n (n ≥ 1) after failures: 1 s
// doubling up to max, with jitter in [d/2, d] so that many hosts cut off at
// once do not come back at once.
func Backoff(n int, max time.Duration) time.Duration {
	d := time.Second
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// wait waits for a paho token, at most timeout.
func (t *Transport) wait(ctx context.Context, tok paho.Token, timeout time.Duration) error {
	switch t.await(ctx, tok.Done(), nil, timeout) {
	case doneFirst:
		return tok.Error()
	case timedOut:
		return fmt.Errorf("no answer from the broker within %s", timeout)
	default:
		return ctx.Err()
	}
}

// sleep waits d and reports whether ctx is still alive.
func (t *Transport) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	return t.await(ctx, nil, nil, d) == timedOut
}
