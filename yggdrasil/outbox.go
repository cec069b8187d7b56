package yggdrasil

import (
	"context"
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

// OutboxLimits bound the outbox. Zero values mean the defaults.
type OutboxLimits struct {
	Count int // messages; default 10 000
	Bytes int // payload bytes; default 256 MiB
}

// Outbox is the ordered, bounded queue of messages to the cloud's data/out
// topic. Put never blocks, so a worker's Send is answered at once whatever
// the broker does; Run publishes in order, one acknowledged message after
// the other, and keeps a message until the broker has acknowledged it, so
// what is produced during an outage is sent after reconnecting. Past its
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
