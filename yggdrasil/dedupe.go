package yggdrasil

import (
	"sync"
	"time"
)

// Dedupe remembers recent message ids so that a message the broker
// delivers again (QoS 1 is at-least-once) reaches its worker only once. It
// remembers each id for age, and at most the last size ids, so memory stays
// bounded whatever the message rate.
type Dedupe struct {
	size int
	age  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	seen  map[string]uint64 // id → seq of its entry in ring
	ring  []dedupeEntry     // oldest at ring[head]
	head  int
	count int
	seq   uint64
}

type dedupeEntry struct {
	id  string
	at  time.Time
	seq uint64
}

// NewDedupe returns a Dedupe that remembers up to size ids for up to age.
func NewDedupe(size int, age time.Duration) *Dedupe {
	return &Dedupe{size: size, age: age, now: time.Now, seen: make(map[string]uint64, size), ring: make([]dedupeEntry, size)}
}

// Seen records id and reports whether it was already there.
func (d *Dedupe) Seen(id string) bool {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[id]; ok {
		return true
	}
	// Forget what has expired, then make room.
	for d.count > 0 && now.Sub(d.ring[d.head].at) > d.age {
		d.evict()
	}
	if d.count == d.size {
		d.evict()
	}
	d.seq++
	d.ring[(d.head+d.count)%d.size] = dedupeEntry{id: id, at: now, seq: d.seq}
	d.count++
	d.seen[id] = d.seq
	return false
}

// Forget forgets id, so that the next message with it counts as new: a
// message that was refused (answered with a negative acknowledgement) may
// be sent again with the same id, as a new attempt.
func (d *Dedupe) Forget(id string) {
	d.mu.Lock()
	delete(d.seen, id)
	d.mu.Unlock()
}

// Len returns how many ids are remembered.
func (d *Dedupe) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.count
}

func (d *Dedupe) evict() {
	// The id may have been forgotten and seen again since: its map entry
	// then belongs to a newer ring entry.
	if e := d.ring[d.head]; d.seen[e.id] == e.seq {
		delete(d.seen, e.id)
	}
	d.ring[d.head] = dedupeEntry{}
	d.head = (d.head + 1) % d.size
	d.count--
}
