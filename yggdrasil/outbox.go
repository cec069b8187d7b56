package yggdrasil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/journal"
)

// Publisher is what the outbox needs from the broker connection.
type Publisher interface {
	// Publish sends payload at QoS 1 and returns once the broker has
	// acknowledged it.
	Publish(ctx context.Context, topic string, payload []byte, retained bool) error
	// WaitConnected returns once there is a connection to publish on.
	WaitConnected(ctx context.Context) error
}

// AsyncPublisher is a Publisher that can have several publishes in
// flight. The outbox uses it when the transport implements it, to keep a
// window of unacknowledged messages on the wire instead of waiting for
// each acknowledgement in turn.
type AsyncPublisher interface {
	Publisher
	// PublishAsync hands payload to the connection at QoS 1 and returns at
	// once. Calls are sent in order. It fails at once when there is no
	// connection.
	PublishAsync(topic string, payload []byte, retained bool) (Pending, error)
}

// Pending is a publish awaiting the broker's acknowledgement.
type Pending interface {
	// Acked is closed when the broker has answered; Err then tells
	// whether the publish succeeded.
	Acked() <-chan struct{}
	// Lost is closed when the connection the publish went out on has
	// ended: the acknowledgement will never come.
	Lost() <-chan struct{}
	Err() error
}

// With an AsyncPublisher the outbox keeps up to OutboxWindow messages and
// OutboxWindowBytes bytes in flight (sent, not yet acknowledged), and
// always at least one: each is in memory until acknowledged, so the bytes
// bound what a backlog of large answers costs (8 answers of 32 MiB sent
// all at once took yggd from 280 to 373 MiB resident).
const (
	OutboxWindow      = 256
	OutboxWindowBytes = 4 << 20
)

// Outbox is the ordered queue of answers to the cloud's data/out topic,
// kept in the journal: Put returns once the answer is on disk, so an
// answer a worker has been told is taken survives a crash of yggd; Run
// publishes in order, up to OutboxWindow answers in flight when the
// transport allows it (else one after the other), and keeps an answer
// until the broker has acknowledged it and every one before it, so what is
// produced during an outage, or before a crash, is sent after
// reconnecting: after a failure, Run sends again from the first answer not
// acknowledged. Past the journal's bounds the oldest answers are dropped,
// counted and logged.
//
// An answer put while the outbox is caught up (every earlier answer is on
// the wire, and the window has room) is published by Put itself, from
// memory, rather than by Run's goroutine reading it back from the journal:
// at one message in flight that takes a goroutine switch and a read off
// the round trip. Both publish under one lock, in seq order.
type Outbox struct {
	j    *journal.Journal
	log  *slog.Logger
	wake chan struct{} // capacity 1: something was put

	// mu orders the publishes of Put and of the pump, and guards what
	// they share: the answers on the wire on this connection.
	mu       sync.Mutex
	direct   AsyncPublisher // Run's publisher, while Run pumps; else nil
	inflight []flight       // oldest first
	sent     uint64         // seq of the last answer sent on this connection
	bytes    int            // of the answers in flight
}

// outMsg is a queued answer.
type outMsg struct {
	seq     uint64
	topic   string
	payload []byte
}

// NewOutbox returns the outbox kept in j.
func NewOutbox(j *journal.Journal, log *slog.Logger) *Outbox {
	return &Outbox{j: j, log: orDiscard(log), wake: make(chan struct{}, 1)}
}

// Put writes payload for topic to the journal and returns once it is
// there. id is the answer's message id, for logs; responseTo, when not
// empty, the inbound message it answers, which the same write settles as
// effect says.
func (o *Outbox) Put(ctx context.Context, topic, id, responseTo string, effect journal.Effect, payload []byte) error {
	seq, dropped, err := o.j.AppendAnswer(ctx, topic, payload, responseTo, effect)
	if err != nil {
		return fmt.Errorf("queue answer %s: %w", id, err)
	}
	for _, d := range dropped {
		o.log.Error("outbox full: dropped the oldest answer", "seq", d.Seq, "bytes", d.Bytes)
	}
	o.log.Debug("answer queued", "message_id", id, "seq", seq)
	o.publishNow(seq, topic, payload)
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// publishNow publishes answer seq at once if it is the next one due and
// the window has room; otherwise, or if that fails, the pump sends it.
func (o *Outbox) publishNow(seq uint64, topic string, payload []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.direct == nil || (len(o.inflight) > 0 && (o.full() || o.lost())) {
		return
	}
	if next, ok := o.j.NextOutboundSeq(o.sent); !ok || next != seq {
		return
	}
	p, err := o.direct.PublishAsync(topic, payload, false)
	if err != nil {
		return // the pump retries it and says why
	}
	o.inflight = append(o.inflight, flight{seq: seq, bytes: len(payload), p: p})
	o.sent, o.bytes = seq, o.bytes+len(payload)
}

// lost reports whether the connection of the latest answer sent has
// ended: nothing more goes out until the pump has started again from the
// first answer not acknowledged, or an answer could reach the broker on
// a new connection before an earlier one lost with the old. o.mu is held;
// the window is not empty.
func (o *Outbox) lost() bool {
	select {
	case <-o.inflight[len(o.inflight)-1].p.Lost():
		return true
	default:
		return false
	}
}

// full reports whether the window is full. o.mu is held.
func (o *Outbox) full() bool {
	return len(o.inflight) >= OutboxWindow || o.bytes >= OutboxWindowBytes
}

// Len returns the number of queued answers and their bytes.
func (o *Outbox) Len() (count, bytes int) {
	st := o.j.Stats()
	return st.Outbound, int(st.OutboundBytes)
}

// Dropped returns how many answers were dropped past the limits.
func (o *Outbox) Dropped() uint64 { return o.j.Stats().Dropped }

// Run publishes queued messages in order until ctx ends.
func (o *Outbox) Run(ctx context.Context, pub Publisher) error {
	if ap, ok := pub.(AsyncPublisher); ok {
		o.pump(ctx, ap, false)
		return nil
	}
	for {
		m, ok := o.head()
		if !ok {
			select {
			case <-o.wake:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		if err := pub.WaitConnected(ctx); err != nil {
			return nil
		}
		if err := pub.Publish(ctx, m.topic, m.payload, false); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			o.log.Warn("publish failed, will retry", "seq", m.seq, "topic", m.topic, "error", err)
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		o.pop(m.seq)
	}
}

// Flush publishes what is queued until the outbox is empty or ctx ends; it
// is used on shutdown.
func (o *Outbox) Flush(ctx context.Context, pub Publisher) {
	if ap, ok := pub.(AsyncPublisher); ok {
		o.pump(ctx, ap, true)
		return
	}
	for {
		m, ok := o.head()
		if !ok || ctx.Err() != nil {
			return
		}
		if err := pub.Publish(ctx, m.topic, m.payload, false); err != nil {
			if n, _ := o.Len(); n > 0 {
				o.log.Error("shutdown: messages not sent", "count", n, "error", err)
			}
			return
		}
		o.pop(m.seq)
	}
}

// flight is an answer on the wire.
type flight struct {
	seq   uint64
	bytes int
	p     Pending
}

// pump publishes in order with up to OutboxWindow messages and
// OutboxWindowBytes bytes in flight, and removes each message once it
// and all before it are acknowledged. After a failure it sends again
// from the first message not acknowledged (Run) or gives up (flush: on
// shutdown). It returns when ctx ends, or with flush when the outbox is
// empty. Put may add to the window meanwhile (publishNow); only the pump
// takes from it. Run and Flush do not pump at the same time.
func (o *Outbox) pump(ctx context.Context, pub AsyncPublisher, flush bool) {
	o.mu.Lock()
	clear(o.inflight)
	o.inflight, o.sent, o.bytes = o.inflight[:0], 0, 0
	if !flush {
		o.direct = pub
	}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.direct = nil
		o.mu.Unlock()
	}()
	fail := func(seq uint64, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		if flush {
			if n, _ := o.Len(); n > 0 {
				o.log.Error("shutdown: messages not sent", "count", n, "error", err)
			}
			return false
		}
		o.log.Warn("publish failed, will retry", "seq", seq, "error", err)
		// Put publishes nothing until the pump starts again from the
		// first answer not acknowledged.
		o.mu.Lock()
		clear(o.inflight)
		o.inflight, o.sent, o.bytes, o.direct = o.inflight[:0], 0, 0, nil
		o.mu.Unlock()
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return false
		}
		if pub.WaitConnected(ctx) != nil {
			return false
		}
		o.mu.Lock()
		o.direct = pub
		o.mu.Unlock()
		return true
	}
	for {
		// Fill the window.
		o.mu.Lock()
		var failed error
		var failedSeq uint64
		for len(o.inflight) == 0 || !(o.full() || o.lost()) {
			m, ok := o.after(o.sent)
			if !ok {
				break
			}
			p, err := pub.PublishAsync(m.topic, m.payload, false)
			if err != nil {
				failed, failedSeq = err, m.seq
				break
			}
			o.inflight = append(o.inflight, flight{seq: m.seq, bytes: len(m.payload), p: p})
			o.sent, o.bytes = m.seq, o.bytes+len(m.payload)
		}
		empty, full := len(o.inflight) == 0, o.full()
		var f flight
		if !empty {
			f = o.inflight[0]
		}
		o.mu.Unlock()
		if failed != nil {
			if !fail(failedSeq, failed) {
				return
			}
			continue
		}
		if empty {
			if flush {
				return
			}
			select {
			case <-o.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		// Wait for the oldest, or for more to send.
		var wake <-chan struct{}
		if !full {
			wake = o.wake
		}
		select {
		case <-f.p.Acked():
			if err := f.p.Err(); err != nil {
				if !fail(f.seq, err) {
					return
				}
				continue
			}
			o.pop(f.seq)
			o.mu.Lock()
			o.bytes -= f.bytes
			o.inflight[0] = flight{}
			o.inflight = o.inflight[1:]
			o.mu.Unlock()
		case <-f.p.Lost():
			if !fail(f.seq, errors.New("connection lost before the broker acknowledged")) {
				return
			}
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// after returns the first queued answer whose seq is greater than seq.
func (o *Outbox) after(seq uint64) (outMsg, bool) {
	out, ok, err := o.j.NextOutbound(seq)
	if err != nil {
		o.log.Error("read queued answer", "after_seq", seq, "error", err)
		return outMsg{}, false
	}
	return outMsg{seq: out.Seq, topic: out.Topic, payload: out.Payload}, ok
}

func (o *Outbox) head() (outMsg, bool) { return o.after(0) }

// pop removes answer seq once the broker has acknowledged it.
func (o *Outbox) pop(seq uint64) {
	if err := o.j.Acked(seq); err != nil {
		o.log.Error("remove acknowledged answer", "seq", seq, "error", err)
	}
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
