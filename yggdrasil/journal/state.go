package journal

import (
	"cmp"
	"slices"
	"sort"
)

// inEntry is a pending or handing inbound message. Its payload stays on
// disk: off and n locate it in the current segment once the record is
// written; until then mem holds the caller's bytes.
type inEntry struct {
	id      string
	handing bool
	at      int64  // arrival, Unix nanoseconds
	order   uint64 // arrival order
	off     int64
	n       int
	mem     []byte
	written bool
}

// outEntry is a pending outbound answer, located like an inEntry.
type outEntry struct {
	seq     uint64
	topic   string
	off     int64
	n       int
	mem     []byte
	written bool
	gone    bool // acknowledged or dropped; still in state.out until compacted
}

type doneEntry struct {
	id string
	at int64
}

// state is the live content of the journal: what replaying the records
// yields. The same methods apply records on replay and live calls, so the
// two cannot disagree. Every method is idempotent where replay needs it:
// a snapshot may restate what records written after it restate again.
type state struct {
	dedupeSize int

	in      map[string]*inEntry
	inBytes int64
	inOrder uint64

	done  map[string]int64 // id → time done
	doneQ []doneEntry      // oldest first from doneHead; may hold stale entries
	doneH int

	out      []*outEntry // seq order; gone entries are removed lazily
	outBySeq map[uint64]*outEntry
	outBytes int64
	outGone  int
	nextSeq  uint64
}

func newState(dedupeSize int) *state {
	return &state{
		dedupeSize: dedupeSize,
		in:         make(map[string]*inEntry),
		done:       make(map[string]int64),
		outBySeq:   make(map[uint64]*outEntry),
		nextSeq:    1,
	}
}

func (s *state) addIn(e *inEntry) {
	if old, ok := s.in[e.id]; ok {
		s.inBytes -= int64(old.n)
	}
	delete(s.done, e.id)
	s.inOrder++
	e.order = s.inOrder
	s.in[e.id] = e
	s.inBytes += int64(e.n)
}

func (s *state) handing(id string) bool {
	e, ok := s.in[id]
	if ok {
		e.handing = true
	}
	return ok
}

// finish moves id from the inbound set to the dedupe window.
func (s *state) finish(id string, at int64) {
	if e, ok := s.in[id]; ok {
		s.inBytes -= int64(e.n)
		delete(s.in, id)
	}
	if t, ok := s.done[id]; ok && t == at {
		return
	}
	s.done[id] = at
	s.doneQ = append(s.doneQ, doneEntry{id, at})
	for len(s.done) > s.dedupeSize {
		s.popDone()
	}
}

func (s *state) forget(id string) {
	if e, ok := s.in[id]; ok {
		s.inBytes -= int64(e.n)
		delete(s.in, id)
	}
	delete(s.done, id)
}

// expire forgets done ids finished before cutoff.
func (s *state) expire(cutoff int64) {
	for s.doneH < len(s.doneQ) && s.doneQ[s.doneH].at < cutoff {
		s.popDone()
	}
}

// popDone removes the oldest entry of the dedupe queue, and its id from
// the window unless the id was done again since.
func (s *state) popDone() {
	d := s.doneQ[s.doneH]
	if t, ok := s.done[d.id]; ok && t == d.at {
		delete(s.done, d.id)
	}
	s.doneQ[s.doneH] = doneEntry{}
	s.doneH++
	if s.doneH > 1024 && s.doneH > len(s.doneQ)/2 {
		s.doneQ = slices.Clone(s.doneQ[s.doneH:])
		s.doneH = 0
	}
}

// window returns the live dedupe entries, oldest first.
func (s *state) window() []doneEntry {
	w := make([]doneEntry, 0, len(s.done))
	for _, d := range s.doneQ[s.doneH:] {
		if t, ok := s.done[d.id]; ok && t == d.at {
			w = append(w, d)
		}
	}
	return w
}

// inbound returns the inbound entries in arrival order.
func (s *state) inbound() []*inEntry {
	es := make([]*inEntry, 0, len(s.in))
	for _, e := range s.in {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *inEntry) int { return cmp.Compare(a.order, b.order) })
	return es
}

func (s *state) addOut(e *outEntry) {
	if _, ok := s.outBySeq[e.seq]; ok {
		return
	}
	s.out = append(s.out, e)
	s.outBySeq[e.seq] = e
	s.outBytes += int64(e.n)
	if e.seq >= s.nextSeq {
		s.nextSeq = e.seq + 1
	}
}

func (s *state) delOut(seq uint64) (*outEntry, bool) {
	e, ok := s.outBySeq[seq]
	if !ok {
		return nil, false
	}
	delete(s.outBySeq, seq)
	e.gone = true
	s.outBytes -= int64(e.n)
	s.outGone++
	for len(s.out) > 0 && s.out[0].gone {
		s.out[0] = nil
		s.out = s.out[1:]
		s.outGone--
	}
	if s.outGone > 64 && s.outGone > len(s.out)/2 {
		s.out = slices.DeleteFunc(slices.Clone(s.out), func(e *outEntry) bool { return e.gone })
		s.outGone = 0
	}
	return e, true
}

// oldestOut returns the first pending answer.
func (s *state) oldestOut() *outEntry {
	for _, e := range s.out {
		if !e.gone {
			return e
		}
	}
	return nil
}

// nextOut returns the first pending answer with a seq greater than after.
func (s *state) nextOut(after uint64) *outEntry {
	i := sort.Search(len(s.out), func(i int) bool { return s.out[i].seq > after })
	for ; i < len(s.out); i++ {
		if !s.out[i].gone {
			return s.out[i]
		}
	}
	return nil
}

// liveBytes estimates the size of a snapshot of s.
func (s *state) liveBytes() int64 {
	return s.inBytes + s.outBytes + int64(len(s.in)+len(s.done)+len(s.outBySeq))*64
}
