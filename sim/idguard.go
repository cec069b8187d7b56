package sim

import (
	"bytes"
	"log/slog"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
)

// idGuard works around a bug in mochi v2.7.9 that loses messages: a client's
// QoS 1 PUBLISH deletes the server's unacknowledged delivery to that client
// when both use the same packet identifier.
//
// MQTT gives each direction its own identifier space, but mochi keeps both
// in one in-flight map per client. In processPublish it deletes whatever
// the map holds under the client's identifier (unless it is the client's
// own QoS 2 PUBREC), then stores its PUBACK under that identifier and
// deletes it again once sent, telling the storage hooks about both. So the
// server's delivery is gone from the map and from the session store: the
// client's PUBACK for it finds nothing, and if the delivery never reached
// the client (a connection or broker restart in between) it is never sent
// again. yggd publishes its answers at QoS 1 from its own sequence of
// identifiers while the broker delivers at QoS 1 from the server's, so
// under load the two meet. mochi issues 519 (fixed in v2.8.0) and 545.
//
// The guard saves the delivery when it reads a client PUBLISH whose
// identifier names one (OnPacketRead runs before processPublish), and puts
// it back, in the in-flight map and in the session store, once the PUBLISH
// is processed (OnPacketProcessed runs after processPublish and before
// mochi looks at the map again). Only deliveries are saved: a PUBLISH or a
// PUBREL the server sent. Putting one back is always right, because no
// client PUBLISH may end a server delivery; only its PUBACK (or PUBREC and
// PUBCOMP) may, and those are read after the PUBLISH on the same
// connection.
//
// At QoS 2 mochi keeps its PUBREC for the client's PUBLISH under the same
// identifier until the PUBREL, so the slot is taken and the delivery cannot
// be put back; the guard logs it (mochi issue 545). The sim's clients
// publish at QoS 1.
type idGuard struct {
	mqtt.HookBase
	store    *sessionStore
	info     *system.Info  // the server's counters; mochi's Inflight count is put right too
	repaired *atomic.Int64 // deliveries put back, over every broker start
	log      *slog.Logger

	mu    sync.Mutex
	saved map[*mqtt.Client]packets.Packet // by client: the delivery its PUBLISH being processed collides with
}

func newIDGuard(store *sessionStore, info *system.Info, repaired *atomic.Int64, log *slog.Logger) *idGuard {
	return &idGuard{store: store, info: info, repaired: repaired, log: log,
		saved: map[*mqtt.Client]packets.Packet{}}
}

func (g *idGuard) ID() string { return "sim-packet-id-guard" }

func (g *idGuard) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPacketRead, mqtt.OnPacketProcessed, mqtt.OnDisconnect}, []byte{b})
}

func (g *idGuard) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		return pk, nil
	}
	// A PUBLISH that never reached OnPacketProcessed (its connection
	// failed) leaves nothing behind for the next one.
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.saved, cl)
	d, ok := cl.State.Inflight.Get(pk.PacketID)
	if !ok || (d.FixedHeader.Type != packets.Publish && d.FixedHeader.Type != packets.Pubrel) {
		return pk, nil // free, or the client's own QoS 2 flow, which mochi refuses to reuse
	}
	g.saved[cl] = d
	return pk, nil
}

func (g *idGuard) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	g.mu.Lock()
	d, ok := g.saved[cl]
	delete(g.saved, cl)
	g.mu.Unlock()
	if !ok || d.PacketID != pk.PacketID {
		return
	}
	log := g.log.With("client", cl.ID, "packet_id", d.PacketID, "topic", d.TopicName)
	if cur, taken := cl.State.Inflight.Get(d.PacketID); taken {
		if cur.FixedHeader.Type != d.FixedHeader.Type || cur.Created != d.Created {
			log.Warn("client publish took the packet id of an unacknowledged delivery: delivery lost",
				"qos", pk.FixedHeader.Qos)
		}
		return // untouched (refused publish) or taken by the client's QoS 2 PUBREC
	}
	if cl.State.Inflight.Set(d) {
		atomic.AddInt64(&g.info.Inflight, 1)
	}
	g.store.putInflight(cl.ID, d, d.Created)
	g.repaired.Add(1)
	log.Debug("client publish took the packet id of an unacknowledged delivery: delivery kept")
}

func (g *idGuard) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.saved, cl)
}
