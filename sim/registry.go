package sim

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// Host is what the sim knows about one host, learnt from its traffic.
type Host struct {
	ID string `json:"client_id"`

	// State is the state of the latest connection-status that counted:
	// "online", "offline", or "" when none has been seen.
	State           string          `json:"state"`
	CanonicalFacts  json.RawMessage `json:"canonical_facts,omitempty"`
	Dispatchers     json.RawMessage `json:"dispatchers,omitempty"`
	Tags            json.RawMessage `json:"tags,omitempty"`
	ClientName      string          `json:"client_name,omitempty"`
	ClientVersion   string          `json:"client_version,omitempty"`
	StatusMessageID string          `json:"status_message_id,omitempty"`
	StatusSent      time.Time       `json:"status_sent,omitzero"`
	StatusRetained  bool            `json:"status_retained,omitempty"`
	StatusWill      bool            `json:"status_will,omitempty"` // the latest status is the broker's publication of the host's will

	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"` // the latest message from the host

	Nacks []Nack `json:"nacks,omitempty"` // negative acknowledgements the host sent, oldest first

	history []int64 // seqs of the messages to and from the host, in the journal; the latest limit of them are its history
	queued  bool    // in registry.idle
	// ccFacts is CanonicalFacts as cloud-connector shapes them, worked out
	// once per status rather than once per listing.
	ccFacts json.RawMessage
	warned  bool // a value too large to keep was logged
}

// Online reports whether the latest connection-status says online.
func (h Host) Online() bool { return h.State == yggdrasil.StateOnline }

// Nack is a negative acknowledgement: a data message on data/out whose
// metadata carries yggdrasil-error, saying why the message it answers was
// not delivered.
type Nack struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	MessageID  string    `json:"message_id"`
	ResponseTo string    `json:"response_to"`
	Directive  string    `json:"directive"`
	Code       string    `json:"code"`
	Message    string    `json:"message"`
}

// What the registry keeps of a host is bounded, as the journal's messages
// are, whatever the host sends:
//
//   - maxHostValue bounds each raw value of a connection-status kept
//     (canonical facts, dispatchers, tags). yggd's are a few KiB; a larger
//     one is not kept (an online status stores none, an offline one keeps
//     the facts it had), with a warning once per host;
//   - maxStatusPayload is the largest connection-status read whole. A
//     larger one still counts (its state, ids and names are read), but its
//     raw values are not kept;
//   - maxNackPayload is the largest data message read for a nack: a
//     data/out message can be yggd's largest (32 MiB), and a nack is small;
//   - maxNackText bounds each text of a nack kept (up to the registry's
//     limit of them per host): a longer one is cut, ending in nackCut.
const (
	maxHostValue     = 64 << 10
	maxStatusPayload = 4 * maxHostValue
	maxNackPayload   = maxHostValue
	maxNackText      = 1 << 10
	nackCut          = "…(truncated)"
)

// DefaultForgetAfter is how long a host that is not online stays in the
// registry by default.
const DefaultForgetAfter = 24 * time.Hour

// registry holds the hosts, fed by every recorded message. Besides the
// map it keeps two sorted indexes, every host's id and the online hosts'
// ids, updated at each change, so that a listing neither sorts nor
// copies the hosts it does not return. Hosts that are not online are
// forgotten forgetAfter after the latest message they sent (or, for a
// host that never sent one, after the first message to it), as
// cloud-connector forgets a connection that went offline.
type registry struct {
	prefix      string
	limit       int
	log         *slog.Logger
	forgetAfter time.Duration    // <= 0: never forget
	now         func() time.Time // the clock of forgetting; time.Now

	mu     sync.Mutex
	hosts  map[string]*Host
	ids    []string    // every host's id, sorted
	online []string    // the online hosts' ids, sorted
	idle   []idleEntry // hosts that are not online, by when they went idle, oldest first
}

// idleEntry is a host that may be forgotten once at+forgetAfter has
// passed, unless it was seen again since (see sweep).
type idleEntry struct {
	id string
	at time.Time
}

func newRegistry(prefix string, limit int, log *slog.Logger) *registry {
	return &registry{prefix: prefix, limit: limit, log: log, hosts: map[string]*Host{},
		forgetAfter: DefaultForgetAfter, now: time.Now}
}

// statusPayload is a connection-status as hosts of every version send it;
// the parts the sim passes on are kept raw.
type statusPayload struct {
	Type      string    `json:"type"`
	MessageID string    `json:"message_id"`
	Sent      time.Time `json:"sent"`
	Content   struct {
		CanonicalFacts json.RawMessage `json:"canonical_facts"`
		Dispatchers    json.RawMessage `json:"dispatchers"`
		Tags           json.RawMessage `json:"tags"`
		ClientName     string          `json:"client_name"`
		ClientVersion  string          `json:"client_version"`
		State          string          `json:"state"`
	} `json:"content"`
}

// observe updates the host a message is to or from.
func (r *registry) observe(m Message) {
	if m.Host == "" || (m.Kind != yggdrasil.KindControl && m.Kind != yggdrasil.KindData) {
		return
	}
	if len(m.Payload) == 0 {
		return // a retained message being cleared, or 0.1.x's throwaway publish
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep()
	h := r.hosts[m.Host]
	if h == nil {
		h = &Host{ID: m.Host, FirstSeen: m.Time}
		r.hosts[m.Host] = h
		r.ids = insertSorted(r.ids, h.ID)
	}
	wasOnline := h.Online()
	defer r.indexed(h, wasOnline)
	h.history = append(h.history, m.Seq)
	if len(h.history) >= 2*r.limit { // amortised O(1)
		h.history = append(h.history[:0], h.history[len(h.history)-r.limit:]...)
	}
	if m.Dir != yggdrasil.DirOut {
		return
	}
	h.LastSeen = m.Time
	switch {
	case m.Kind == yggdrasil.KindControl && m.Type == yggdrasil.TypeConnectionStatus:
		r.status(h, m)
	case m.Kind == yggdrasil.KindData && m.Type == yggdrasil.TypeData:
		r.data(h, m)
	}
}

// statusHead is a connection-status without its raw values, for one too
// large to read whole (see maxStatusPayload).
type statusHead struct {
	MessageID string    `json:"message_id"`
	Sent      time.Time `json:"sent"`
	Content   struct {
		ClientName    string `json:"client_name"`
		ClientVersion string `json:"client_version"`
		State         string `json:"state"`
	} `json:"content"`
}

// decodeStatus decodes a connection-status, but for raw values that are
// not kept (see maxHostValue); too reports whether one was dropped.
func decodeStatus(payload []byte) (st statusPayload, too bool, err error) {
	if len(payload) > maxStatusPayload {
		var head statusHead
		if err := json.Unmarshal(payload, &head); err != nil {
			return st, false, err
		}
		st.MessageID, st.Sent = head.MessageID, head.Sent
		st.Content.ClientName, st.Content.ClientVersion = head.Content.ClientName, head.Content.ClientVersion
		st.Content.State = head.Content.State
		return st, true, nil
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return st, false, err
	}
	for _, v := range []*json.RawMessage{&st.Content.CanonicalFacts, &st.Content.Dispatchers, &st.Content.Tags} {
		if len(*v) > maxHostValue {
			*v, too = nil, true
		}
	}
	st.Content.ClientName = cut(st.Content.ClientName, maxNackText)
	st.Content.ClientVersion = cut(st.Content.ClientVersion, maxNackText)
	return st, too, nil
}

// cut returns s cut to at most n bytes, ending in nackCut when cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = strings.ToValidUTF8(s[:n-len(nackCut)], "")
	return s + nackCut
}

// status applies a connection-status. Like cloud-connector, an offline
// status always counts (a 0.1.x will carries the time yggd started), and an
// online status counts unless it repeats the latest one (a retained status
// delivered again) or is older than it.
func (r *registry) status(h *Host, m Message) {
	st, too, err := decodeStatus(m.Payload)
	if err != nil {
		r.log.Warn("host sent a connection-status that does not decode", "host", h.ID, "seq", m.Seq, "error", err)
		return
	}
	if too && !h.warned {
		h.warned = true
		r.log.Warn("host sent a connection-status value too large to keep",
			"host", h.ID, "seq", m.Seq, "size", len(m.Payload), "max_value", maxHostValue)
	}
	switch st.Content.State {
	case yggdrasil.StateOffline:
	case yggdrasil.StateOnline:
		if st.MessageID != "" && st.MessageID == h.StatusMessageID {
			return
		}
		if h.State == yggdrasil.StateOnline && st.Sent.Before(h.StatusSent) {
			r.log.Info("ignoring an online status older than the latest", "host", h.ID, "seq", m.Seq, "sent", st.Sent, "latest", h.StatusSent)
			return
		}
	default:
		r.log.Warn("host sent a connection-status with an unknown state", "host", h.ID, "seq", m.Seq, "state", st.Content.State)
		return
	}
	h.State = st.Content.State
	h.StatusMessageID, h.StatusSent = st.MessageID, st.Sent
	h.StatusRetained, h.StatusWill = m.Retain, m.Will
	if st.Content.State == yggdrasil.StateOnline || !isEmptyFacts(st.Content.CanonicalFacts) {
		h.CanonicalFacts = st.Content.CanonicalFacts
		h.ccFacts = canonicalFacts(h.CanonicalFacts)
	}
	if st.Content.State == yggdrasil.StateOnline {
		h.Dispatchers, h.Tags = st.Content.Dispatchers, st.Content.Tags
		h.ClientName, h.ClientVersion = st.Content.ClientName, st.Content.ClientVersion
	}
	r.log.Info("host "+h.State, "host", h.ID, "seq", m.Seq, "retained", m.Retain, "will", m.Will)
}

// isEmptyFacts reports whether facts carry no value, as in a 0.1.x will:
// an offline status must not wipe the facts of the online one.
func isEmptyFacts(raw json.RawMessage) bool {
	var f map[string]any
	if json.Unmarshal(raw, &f) != nil {
		return true
	}
	for _, v := range f {
		switch v := v.(type) {
		case nil:
		case string:
			if v != "" {
				return false
			}
		case []any:
			if len(v) > 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// data records a negative acknowledgement.
func (r *registry) data(h *Host, m Message) {
	if len(m.Payload) > maxNackPayload {
		if !h.warned && bytes.Contains(m.Payload, []byte(yggdrasil.MetadataError)) {
			h.warned = true
			r.log.Warn("host sent a data message too large to read for a nack", "host", h.ID, "seq", m.Seq, "size", len(m.Payload))
		}
		return
	}
	var d yggdrasil.Data
	if json.Unmarshal(m.Payload, &d) != nil {
		return
	}
	code, ok := d.Metadata[yggdrasil.MetadataError]
	if !ok {
		return
	}
	n := Nack{Seq: m.Seq, Time: m.Time, MessageID: d.MessageID, ResponseTo: d.ResponseTo, Directive: d.Directive, Code: code}
	var body struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(d.Content, &body) == nil {
		n.Message = body.Message
		if n.Code == "" {
			n.Code = body.Error
		}
	}
	for _, t := range []*string{&n.MessageID, &n.ResponseTo, &n.Directive, &n.Code, &n.Message} {
		*t = cut(*t, maxNackText)
	}
	h.Nacks = append(h.Nacks, n)
	if len(h.Nacks) > r.limit {
		h.Nacks = append(h.Nacks[:0:0], h.Nacks[len(h.Nacks)-r.limit:]...)
	}
	r.log.Info("host refused a message", "host", h.ID, "response_to", d.ResponseTo, "code", n.Code, "message", n.Message)
}

// indexed brings the indexes up to date after a message for h: the
// online index when it came online or left, the idle queue when it is not
// online and not queued yet. r.mu is held.
func (r *registry) indexed(h *Host, wasOnline bool) {
	switch online := h.Online(); {
	case online && !wasOnline:
		r.online = insertSorted(r.online, h.ID)
	case !online && wasOnline:
		r.online = deleteSorted(r.online, h.ID)
	}
	if !h.Online() && !h.queued {
		h.queued = true
		r.queueIdle(h.ID, h.idleSince())
	}
}

// queueIdle adds id to the idle queue, in the order of the times (at the
// end, but for messages recorded out of order). r.mu is held.
func (r *registry) queueIdle(id string, at time.Time) {
	i, _ := slices.BinarySearchFunc(r.idle, at, func(e idleEntry, t time.Time) int { return e.at.Compare(t) })
	for i < len(r.idle) && !r.idle[i].at.After(at) {
		i++ // after the entries of the same time
	}
	r.idle = slices.Insert(r.idle, i, idleEntry{id, at})
}

// idleSince is when h last sent a message, or when the sim first heard
// of it if it never sent one.
func (h *Host) idleSince() time.Time {
	if h.LastSeen.IsZero() {
		return h.FirstSeen
	}
	return h.LastSeen
}

// sweep forgets the hosts that have not been online for forgetAfter. It
// looks at the oldest idle entries only, so it costs nothing when there
// is nothing to forget: an entry whose host came online is dropped, one
// whose host was seen again since goes back in the queue at its new
// time, and the first entry that is not due yet ends the sweep. r.mu is
// held.
func (r *registry) sweep() {
	if r.forgetAfter <= 0 {
		return
	}
	now := r.now()
	for len(r.idle) > 0 {
		e := r.idle[0]
		h := r.hosts[e.id]
		if h == nil || h.Online() {
			r.idle = r.idle[1:]
			if h != nil {
				h.queued = false
			}
			continue
		}
		if since := h.idleSince(); since.After(e.at) {
			r.idle = r.idle[1:]
			r.queueIdle(e.id, since)
			continue
		}
		if now.Sub(e.at) <= r.forgetAfter {
			return
		}
		r.idle = r.idle[1:]
		delete(r.hosts, e.id)
		r.ids = deleteSorted(r.ids, e.id)
		r.log.Info("host forgotten", "host", e.id, "state", h.State, "idle_since", e.at, "forget_after", r.forgetAfter)
	}
}

func insertSorted(ids []string, id string) []string {
	i, found := slices.BinarySearch(ids, id)
	if found {
		return ids
	}
	return slices.Insert(ids, i, id)
}

func deleteSorted(ids []string, id string) []string {
	i, found := slices.BinarySearch(ids, id)
	if !found {
		return ids
	}
	return slices.Delete(ids, i, i+1)
}

func (r *registry) host(id string) (Host, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep()
	h, ok := r.hosts[id]
	if !ok {
		return Host{}, false
	}
	return h.copy(), true
}

// list returns every host, sorted by id.
func (r *registry) list() []Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep()
	out := make([]Host, 0, len(r.ids))
	for _, id := range r.ids {
		out = append(out, r.hosts[id].copy())
	}
	return out
}

// onlineCount returns how many hosts are online.
func (r *registry) onlineCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep()
	return len(r.online)
}

// onlinePage returns the online hosts from index from up to index to in
// the order of their ids, copying only those (the indexes are clamped).
func (r *registry) onlinePage(from, to int) []Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep()
	to = min(to, len(r.online))
	from = min(from, to)
	out := make([]Host, 0, to-from)
	for _, id := range r.online[from:to] {
		out = append(out, r.hosts[id].copy())
	}
	return out
}

// onlineIDs returns the ids of the online hosts from index from up to
// index to, sorted (the indexes are clamped).
func (r *registry) onlineIDs(from, to int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep()
	to = min(to, len(r.online))
	from = min(from, to)
	return append(make([]string, 0, to-from), r.online[from:to]...)
}

// history returns the sequence numbers of the latest messages (at most the
// limit) to and from host id, oldest first. The messages themselves are in
// the journal, as long as it holds them: the history shares its storage
// and its bounds.
func (r *registry) history(id string) ([]int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep()
	h, ok := r.hosts[id]
	if !ok {
		return nil, false
	}
	return append([]int64(nil), h.history[max(0, len(h.history)-r.limit):]...), true
}

func (h *Host) copy() Host {
	c := *h
	c.Nacks = append([]Nack(nil), h.Nacks...)
	c.history = nil
	return c
}
