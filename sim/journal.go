package sim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Message is one publish seen by the sim: sent by a host, by the sim itself
// (the cloud side) or, with an external broker, by anybody.
type Message struct {
	Seq    int64     // order of arrival, from 1
	Time   time.Time // when the sim saw it
	Topic  string
	From   string // client id of the publisher; "" for the sim itself or when unknown
	QoS    byte
	Retain bool
	Will   bool // published by the broker as a client's last will
	Dup    bool // the publisher marked it as a redelivery (MQTT DUP flag)

	// Host, Kind and Dir are read from a <prefix>/<host>/<kind>/<dir>
	// topic; they are empty for other topics.
	Host, Kind, Dir string

	// Type, MessageID and ResponseTo are read from the payload's envelope
	// when it is a JSON object; empty otherwise.
	Type, MessageID, ResponseTo string

	Payload []byte
}

// messageJSON is the wire form of a Message in the API. The payload is
// "payload" (raw JSON) when it is valid JSON, otherwise "payload_text"
// (UTF-8) or "payload_base64".
type messageJSON struct {
	Seq           int64           `json:"seq"`
	Time          time.Time       `json:"time"`
	Topic         string          `json:"topic"`
	From          string          `json:"from,omitempty"`
	QoS           byte            `json:"qos"`
	Retain        bool            `json:"retain,omitempty"`
	Will          bool            `json:"will,omitempty"`
	Dup           bool            `json:"dup,omitempty"`
	Host          string          `json:"host,omitempty"`
	Kind          string          `json:"kind,omitempty"`
	Dir           string          `json:"dir,omitempty"`
	Type          string          `json:"type,omitempty"`
	MessageID     string          `json:"message_id,omitempty"`
	ResponseTo    string          `json:"response_to,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadText   *string         `json:"payload_text,omitempty"`
	PayloadBase64 string          `json:"payload_base64,omitempty"`
}

// MarshalJSON writes the API form of m.
func (m Message) MarshalJSON() ([]byte, error) {
	j := messageJSON{Seq: m.Seq, Time: m.Time, Topic: m.Topic, From: m.From, QoS: m.QoS,
		Retain: m.Retain, Will: m.Will, Dup: m.Dup, Host: m.Host, Kind: m.Kind, Dir: m.Dir,
		Type: m.Type, MessageID: m.MessageID, ResponseTo: m.ResponseTo}
	switch {
	case len(m.Payload) > 0 && json.Valid(m.Payload):
		j.Payload = m.Payload
	case utf8.Valid(m.Payload):
		s := string(m.Payload)
		j.PayloadText = &s
	default:
		j.PayloadBase64 = base64.StdEncoding.EncodeToString(m.Payload)
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the API form of a Message.
func (m *Message) UnmarshalJSON(b []byte) error {
	var j messageJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = Message{Seq: j.Seq, Time: j.Time, Topic: j.Topic, From: j.From, QoS: j.QoS,
		Retain: j.Retain, Will: j.Will, Dup: j.Dup, Host: j.Host, Kind: j.Kind, Dir: j.Dir,
		Type: j.Type, MessageID: j.MessageID, ResponseTo: j.ResponseTo}
	switch {
	case j.Payload != nil:
		m.Payload = []byte(j.Payload)
	case j.PayloadText != nil:
		m.Payload = []byte(*j.PayloadText)
	case j.PayloadBase64 != "":
		p, err := base64.StdEncoding.DecodeString(j.PayloadBase64)
		if err != nil {
			return fmt.Errorf("decode payload_base64: %w", err)
		}
		m.Payload = p
	}
	return nil
}

// String is a one-line summary for logs and the watch command.
func (m Message) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s qos=%d", m.Seq, m.Topic, m.QoS)
	if m.Retain {
		b.WriteString(" retained")
	}
	if m.Will {
		b.WriteString(" will")
	}
	if m.Dup {
		b.WriteString(" dup")
	}
	if m.From != "" {
		fmt.Fprintf(&b, " from=%s", m.From)
	}
	fmt.Fprintf(&b, " %d bytes", len(m.Payload))
	return b.String()
}

// newMessage fills in the fields derived from the topic and the payload.
func newMessage(prefix, topic string, payload []byte) Message {
	m := Message{Topic: topic, Payload: payload, Time: time.Now()}
	m.Host, m.Kind, m.Dir, _ = SplitTopic(prefix, topic)
	var env struct {
		Type       string `json:"type"`
		MessageID  string `json:"message_id"`
		ResponseTo string `json:"response_to"`
	}
	if json.Unmarshal(payload, &env) == nil {
		m.Type, m.MessageID, m.ResponseTo = env.Type, env.MessageID, env.ResponseTo
	}
	return m
}

// SplitTopic splits <prefix>/<host>/<kind>/<dir>. ok is false for any other
// shape, including wildcards in the host segment.
func SplitTopic(prefix, topic string) (host, kind, dir string, ok bool) {
	rest, found := strings.CutPrefix(topic, prefix+"/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[0] == "+" || parts[0] == "#" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// journal is the bounded, ordered record of every publish. Waiters block on
// a channel that is closed (and replaced) at each append.
type journal struct {
	mu     sync.Mutex
	msgs   []Message
	next   int64 // seq of the next message
	limit  int
	notify chan struct{}
}

func newJournal(limit int) *journal {
	return &journal{next: 1, limit: limit, notify: make(chan struct{})}
}

// add stamps m with the next sequence number, stores it, lets observe see
// it, and then wakes waiters: a waiter woken by m sees what observe did
// with it. Lock order: the journal's lock, then observe's.
func (j *journal) add(m Message, observe func(Message)) Message {
	j.mu.Lock()
	defer j.mu.Unlock()
	m.Seq = j.next
	if observe != nil {
		observe(m)
	}
	j.next++
	j.msgs = append(j.msgs, m)
	if j.limit > 0 && len(j.msgs) > j.limit {
		drop := len(j.msgs) - j.limit
		j.msgs = append(j.msgs[:0:0], j.msgs[drop:]...)
	}
	close(j.notify)
	j.notify = make(chan struct{})
	return m
}

// since returns the messages whose Seq is greater than seq, and a channel
// closed at the next append.
func (j *journal) since(seq int64) ([]Message, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := len(j.msgs)
	for i > 0 && j.msgs[i-1].Seq > seq {
		i--
	}
	return append([]Message(nil), j.msgs[i:]...), j.notify
}

// last returns the Seq of the latest message, 0 if none.
func (j *journal) last() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.next - 1
}

// await calls visit on every message after seq, in order, as they arrive,
// until visit returns true or ctx ends.
func (j *journal) await(ctx context.Context, seq int64, visit func(Message) bool) error {
	for {
		msgs, changed := j.since(seq)
		for _, m := range msgs {
			if visit(m) {
				return nil
			}
			seq = m.Seq
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
