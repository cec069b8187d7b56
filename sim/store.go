package sim

import (
	"bytes"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// sessionStore keeps the broker's persistent state (sessions of clients
// that connected with clean session off, their subscriptions and queued
// QoS 1/2 messages, and retained messages) in memory, outside any one mochi
// server, so that a stopped broker can be started again with its sessions.
// It is mochi's storage-hook contract (see mochi's hooks/storage/bolt) kept
// in maps instead of a database.
type sessionStore struct {
	mu       sync.Mutex
	clients  map[string]storage.Client
	subs     map[string]storage.Subscription // key client + "\x00" + filter
	inflight map[string]storage.Message      // key client + "\x00" + packet id
	retained map[string]storage.Message      // key topic
}

func newSessionStore() *sessionStore {
	s := &sessionStore{}
	s.reset()
	return s
}

// reset forgets everything: the next broker starts with no sessions and no
// retained messages.
func (s *sessionStore) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients = map[string]storage.Client{}
	s.subs = map[string]storage.Subscription{}
	s.inflight = map[string]storage.Message{}
	s.retained = map[string]storage.Message{}
}

// hook returns a mochi hook that writes into s; each server instance gets
// its own hook value, all sharing s.
func (s *sessionStore) hook() mqtt.Hook { return &storeHook{store: s} }

type storeHook struct {
	mqtt.HookBase
	store *sessionStore
}

func (h *storeHook) ID() string { return "sim-session-store" }

func (h *storeHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed,
		mqtt.OnUnsubscribed, mqtt.OnRetainMessage, mqtt.OnWillSent,
		mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnRetainedExpired,
		mqtt.StoredClients, mqtt.StoredInflightMessages,
		mqtt.StoredRetainedMessages, mqtt.StoredSubscriptions,
	}, []byte{b})
}

func key(a, b string) string { return a + "\x00" + b }

func (h *storeHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) { h.updateClient(cl) }
func (h *storeHook) OnWillSent(cl *mqtt.Client, _ packets.Packet)           { h.updateClient(cl) }

func (h *storeHook) updateClient(cl *mqtt.Client) {
	if cl.Net.Inline {
		return
	}
	props := cl.Properties.Props.Copy(false)
	c := storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Username:        cl.Properties.Username,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval: props.SessionExpiryInterval,
			AuthenticationMethod:  props.AuthenticationMethod,
			AuthenticationData:    props.AuthenticationData,
			RequestProblemInfo:    props.RequestProblemInfo,
			RequestResponseInfo:   props.RequestResponseInfo,
			ReceiveMaximum:        props.ReceiveMaximum,
			TopicAliasMaximum:     props.TopicAliasMaximum,
			User:                  props.User,
			MaximumPacketSize:     props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}
	h.store.mu.Lock()
	h.store.clients[cl.ID] = c
	h.store.mu.Unlock()
}

func (h *storeHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if !expire || cl.StopCause() == packets.ErrSessionTakenOver {
		return
	}
	h.forgetClient(cl.ID)
}

func (h *storeHook) OnClientExpired(cl *mqtt.Client) { h.forgetClient(cl.ID) }

// forgetClient drops a client's session with its subscriptions and queue.
func (h *storeHook) forgetClient(id string) {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	delete(h.store.clients, id)
	for k, sub := range h.store.subs {
		if sub.Client == id {
			delete(h.store.subs, k)
		}
	}
	for k, m := range h.store.inflight {
		if m.Client == id {
			delete(h.store.inflight, k)
		}
	}
}

func (h *storeHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return // inline subscriptions are made again by the sim at each start
	}
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue // refused
		}
		h.store.subs[key(cl.ID, f.Filter)] = storage.Subscription{
			T: storage.SubscriptionKey, Client: cl.ID, Filter: f.Filter, Qos: codes[i],
			Identifier: f.Identifier, NoLocal: f.NoLocal, RetainHandling: f.RetainHandling,
			RetainAsPublished: f.RetainAsPublished,
		}
	}
}

func (h *storeHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	for _, f := range pk.Filters {
		delete(h.store.subs, key(cl.ID, f.Filter))
	}
}

// storedMessage converts a packet to mochi's storable form.
func storedMessage(client string, pk packets.Packet) storage.Message {
	props := pk.Properties.Copy(false)
	return storage.Message{
		Client: client, Origin: pk.Origin, FixedHeader: pk.FixedHeader,
		TopicName: pk.TopicName, Payload: pk.Payload, Created: pk.Created,
		PacketID: pk.PacketID,
		Properties: storage.MessageProperties{
			PayloadFormat:          props.PayloadFormat,
			PayloadFormatFlag:      props.PayloadFormatFlag,
			MessageExpiryInterval:  props.MessageExpiryInterval,
			ContentType:            props.ContentType,
			ResponseTopic:          props.ResponseTopic,
			CorrelationData:        props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier,
			TopicAlias:             props.TopicAlias,
			User:                   props.User,
		},
	}
}

func (h *storeHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	if r == -1 {
		delete(h.store.retained, pk.TopicName)
		return
	}
	m := storedMessage(cl.ID, pk)
	m.T = storage.RetainedKey
	h.store.retained[pk.TopicName] = m
}

func (h *storeHook) OnRetainedExpired(topic string) {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	delete(h.store.retained, topic)
}

func (h *storeHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if cl.Net.Inline {
		return
	}
	h.store.putInflight(cl.ID, pk, sent)
}

// putInflight stores an in-flight packet of client, replacing any under
// its packet id.
func (s *sessionStore) putInflight(client string, pk packets.Packet, sent int64) {
	m := storedMessage(client, pk)
	m.T = storage.InflightKey
	m.Sent = sent
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight[key(client, pk.FormatID())] = m
}

func (h *storeHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	delete(h.store.inflight, key(cl.ID, pk.FormatID()))
}

// OnQosDropped forgets a dropped in-flight message, except one dropped by
// a client whose session was just taken over: mochi copies the old
// client's in-flight messages to the new client, then clears the old
// client's, and the copies, still in flight under the same client id and
// packet ids, must stay stored. (A new client that starts clean takes
// nothing over: mochi clears the old client's messages before marking it
// taken over, and they are forgotten.)
func (h *storeHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return
	}
	h.OnQosComplete(cl, pk)
}

func (h *storeHook) StoredClients() ([]storage.Client, error) {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	var out []storage.Client
	for _, c := range h.store.clients {
		out = append(out, c)
	}
	return out, nil
}

func (h *storeHook) StoredSubscriptions() ([]storage.Subscription, error) {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	var out []storage.Subscription
	for _, s := range h.store.subs {
		out = append(out, s)
	}
	return out, nil
}

func (h *storeHook) StoredInflightMessages() ([]storage.Message, error) {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	var out []storage.Message
	for _, m := range h.store.inflight {
		out = append(out, m)
	}
	return out, nil
}

func (h *storeHook) StoredRetainedMessages() ([]storage.Message, error) {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	var out []storage.Message
	for _, m := range h.store.retained {
		out = append(out, m)
	}
	return out, nil
}
