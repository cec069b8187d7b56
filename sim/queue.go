package sim

import (
	"bytes"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// clientWritesPending is the room in each client's outbound queue in the
// embedded broker: packets waiting for the client's write loop. mochi
// allocates the whole queue (8 bytes a slot) when a client connects, and
// its default of 8,192 slots is 64 KiB a client, most of what the sim
// held per host with 10,000 hosts connected. The queue only fills when
// packets for one client are published faster than its connection takes
// them for longer than the queue lasts; the sim's publishers (the API,
// bench's window of 64) are far from 1,024 in a burst. A packet that finds
// the queue full is dropped by mochi, QoS 1 included: dropHook says so.
const clientWritesPending = 1024

// dropHook logs every packet mochi drops because a client's outbound
// queue is full.
type dropHook struct {
	mqtt.HookBase
	log *slog.Logger
}

func (h *dropHook) ID() string { return "sim-drop-warning" }

func (h *dropHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublishDropped}, []byte{b})
}

func (h *dropHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.log.Warn("broker dropped a message: the client's outbound queue is full",
		"client", cl.ID, "topic", pk.TopicName, "qos", pk.FixedHeader.Qos, "queue", clientWritesPending)
}
