package sim

import (
	"bytes"
	"context"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeoverGate works around a race in mochi v2.7.9 that loses the cloud's
// QoS 1 deliveries when a client takes over its session (reconnects with
// clean session off, as yggd does after every broker restart).
//
// In attachClient, mochi calls inheritClientSession and only then adds the
// new client to its client list. Until then a publish is delivered to the
// old client, the session being taken over. inheritClientSession copies the
// old client's in-flight messages to the new one, then clears the old
// one's: a delivery set in flight between the copy and the clearing is
// dropped (and the drop reaches the session store), and one set after the
// clearing, before the new client is listed, stays with the old client,
// which nobody reads again. Either way the publisher was told nothing.
//
// The gate keeps the sim's own publishes (the inline client's, through
// broker.publish) out of that window. OnSessionEstablish, the last hook
// before inheritClientSession, closes the gate for the connecting client
// and waits for the publishes under way to finish; the first packet mochi
// has written to that client (its CONNACK) opens it again, and by then the
// new client is listed, so the publishes that waited go to it, after the
// CONNACK (opening when the CONNACK was only encoded let a delivery be
// written first, which a client must refuse). Another packet encoded
// first (the DISCONNECT of a broker that is closing), the client's
// disconnection, or its connection found closed while a publisher waits
// opens it too, so the gate never stays shut; a publisher also gives up
// when its context ends, so even then the cloud gets an error, not a
// silent loss.
//
// Publishes by other MQTT clients to a client being taken over are not
// gated; the sim's hosts receive only the cloud's.
type takeoverGate struct {
	mqtt.HookBase

	mu         sync.Mutex
	closing    map[*mqtt.Client]bool // clients between OnSessionEstablish and their first packet
	publishing int                   // publishes under way
	changed    chan struct{}         // closed and replaced when either changes
	onPark     func()                // tests only: a publish waits for the gate
}

func newTakeoverGate() *takeoverGate {
	return &takeoverGate{closing: map[*mqtt.Client]bool{}, changed: make(chan struct{})}
}

func (g *takeoverGate) ID() string { return "sim-takeover-gate" }

func (g *takeoverGate) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablish, mqtt.OnPacketEncode, mqtt.OnPacketSent, mqtt.OnDisconnect}, []byte{b})
}

// notify wakes every waiter; g.mu is held.
func (g *takeoverGate) notify() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// publish runs fn (a publish by the inline client) while no session is
// being taken over, waiting until then or until ctx ends.
func (g *takeoverGate) publish(ctx context.Context, fn func() error) error {
	g.mu.Lock()
	for len(g.closing) > 0 {
		wait := g.changed
		onPark := g.onPark
		g.mu.Unlock()
		if onPark != nil {
			onPark()
		}
		select {
		case <-wait:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
		for cl := range g.closing {
			if cl.Closed() { // it failed before anything was written
				delete(g.closing, cl)
			}
		}
	}
	g.publishing++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.publishing--
		g.notify()
		g.mu.Unlock()
	}()
	return fn()
}

func (g *takeoverGate) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closing[cl] = true
	g.notify()
	// Publishes under way finish without waiting for anything: mochi
	// queues deliveries without blocking.
	for g.publishing > 0 {
		wait := g.changed
		g.mu.Unlock()
		<-wait
		g.mu.Lock()
	}
}

// open lets publishes through again once cl is listed (or gone).
func (g *takeoverGate) open(cl *mqtt.Client) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing[cl] {
		delete(g.closing, cl)
		g.notify()
	}
}

func (g *takeoverGate) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack {
		g.open(cl)
	}
	return pk
}

func (g *takeoverGate) OnPacketSent(cl *mqtt.Client, _ packets.Packet, _ []byte) { g.open(cl) }

func (g *takeoverGate) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { g.open(cl) }
