package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// ErrBrokerStopped is returned when the cloud side publishes while the
// broker is stopped (see Server.StopBroker).
var ErrBrokerStopped = errors.New("broker is stopped")

// ErrNotSupported is returned by the fault methods that need the embedded
// broker when an external one is used.
var ErrNotSupported = errors.New("not supported with an external broker")

const (
	listenerTCP = "tcp"
	listenerTLS = "tls"
)

// maxPacketSize bounds an MQTT packet, CONNECT included. mochi allocates a
// packet's remaining length as soon as it has read the fixed header, so
// without a bound (mochi's default is none) five bytes make it allocate
// 256 MiB before any CONNECT. The bound carries yggd's largest message
// (yggdrasil.DefaultMaxMessageSize, 32 MiB) with 1 MiB to spare for the
// envelope around it, the topic and the packet's properties.
const maxPacketSize = yggdrasil.DefaultMaxMessageSize + 1<<20

// broker is the embedded mochi broker. It can be stopped and started again
// on the same ports; its sessions live in store, which outlives each mochi
// server, unless they are deliberately lost.
type broker struct {
	tcpAddr   string      // "" for no plain listener; the bound address, fixed after the first start
	tlsAddr   string      // "" for no TLS listener; fixed after the first start
	tlsConfig *tls.Config // for the TLS listener
	acl       *acl
	store     *sessionStore
	log       *slog.Logger
	record    func(cl *mqtt.Client, pk packets.Packet, will bool)
	unguarded bool         // tests only: no idGuard, to show what mochi does alone
	ungated   bool         // tests only: no takeoverGate, to show what mochi does alone
	testHooks []mqtt.Hook  // tests only: added after the sim's own
	onPark    func()       // tests only: see takeoverGate.onPark
	repaired  atomic.Int64 // deliveries idGuard put back

	mu   sync.Mutex
	srv  *mqtt.Server  // nil while stopped
	gate *takeoverGate // srv's
}

// start starts a new mochi server with the stored sessions.
func (b *broker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return nil
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = clientWritesPending
	caps.MaximumPacketSize = maxPacketSize
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: true,
		Logger:       slog.New(minLevel{b.log.Handler(), slog.LevelWarn}).With("component", "mochi"),
	})
	hooks := []mqtt.Hook{b.acl.hook(), b.store.hook(), &recordHook{record: b.record}, &dropHook{log: b.log}}
	if !b.unguarded {
		hooks = append(hooks, newIDGuard(b.store, srv.Info, &b.repaired, b.log.With("hook", "packet-id-guard")))
	}
	gate := newTakeoverGate()
	gate.onPark = b.onPark
	if !b.ungated {
		hooks = append(hooks, gate)
	}
	hooks = append(hooks, b.testHooks...)
	for _, h := range hooks {
		if err := srv.AddHook(h, nil); err != nil {
			return fmt.Errorf("add hook %s: %w", h.ID(), err)
		}
	}
	var tcp *listener
	if b.tcpAddr != "" {
		tcp = newListener(srv, listenerTCP, b.tcpAddr, nil)
		if err := b.addListener(srv, tcp); err != nil {
			return fmt.Errorf("listen mqtt on %s: %w", b.tcpAddr, err)
		}
	}
	var tlsL *listener
	if b.tlsAddr != "" {
		tlsL = newListener(srv, listenerTLS, b.tlsAddr, b.tlsConfig)
		if err := b.addListener(srv, tlsL); err != nil {
			closeServer(srv)
			return fmt.Errorf("listen mqtts on %s: %w", b.tlsAddr, err)
		}
	}
	if err := srv.Serve(); err != nil {
		closeServer(srv)
		return fmt.Errorf("start broker: %w", err)
	}
	if tcp != nil {
		b.tcpAddr = tcp.Address()
	}
	if tlsL != nil {
		b.tlsAddr = tlsL.Address()
	}
	b.srv, b.gate = srv, gate
	b.log.Info("broker started", "mqtt", b.tcpAddr, "mqtts", b.tlsAddr)
	return nil
}

// rebindFor bounds how long a restarted broker tries to take its port back.
const rebindFor = 5 * time.Second

// addListener adds l to srv. A broker started again listens on the port it
// had, which the kernel hands out as an ephemeral port too: a host dialling
// the stopped broker can hold it for a moment (a TCP self-connect, which
// Go's dialer then drops), so "address in use" is retried for a while.
func (b *broker) addListener(srv *mqtt.Server, l *listener) error {
	deadline := time.Now().Add(rebindFor)
	for i := 0; ; i++ {
		err := srv.AddListener(l)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return err
		}
		if i == 0 {
			b.log.Info("broker port in use, retrying", "listener", l.ID(), "address", l.Address(), "for", rebindFor)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop closes the mochi server and its connections. With loseSessions the
// stored sessions and retained messages are forgotten.
func (b *broker) stop(loseSessions bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		closeServer(b.srv)
		b.srv, b.gate = nil, nil
		b.log.Info("broker stopped", "lose_sessions", loseSessions)
	}
	if loseSessions {
		b.store.reset()
	}
}

// closeServer shuts a mochi server down. mochi 2.7.9's own Close lists each
// listener's clients with Clients.GetByListener, which takes the client
// map's read lock twice (it calls Len inside): a client leaving at that
// moment queues a writer between the two and Close deadlocks (a CI run hung
// 9 minutes in Clients.Delete). So the listeners are closed first with a
// closer that takes the lock once; Close then finds them closed and only
// stops the server.
func closeServer(srv *mqtt.Server) {
	srv.Listeners.CloseAll(func(listener string) {
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Listener == listener && !cl.Closed() {
				_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
	srv.Close()
}

func (b *broker) running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv != nil
}

// publish publishes as the cloud side (mochi's inline client), never while
// a session is being taken over (see takeoverGate).
func (b *broker) publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	b.mu.Lock()
	srv, gate := b.srv, b.gate
	b.mu.Unlock()
	if srv == nil {
		return ErrBrokerStopped
	}
	return gate.publish(ctx, func() error { return srv.Publish(topic, payload, retain, qos) })
}

// recordHook hands every publish and every will the broker sends to record.
type recordHook struct {
	mqtt.HookBase
	record func(cl *mqtt.Client, pk packets.Packet, will bool)
}

func (h *recordHook) ID() string { return "sim-record" }

func (h *recordHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublished, mqtt.OnWillSent}, []byte{b})
}

func (h *recordHook) OnPublished(cl *mqtt.Client, pk packets.Packet) { h.record(cl, pk, false) }

// OnWillSent records a will, but not one the ACL dropped (droppedWill).
func (h *recordHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if pk.TopicName != "" {
		h.record(cl, pk, true)
	}
}

// minLevel is a slog handler that drops records below a level: mochi is
// chatty at info level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
