// Package ceiling holds the reference hosts that "make bench" measures
// yggd against, side by side in one run, so that every figure of yggd is a
// ratio to what the same libraries can do on the same machine at the same
// moment:
//
//   - Relay republishes each data/in payload to data/out as it is: the bare
//     cost of the MQTT round trip through the broker (ceiling a).
//   - Pipeline is the ideal yggd data path built from the same libraries
//     (paho, grpc, encoding/json) and the same protocol (package proto):
//     MQTT → JSON decode → one unary Worker.Send to a worker process → the
//     worker's unary Dispatcher.Send back → JSON encode → MQTT, with
//     persistent connections and concurrent dispatch, and nothing else: no
//     validation, no dedupe, no outbox, no supervision (ceiling b). In its
//     best configuration for one message in flight (Inline), each message
//     is handled on the MQTT client's own goroutine.
//   - Pipeline with a Journal is ceiling bj: b plus exactly the two synced
//     writes of yggd's delivery guarantee, the message before the
//     worker's Send and the answer before it is published, each appended
//     to a Durable file (preallocated, zero-filled, written in place) on
//     the calling goroutine: with one message in flight (Inline) through
//     O_DIRECT|O_DSYNC, the fastest sync measured by
//     BenchmarkDurableInterleaved; with many, the records of concurrent
//     messages share one fdatasync (group commit). yggd pays those syncs
//     and b does not: bj is the yardstick that includes them.
//
// Both answer ping with a pong and publish a retained online status that
// lists their handlers, so the load generator (package bench) drives them
// exactly as it drives yggd. They use nothing of yggd's own logic: only
// the message types of package yggdrasil.
package ceiling

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// Host is what both ceilings share: the broker connection and the control
// side.
type Host struct {
	Broker   string // tcp://host:port
	ClientID string
	Prefix   string       // default yggdrasil
	Log      *slog.Logger // nil: discard
	// Inline handles each incoming message on paho's own goroutine, in
	// order (OrderMatters), instead of on a new goroutine per message:
	// the best configuration with one message in flight, where there is
	// nothing to overlap and the goroutine hop is pure latency.
	Inline bool

	client                                 paho.Client
	dataIn, dataOut, controlIn, controlOut string
}

func (h *Host) init() {
	if h.Prefix == "" {
		h.Prefix = yggdrasil.DefaultTopicPrefix
	}
	if h.Log == nil {
		h.Log = slog.New(slog.DiscardHandler)
	}
	h.dataIn = yggdrasil.Topic(h.Prefix, h.ClientID, yggdrasil.KindData, yggdrasil.DirIn)
	h.dataOut = yggdrasil.Topic(h.Prefix, h.ClientID, yggdrasil.KindData, yggdrasil.DirOut)
	h.controlIn = yggdrasil.Topic(h.Prefix, h.ClientID, yggdrasil.KindControl, yggdrasil.DirIn)
	h.controlOut = yggdrasil.Topic(h.Prefix, h.ClientID, yggdrasil.KindControl, yggdrasil.DirOut)
}

// connect connects with yggd's settings (persistent session, a handler
// goroutine per message unless Inline) and subscribes; data is called for
// every data/in payload and acknowledged when it returns.
func (h *Host) connect(ctx context.Context, data func([]byte)) error {
	route := func(_ paho.Client, m paho.Message) {
		switch m.Topic() {
		case h.dataIn:
			data(m.Payload())
		case h.controlIn:
			h.control(m.Payload())
		}
	}
	opts := paho.NewClientOptions().AddBroker(h.Broker).SetClientID(h.ClientID).
		SetCleanSession(false).SetOrderMatters(h.Inline).SetAutoReconnect(false).
		SetKeepAlive(30 * time.Second).SetConnectTimeout(10 * time.Second).SetWriteTimeout(30 * time.Second).
		SetDefaultPublishHandler(route)
	c := paho.NewClient(opts)
	if err := wait(ctx, c.Connect()); err != nil {
		return fmt.Errorf("connect %s: %w", h.Broker, err)
	}
	if err := wait(ctx, c.SubscribeMultiple(map[string]byte{h.dataIn: 1, h.controlIn: 1}, route)); err != nil {
		c.Disconnect(0)
		return fmt.Errorf("subscribe: %w", err)
	}
	h.client = c
	return nil
}

func (h *Host) disconnect() {
	if h.client != nil {
		h.client.Disconnect(250)
	}
}

// control answers ping; other commands are ignored.
func (h *Host) control(p []byte) {
	var c yggdrasil.Command
	if json.Unmarshal(p, &c) != nil || c.Content.Command != yggdrasil.CommandPing {
		return
	}
	ev := yggdrasil.Event{Type: yggdrasil.TypeEvent, MessageID: yggdrasil.NewMessageID(), ResponseTo: c.MessageID,
		Version: yggdrasil.Version, Sent: time.Now(), Content: yggdrasil.EventPong}
	b, _ := json.Marshal(ev)
	h.client.Publish(h.controlOut, 1, false, b)
}

// publishStatus publishes a retained online status listing handlers.
func (h *Host) publishStatus(handlers []string) {
	s := yggdrasil.ConnectionStatus{Type: yggdrasil.TypeConnectionStatus, MessageID: yggdrasil.NewMessageID(),
		Version: yggdrasil.Version, Sent: time.Now(),
		Content: yggdrasil.StatusContent{State: yggdrasil.StateOnline, Dispatchers: map[string]map[string]string{},
			CanonicalFacts: yggdrasil.CanonicalFacts{IPAddresses: []string{}, MACAddresses: []string{}}}}
	for _, d := range handlers {
		s.Content.Dispatchers[d] = nil
	}
	b, _ := json.Marshal(s)
	h.client.Publish(h.controlOut, 1, true, b)
}

// Relay is ceiling a: it republishes each data/in payload to data/out.
type Relay struct {
	Host
	// Handlers are listed in its online status, so that a load generator
	// waiting for them starts; the relay itself ignores directives.
	Handlers []string
}

// Run relays until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	r.init()
	err := r.connect(ctx, func(p []byte) {
		r.client.Publish(r.dataOut, 1, false, p)
	})
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer r.disconnect()
	r.publishStatus(r.Handlers)
	r.Log.Info("relay ready", "client_id", r.ClientID)
	<-ctx.Done()
	return nil
}

func wait(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return fmt.Errorf("no answer from the broker within 15s")
	}
}
