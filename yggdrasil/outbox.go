package yggdrasil

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
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

// OutboxWindow is how many messages the outbox keeps in flight (sent, not
// yet acknowledged) with an AsyncPublisher.
const OutboxWindow = 256

// OutboxLimits bound the outbox. Zero values mean the defaults.
type OutboxLimits struct {
	Count int // messages; default 10 000
	Bytes int // payload bytes; default 256 MiB
}

// Outbox is the ordered, bounded queue of messages to the cloud's data/out
// topic. Put never blocks, so a worker's Send is answered at once whatever
// the broker does; Run publishes in order, up to OutboxWindow messages in
// flight when the transport allows it (else one after the other), and
// keeps a message until the broker has acknowledged it and every message
// before it, so what is produced during an outage is sent after
// reconnecting: after a failure, Run sends again from the first message
// not acknowledged. Past its
// limits the outbox drops the oldest messages, counts and logs them.
type Outbox struct {
	limits OutboxLimits
	log    *slog.Logger

	mu      sync.Mutex
	items   []outMsg // FIFO; items[0] is next
	bytes   int
	dropped uint64
	seq     uint64        // of the last message put
	wake    chan struct{} // capacity 1: something was put
}

type outMsg struct {
	seq     uint64
	topic   string
	id      string // message id, for logs
	payload []byte
}

// NewOutbox returns an empty outbox.
func NewOutbox(limits OutboxLimits, log *slog.Logger) *Outbox {
	if limits.Count <= 0 {
		limits.Count = 10_000
	}
	if limits.Bytes <= 0 {
		limits.Bytes = 256 << 20
	}
	return &Outbox{limits: limits, log: orDiscard(log), wake: make(chan struct{}, 1)}
}

// Put queues payload for topic. id is the message id, for logs.
func (o *Outbox) Put(topic, id string, payload []byte) {
	o.mu.Lock()
	o.seq++
	o.items = append(o.items, outMsg{seq: o.seq, topic: topic, id: id, payload: payload})
	o.bytes += len(payload)
	var dropped []outMsg
	for len(o.items) > 1 && (len(o.items) > o.limits.Count || o.bytes > o.limits.Bytes) {
		dropped = append(dropped, o.items[0])
		o.bytes -= len(o.items[0].payload)
		o.items[0] = outMsg{}
		o.items = o.items[1:]
		o.dropped++
	}
	o.mu.Unlock()
	for _, m := range dropped {
		o.log.Error("outbox full: dropped the oldest message", "message_id", m.id,
			"limit_count", o.limits.Count, "limit_bytes", o.limits.Bytes)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Len returns the number of queued messages and their bytes.
func (o *Outbox) Len() (count, bytes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items), o.bytes
}

// Dropped returns how many messages were dropped past the limits.
func (o *Outbox) Dropped() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

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
			o.log.Warn("publish failed, will retry", "message_id", m.id, "topic", m.topic, "error", err)
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

// flight is a message on the wire.
type flight struct {
	seq uint64
	id  string
	p   Pending
}

// pump publishes in order with up to OutboxWindow messages in flight, and
// removes each message once it and all before it are acknowledged. After
// a failure it sends again from the first message not acknowledged (Run)
// or gives up (flush: on shutdown). It returns when ctx ends, or with
// flush when the outbox is empty.
func (o *Outbox) pump(ctx context.Context, pub AsyncPublisher, flush bool) {
	var inflight []flight // oldest first
	var sent uint64       // seq of the last message sent on this connection
	fail := func(id string, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		if flush {
			if n, _ := o.Len(); n > 0 {
				o.log.Error("shutdown: messages not sent", "count", n, "error", err)
			}
			return false
		}
		o.log.Warn("publish failed, will retry", "message_id", id, "error", err)
		clear(inflight)
		inflight, sent = inflight[:0], 0
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return false
		}
		return pub.WaitConnected(ctx) == nil
	}
	for {
		// Fill the window.
		for len(inflight) < OutboxWindow {
			m, ok := o.after(sent)
			if !ok {
				break
			}
			p, err := pub.PublishAsync(m.topic, m.payload, false)
			if err != nil {
				if !fail(m.id, err) {
					return
				}
				continue
			}
			inflight = append(inflight, flight{seq: m.seq, id: m.id, p: p})
			sent = m.seq
		}
		if len(inflight) == 0 {
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
		f := inflight[0]
		var wake <-chan struct{}
		if len(inflight) < OutboxWindow {
			wake = o.wake
		}
		select {
		case <-f.p.Acked():
			if err := f.p.Err(); err != nil {
				if !fail(f.id, err) {
					return
				}
				continue
			}
			o.pop(f.seq)
			inflight[0] = flight{}
			inflight = inflight[1:]
		case <-f.p.Lost():
			if !fail(f.id, errors.New("connection lost before the broker acknowledged")) {
				return
			}
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// after returns the first queued message whose seq is greater than seq.
// Queued seqs are consecutive: messages leave only from the head.
func (o *Outbox) after(seq uint64) (outMsg, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.items) == 0 {
		return outMsg{}, false
	}
	i := 0
	if first := o.items[0].seq; seq >= first {
		i = int(seq - first + 1)
	}
	if i >= len(o.items) {
		return outMsg{}, false
	}
	return o.items[i], true
}

func (o *Outbox) head() (outMsg, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.items) == 0 {
		return outMsg{}, false
	}
	return o.items[0], true
}

// pop removes the head if it is still seq (it may have been dropped while
// it was being published).
func (o *Outbox) pop(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.items) > 0 && o.items[0].seq == seq {
		o.bytes -= len(o.items[0].payload)
		o.items[0] = outMsg{}
		o.items = o.items[1:]
	}
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
