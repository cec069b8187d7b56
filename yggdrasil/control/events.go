package control

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Event kinds, as Event.Kind reports them.
const (
	EventReceived   = "received"   // a data message arrived (from the cloud, or a local dispatch)
	EventDuplicate  = "duplicate"  // a redelivery was dropped
	EventDelivered  = "delivered"  // its worker took it
	EventAnswered   = "answered"   // a worker answered it
	EventRejected   = "rejected"   // it was answered with a negative acknowledgement
	EventWorker     = "worker"     // a worker changed state
	EventConnection = "connection" // the connection changed state
	EventDropped    = "dropped"    // this watcher fell behind: Count events were not sent to it
)

// Event is one line of GET /v1/events (and of ygg listen --format json).
// Fields are added, never renamed or removed, while Version stays 1.
type Event struct {
	Time       time.Time   `json:"time"`
	Kind       string      `json:"kind"`
	MessageID  string      `json:"message_id,omitempty"`  // the message's; of an answer, the answer's own
	ResponseTo string      `json:"response_to,omitempty"` // of an answer: the message it answers
	Directive  string      `json:"directive,omitempty"`
	Local      bool        `json:"local,omitempty"` // a local dispatch (ygg dispatch), not the cloud's
	PID        int         `json:"pid,omitempty"`   // of the worker that took it
	Code       string      `json:"code,omitempty"`  // of a rejection
	Error      string      `json:"error,omitempty"` // of a rejection
	Worker     *Worker     `json:"worker,omitempty"`
	Connection *Connection `json:"connection,omitempty"`
	Count      int         `json:"count,omitempty"` // of a dropped event
}

// Events fans events out to the watchers of GET /v1/events and keeps the
// last HistorySize of them for those who ask for what just happened. A
// watcher that falls behind loses events rather than slow yggd down: it is
// told how many with an EventDropped.
type Events struct {
	watchers atomic.Int32

	mu      sync.Mutex
	subs    map[*watcher]struct{}
	history []Event // ring of the last HistorySize events
	next    int     // where the next event goes in history
	full    bool    // history has wrapped
}

// HistorySize is how many past events Events keeps.
const HistorySize = 256

// watchBuffer is how many events a watcher may be behind before it loses
// some.
const watchBuffer = 1024

type watcher struct {
	c       chan Event
	dropped int // under Events.mu
}

// NewEvents returns an empty event hub.
func NewEvents() *Events {
	return &Events{subs: map[*watcher]struct{}{}, history: make([]Event, HistorySize)}
}

// Watchers returns how many watchers follow the events.
func (e *Events) Watchers() int { return int(e.watchers.Load()) }

// Publish records ev (its Time set if zero) and sends it to every
// watcher. It never blocks.
func (e *Events) Publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.history[e.next] = ev
	e.next = (e.next + 1) % len(e.history)
	e.full = e.full || e.next == 0
	for w := range e.subs {
		if w.dropped > 0 {
			select {
			case w.c <- Event{Time: ev.Time, Kind: EventDropped, Count: w.dropped}:
				w.dropped = 0
			default:
				w.dropped++
				continue
			}
		}
		select {
		case w.c <- ev:
		default:
			w.dropped++
		}
	}
}

// Watch returns the last n past events (at most HistorySize), a channel
// of the events from now on, and the function that stops the watch, which
// the caller must call.
func (e *Events) Watch(n int) (past []Event, events <-chan Event, stop func()) {
	w := &watcher{c: make(chan Event, watchBuffer)}
	e.mu.Lock()
	past = e.last(n)
	e.subs[w] = struct{}{}
	e.watchers.Add(1)
	e.mu.Unlock()
	var once sync.Once
	return past, w.c, func() {
		once.Do(func() {
			e.mu.Lock()
			delete(e.subs, w)
			e.watchers.Add(-1)
			e.mu.Unlock()
		})
	}
}

// last returns the last n events of the history, oldest first.
func (e *Events) last(n int) []Event {
	size := e.next
	if e.full {
		size = len(e.history)
	}
	n = min(max(n, 0), size)
	out := make([]Event, 0, n)
	for i := n; i > 0; i-- {
		out = append(out, e.history[(e.next-i+len(e.history))%len(e.history)])
	}
	return out
}

// events serves GET /v1/events[?last=N][&follow=false]: the last N past
// events, then (unless follow is false) the events as they happen, one
// JSON object a line, until the client leaves or yggd stops.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Events == nil {
		writeJSON(w, http.StatusNotImplemented, Error{"this yggd serves no events"})
		return
	}
	last := 0
	if v := r.URL.Query().Get("last"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, Error{fmt.Sprintf("last: %q is not a count", v)})
			return
		}
		last = n
	}
	follow := true
	if v := r.URL.Query().Get("follow"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, Error{fmt.Sprintf("follow: %q is not true or false", v)})
			return
		}
		follow = f
	}
	past, events, stop := s.cfg.Events.Watch(last)
	defer stop()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flush := http.NewResponseController(w).Flush
	for _, ev := range past {
		if enc.Encode(ev) != nil {
			return
		}
	}
	if flush() != nil || !follow {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-events:
			if enc.Encode(ev) != nil || flush() != nil {
				return
			}
		}
	}
}
