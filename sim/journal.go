package sim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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

	// Truncated is the size of a payload too large for the journal's
	// byte bound on its own, which the journal did not keep (Payload is
	// then empty).
	Truncated int
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
	Truncated     int             `json:"truncated,omitempty"`
}

// MarshalJSON writes the API form of m.
func (m Message) MarshalJSON() ([]byte, error) {
	j := messageJSON{Seq: m.Seq, Time: m.Time, Topic: m.Topic, From: m.From, QoS: m.QoS,
		Retain: m.Retain, Will: m.Will, Dup: m.Dup, Host: m.Host, Kind: m.Kind, Dir: m.Dir,
		Type: m.Type, MessageID: m.MessageID, ResponseTo: m.ResponseTo, Truncated: m.Truncated}
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
		Type: j.Type, MessageID: j.MessageID, ResponseTo: j.ResponseTo, Truncated: j.Truncated}
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
	if m.Truncated > 0 {
		fmt.Fprintf(&b, " (payload of %d bytes not kept)", m.Truncated)
	}
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

// Journal bounds, the defaults of Server.JournalLimit and
// Server.JournalMaxBytes.
const (
	DefaultJournalLimit    = 100_000
	DefaultJournalMaxBytes = 64 << 20
)

// entryOverhead is what an entry costs beside its payload, its strings and
// its encoding: the entry and the ring slot (measured: about 300 bytes on
// amd64, rounded up).
const entryOverhead = 320

// entry is one message held by the journal, with its API encoding, made
// once by the first reader and shared by every later one.
type entry struct {
	msg  Message
	once sync.Once
	enc  []byte

	counted atomic.Bool // enc is in size; set under the journal's lock

	// Guarded by the journal's lock.
	size int64 // bytes counted against the journal's bound
	held bool  // still in the ring
}

func (e *entry) json() []byte {
	e.once.Do(func() {
		b, err := json.Marshal(e.msg)
		if err != nil { // cannot happen: every field encodes
			b = fmt.Appendf(nil, `{"seq":%d,"topic":%q}`, e.msg.Seq, e.msg.Topic)
		}
		e.enc = b
	})
	return e.enc
}

func (m *Message) footprint() int64 {
	return int64(entryOverhead + len(m.Payload) + len(m.Topic) + len(m.From) + len(m.Host) + len(m.Kind) +
		len(m.Dir) + len(m.Type) + len(m.MessageID) + len(m.ResponseTo))
}

// maxSeqDigits is the most digits of a sequence number, which the journal
// stamps after deciding whether a message fits.
const maxSeqDigits = 19

// fits reports whether m, with its API encoding, fits a journal of
// maxBytes on its own. The raw size is not enough: encoding/json writes
// <, >, & and control characters as \u00XX, six bytes for one (a payload
// of 1 MiB of "<" encodes to 6 MiB).
func (m *Message) fits(maxBytes int64) bool {
	return m.footprint()+m.encodedBound() <= maxBytes
}

// encodedBound is at least the size of m's API encoding, found in one pass
// over the payload without encoding it: each byte that encoding/json
// escapes is counted at its escaped size; a payload that is not UTF-8 is
// base64 (4/3); the other strings are counted at six bytes a byte.
func (m *Message) encodedBound() int64 {
	n := int64(len(m.Payload))
	strs := int64(len(m.Topic) + len(m.From) + len(m.Host) + len(m.Kind) + len(m.Dir) +
		len(m.Type) + len(m.MessageID) + len(m.ResponseTo))
	bound := 6*strs + entryOverhead + maxSeqDigits
	if !utf8.Valid(m.Payload) && !json.Valid(m.Payload) {
		// base64, quoted (JSON that is not UTF-8 is written as is, escaped)
		return bound + (n+2)/3*4 + 2
	}
	text := n + 2 // quoted
	for _, c := range m.Payload {
		switch {
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			text += 5 // \u00XX
		case c == '"' || c == '\\':
			text++
		case c == 0xE2:
			text += 3 // U+2028 and U+2029 (3 bytes) are written as \u2028
		}
	}
	return bound + text
}

// journal is the bounded, ordered record of every publish: a ring of
// entries that drops the oldest when it holds more than limit messages or
// more than maxBytes (payloads, encodings and overhead). Appends cost O(1);
// sequence numbers are contiguous, so a message is found by its sequence
// in O(1) too. Waiters block on a channel that is closed (and replaced) at
// each append.
type journal struct {
	limit    int
	maxBytes int64

	mu      sync.Mutex
	ring    []*entry // grows by doubling up to limit
	head    int      // index of the oldest entry
	n       int      // entries held
	bytes   int64    // their footprint
	next    int64    // seq of the next message
	dropped int64    // messages dropped to keep the bound
	notify  chan struct{}
}

func newJournal(limit int, maxBytes int64) *journal {
	if limit <= 0 {
		limit = DefaultJournalLimit
	}
	if maxBytes <= 0 {
		maxBytes = DefaultJournalMaxBytes
	}
	return &journal{next: 1, limit: limit, maxBytes: maxBytes, notify: make(chan struct{})}
}

// add stamps m with the next sequence number, stores it, lets observe see
// it, and then wakes waiters: a waiter woken by m sees what observe did
// with it. Lock order: the journal's lock, then observe's.
func (j *journal) add(m Message, observe func(Message)) Message {
	e := &entry{msg: m, held: true}
	e.size = e.msg.footprint()
	if !e.msg.fits(j.maxBytes) {
		// Alone beyond the bound: keep the message, not its payload.
		e.msg.Truncated = len(e.msg.Payload)
		e.msg.Payload = nil
		e.size = e.msg.footprint()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	m.Seq, e.msg.Seq = j.next, j.next
	if observe != nil {
		observe(m) // with its payload, even one not kept
	}
	j.next++
	if j.n == len(j.ring) {
		if len(j.ring) < j.limit {
			j.grow()
		} else {
			j.drop()
		}
	}
	j.ring[(j.head+j.n)%len(j.ring)] = e
	j.n++
	j.bytes += e.size
	j.trim()
	close(j.notify)
	j.notify = make(chan struct{})
	return e.msg
}

// grow doubles the ring (up to limit), keeping the order.
func (j *journal) grow() {
	size := min(max(2*len(j.ring), 64), j.limit)
	ring := make([]*entry, size)
	for i := range j.n {
		ring[i] = j.ring[(j.head+i)%len(j.ring)]
	}
	j.ring, j.head = ring, 0
}

// drop removes the oldest entry.
func (j *journal) drop() {
	e := j.ring[j.head]
	j.ring[j.head] = nil
	e.held = false
	j.bytes -= e.size
	j.head = (j.head + 1) % len(j.ring)
	j.n--
	j.dropped++
}

// trim drops the oldest entries while the journal holds too many bytes,
// keeping at least the newest.
func (j *journal) trim() {
	for j.bytes > j.maxBytes && j.n > 1 {
		j.drop()
	}
}

// oldest returns the seq of the oldest message held; next when none is.
func (j *journal) oldest() int64 { return j.next - int64(j.n) }

// at returns the entry of seq, nil when it is not held.
func (j *journal) at(seq int64) *entry {
	i := seq - j.oldest()
	if i < 0 || i >= int64(j.n) {
		return nil
	}
	return j.ring[(j.head+int(i))%len(j.ring)]
}

// encoded returns e's encoding, counting it against the bound the first
// time while e is held.
func (j *journal) encoded(e *entry) []byte {
	b := e.json()
	if e.counted.Load() {
		return b // the common case, without the lock: every reader after the first
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if e.held && !e.counted.Load() {
		e.counted.Store(true)
		e.size += int64(len(b))
		j.bytes += int64(len(b))
		j.trim()
	}
	return b
}

// window is a read of the journal: the entries after a sequence number.
type window struct {
	entries []*entry
	oldest  int64 // the oldest seq held
	last    int64 // the latest seq recorded, 0 if none
	missed  int64 // messages after the requested seq that were dropped before this read
	// reset is true when the requested seq is beyond the latest recorded:
	// the reader knew another journal (the sim restarted), and the window
	// starts at the oldest message held.
	reset   bool
	changed <-chan struct{}
}

// read returns at most limit entries (all when limit <= 0) whose Seq is
// greater than seq, and a channel closed at the next append. A seq beyond
// the latest recorded reads from the oldest held, with reset set.
func (j *journal) read(seq int64, limit int) window {
	j.mu.Lock()
	defer j.mu.Unlock()
	w := window{oldest: j.oldest(), last: j.next - 1, changed: j.notify}
	if seq > w.last {
		w.reset, seq = true, w.oldest-1
	}
	from := seq + 1 // seq <= last: cannot overflow
	if from < w.oldest {
		w.missed = w.oldest - from
		from = w.oldest
	}
	count := j.next - from
	if count < 0 {
		count = 0
	}
	if limit > 0 && count > int64(limit) {
		count = int64(limit)
	}
	w.entries = make([]*entry, count)
	for i := range w.entries {
		w.entries[i] = j.at(from + int64(i))
	}
	return w
}

// lookup returns the entries of seqs still held, in the order given.
func (j *journal) lookup(seqs []int64) []*entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]*entry, 0, len(seqs))
	for _, seq := range seqs {
		if e := j.at(seq); e != nil {
			out = append(out, e)
		}
	}
	return out
}

// since returns the messages whose Seq is greater than seq, and a channel
// closed at the next append.
func (j *journal) since(seq int64) ([]Message, <-chan struct{}) {
	w := j.read(seq, 0)
	return messagesOf(w.entries), w.changed
}

func messagesOf(es []*entry) []Message {
	out := make([]Message, len(es))
	for i, e := range es {
		out[i] = e.msg
	}
	return out
}

// last returns the Seq of the latest message, 0 if none.
func (j *journal) last() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.next - 1
}

// JournalStats is what the journal holds.
type JournalStats struct {
	Messages int   `json:"messages"`
	Bytes    int64 `json:"bytes"` // payloads, encodings and per-message overhead
	Oldest   int64 `json:"oldest_seq"`
	Last     int64 `json:"last_seq"`
	Dropped  int64 `json:"dropped"` // messages dropped to keep the bounds
	Limit    int   `json:"limit"`
	MaxBytes int64 `json:"max_bytes"`
}

func (j *journal) stats() JournalStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return JournalStats{Messages: j.n, Bytes: j.bytes, Oldest: j.oldest(), Last: j.next - 1,
		Dropped: j.dropped, Limit: j.limit, MaxBytes: j.maxBytes}
}

// awaitBatch is how many entries await takes from the journal at a time.
const awaitBatch = 1000

// await calls visit on every message after seq, in order, as they arrive,
// until visit returns true or ctx ends. Messages dropped before visit could
// see them are skipped.
func (j *journal) await(ctx context.Context, seq int64, visit func(Message) bool) error {
	for {
		w := j.read(seq, awaitBatch)
		for _, e := range w.entries {
			if visit(e.msg) {
				return nil
			}
			seq = e.msg.Seq
		}
		if len(w.entries) == awaitBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.changed:
		}
	}
}
