package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Errors that callers branch on.
var (
	// ErrFull is returned by AddInbound when the inbound backlog is at
	// Options.MaxInbound or Options.MaxInboundBytes. Nothing was written:
	// the caller does not acknowledge the message, so the broker keeps it.
	ErrFull = errors.New("journal full")
	// ErrNotFound is returned for an inbound id that is neither pending
	// nor handing.
	ErrNotFound = errors.New("no such message in journal")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("journal closed")
)

// Options configure a Journal. Zero values mean the defaults.
type Options struct {
	// SegmentSize is the size past which the journal starts a new segment
	// file; default 16 MiB. A segment also grows to twice the live data
	// before rolling, so that each roll frees at least half of what it
	// copies.
	SegmentSize int64
	// MaxCount and MaxBytes bound the pending outbound answers (payload
	// bytes); defaults 10 000 and 256 MiB. Past them AppendOutbound drops
	// the oldest answers.
	MaxCount int
	MaxBytes int64
	// MaxInbound and MaxInboundBytes bound the pending and handing inbound
	// messages (payload bytes); defaults 10 000 and 256 MiB. Past them
	// AddInbound returns ErrFull. A message alone in the journal is always
	// accepted, whatever its size.
	MaxInbound      int
	MaxInboundBytes int64
	// DedupeSize and DedupeAge bound the window of done ids that are
	// recognised as duplicates: the last DedupeSize ids (default 20 000),
	// each for DedupeAge after it was done (default 10 minutes, by the
	// wall clock stored in its record, so the age holds across restarts).
	DedupeSize int
	DedupeAge  time.Duration
	// NoSync skips fdatasync. It is for tests only: without it, nothing
	// written survives a power cut.
	NoSync bool
	// GroupWait bounds how long a group commit waits for more records
	// before its sync when the group before it held the durable records
	// of two callers or more: many messages are in flight then, and one
	// sync covers more of them. It waits four times what a sync takes, at
	// most GroupWait; with one message in flight no commit waits but the
	// first after a burst. Default 1 ms; negative: never. Not with NoSync
	// or Memory, where a sync costs nothing.
	GroupWait time.Duration
	// Memory keeps the journal in memory only: Open ignores dir, reads
	// and writes no file, and nothing survives the process. The bounds,
	// the dedupe window and the outcome of every call are the same. It is
	// for simulations that run thousands of routers in one process
	// (yggsim fleet), where a file per router would cost a descriptor
	// each, not for an agent.
	Memory bool
	// Now is the wall clock; default time.Now.
	Now func() time.Time
	// Log receives warnings about recovery and errors; nil discards them.
	Log *slog.Logger
}

func (o *Options) setDefaults() {
	if o.SegmentSize <= 0 {
		o.SegmentSize = 16 << 20
	}
	if o.MaxCount <= 0 {
		o.MaxCount = 10_000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 20
	}
	if o.MaxInbound <= 0 {
		o.MaxInbound = 10_000
	}
	if o.MaxInboundBytes <= 0 {
		o.MaxInboundBytes = 256 << 20
	}
	if o.DedupeSize <= 0 {
		o.DedupeSize = 20_000
	}
	if o.DedupeAge <= 0 {
		o.DedupeAge = 10 * time.Minute
	}
	if o.GroupWait == 0 {
		o.GroupWait = time.Millisecond
	}
	if o.NoSync || o.Memory {
		o.GroupWait = -1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Recovery is what Open found in the journal.
type Recovery struct {
	// Pending are inbound ids never handed to a worker, in arrival order:
	// deliver them again.
	Pending []string
	// Handing are inbound ids that were being handed to a worker when
	// yggd stopped: the worker may or may not have taken them. Answer
	// each with a negative acknowledgement that finishes it (AppendAnswer
	// with Finish), so that neither a crash nor a redelivery by the broker
	// runs or answers it again.
	Handing []string
	// Outbound is the number of pending outbound answers; read them with
	// NextOutbound.
	Outbound int
}

// Out is a pending outbound answer.
type Out struct {
	Seq     uint64
	Topic   string
	Payload []byte
}

// Dropped describes an outbound answer dropped because the outbound
// bounds were reached.
type Dropped struct {
	Seq   uint64
	Topic string
	Bytes int
}

// Stats are the journal's counters.
type Stats struct {
	Inbound       int    // pending and handing inbound messages
	InboundBytes  int64  // their payload bytes
	Outbound      int    // pending outbound answers
	OutboundBytes int64  // their payload bytes
	DedupeIDs     int    // done ids remembered
	Dropped       uint64 // outbound answers dropped since Open
	Records       uint64 // records written since Open
	Commits       uint64 // group commits (write calls) since Open
	Syncs         uint64 // fdatasync calls since Open
	Segment       uint64 // number of the current segment
	SegmentBytes  int64  // its size
}

// Journal is a durable store-and-forward journal: inbound messages waiting
// for their worker, the ids of messages already done (to drop broker
// redeliveries), and outbound answers waiting for the broker's PUBACK.
// Its methods are safe for concurrent use.
type Journal struct {
	dir  string
	opts Options
	log  *slog.Logger
	rec  Recovery

	kick      chan struct{} // capacity 1: the batch is not empty
	wmu       sync.Mutex    // the writer's token: held for a turn (writer.go)
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	// mu guards everything below. Callers change st and append to the
	// batch under it, so the order of records in the file is the order
	// of the changes. The writer goroutine alone changes f, seg, size and
	// the entries' offsets, under mu.
	mu      sync.RWMutex
	st      *state
	closing bool
	err     error // sticky: the first write or sync failure
	batch   []byte
	fix     []fixup
	waiters []chan error
	nrec    int // records in batch
	f       *os.File
	seg     uint64
	size    int64
	stats   Stats
	rollAt  int64 // do not try to roll before size reaches this

	spare    []byte        // wmu: a buffer to swap in for the batch
	dirty    bool          // wmu: written since the last sync
	zeroed   int64         // wmu: the segment is written (records, then zeros) up to here
	group    int           // wmu: durable callers in the last synced group
	syncTime time.Duration // wmu: moving average of a sync's duration
	// groupWait is Options.GroupWait's wait; tests replace it.
	groupWait func(time.Duration)
}

// fixup tells the writer where a payload ended up: rel is its offset in
// the batch.
type fixup struct {
	in  *inEntry
	out *outEntry
	rel int64
}

// Open opens the journal in dir, creating dir and the journal if needed,
// recovers its content (see Recovered) and starts its writer goroutine,
// which Close stops.
func Open(dir string, opts Options) (*Journal, error) {
	opts.setDefaults()
	j := &Journal{
		dir:  dir,
		opts: opts,
		log:  opts.Log.With("component", "journal"),
		kick: make(chan struct{}, 1),

		groupWait: time.Sleep,
	}
	if opts.Memory {
		j.st = newState(opts.DedupeSize)
	} else if err := j.recover(); err != nil {
		return nil, fmt.Errorf("open journal %s: %w", dir, err)
	}
	j.rollAt = j.opts.SegmentSize
	j.wg.Add(1)
	go j.run()
	return j, nil
}

// Recovered returns what Open found.
func (j *Journal) Recovered() Recovery { return j.rec }

// AddInbound writes an inbound message to the journal as pending and
// returns once it is durable; only then may the caller acknowledge it to
// the broker. It reports dup, and writes nothing, when id is pending,
// handing, or was done within the dedupe window: the caller acknowledges
// it and drops it. It returns ErrFull, writing nothing, when the inbound
// bounds are reached. If ctx ends first it returns ctx's error and the
// message is forgotten: the caller must not acknowledge it.
func (j *Journal) AddInbound(ctx context.Context, id string, payload []byte) (dup bool, err error) {
	return j.add(ctx, id, payload, false)
}

// AddHanding is AddInbound and Handing in one durable write (one fsync
// instead of two), for a message that is handed to its worker at once.
func (j *Journal) AddHanding(ctx context.Context, id string, payload []byte) (dup bool, err error) {
	return j.add(ctx, id, payload, true)
}

func (j *Journal) add(ctx context.Context, id string, payload []byte, handing bool) (dup bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("add %s: %w", id, err)
	}
	now := j.opts.Now().UnixNano()
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return false, err
	}
	cutoff := now - int64(j.opts.DedupeAge)
	j.st.expire(cutoff)
	if _, ok := j.st.in[id]; ok {
		j.mu.Unlock()
		return true, nil
	}
	if t, ok := j.st.done[id]; ok && t >= cutoff {
		j.mu.Unlock()
		return true, nil
	}
	if len(j.st.in) > 0 && (len(j.st.in) >= j.opts.MaxInbound || j.st.inBytes+int64(len(payload)) > j.opts.MaxInboundBytes) {
		n, b := len(j.st.in), j.st.inBytes
		j.mu.Unlock()
		return false, fmt.Errorf("add %s: %w (%d messages, %d bytes)", id, ErrFull, n, b)
	}
	e := &inEntry{id: id, at: now, n: len(payload), mem: j.keep(payload)}
	j.st.addIn(e)
	j.batch = encInAdd(j.batch, id, now, payload)
	j.fix = append(j.fix, fixup{in: e, rel: int64(len(j.batch) - len(payload))})
	if handing {
		j.st.handing(id)
		j.batch = encInID(j.batch, kindInHanding, id)
		j.nrec++
	}
	ch := j.enqueue(true)
	j.mu.Unlock()
	if err := j.await(ctx, ch); err != nil {
		if ctx.Err() != nil {
			j.Forget(id)
		}
		return false, fmt.Errorf("add %s: %w", id, err)
	}
	return false, nil
}

// Handing marks id as being handed to its worker and returns once that is
// durable; only then may the caller hand it. After a crash the message is
// reported in Recovery.Handing, not Pending, so it is answered with a
// negative acknowledgement instead of running twice.
func (j *Journal) Handing(ctx context.Context, id string) error {
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return err
	}
	if !j.st.handing(id) {
		j.mu.Unlock()
		return fmt.Errorf("handing %s: %w", id, ErrNotFound)
	}
	j.batch = encInID(j.batch, kindInHanding, id)
	ch := j.enqueue(true)
	j.mu.Unlock()
	if err := j.await(ctx, ch); err != nil {
		return fmt.Errorf("handing %s: %w", id, err)
	}
	return nil
}

// Done marks id as done (its worker took it, or refused it) and keeps it
// in the dedupe window. It does not wait for the disk: the record is
// written at once but synced by the next group commit. If it is lost in a
// power cut, the message comes back after restart as it was last synced:
// Handing if Handing was called (it is durable), so it is answered with a
// negative acknowledgement rather than run twice; Pending only if Done
// was called without Handing. Done of an id already done is a no-op.
func (j *Journal) Done(id string) error {
	now := j.opts.Now().UnixNano()
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return err
	}
	if _, ok := j.st.in[id]; !ok {
		_, done := j.st.done[id]
		j.mu.Unlock()
		if done {
			return nil
		}
		return fmt.Errorf("done %s: %w", id, ErrNotFound)
	}
	j.st.finish(id, now)
	j.batch = encInDone(j.batch, id, now)
	j.enqueue(false)
	j.mu.Unlock()
	j.lead(false)
	return nil
}

// Forget removes every trace of id, pending, handing or done, so that a
// message sent again with the same id is a new attempt (after a refusal).
// Like Done it does not wait for the disk; a Forget lost in a power cut
// leaves id as it was last synced.
func (j *Journal) Forget(id string) {
	j.mu.Lock()
	_, in := j.st.in[id]
	_, done := j.st.done[id]
	if j.usable() != nil || (!in && !done) {
		j.mu.Unlock()
		return
	}
	j.st.forget(id)
	j.batch = encInID(j.batch, kindInForget, id)
	j.enqueue(false)
	j.mu.Unlock()
	j.lead(false)
}

// Waiting reports whether id is still pending or being handed: not done,
// answered or forgotten.
func (j *Journal) Waiting(id string) bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	_, ok := j.st.in[id]
	return ok
}

// ReadInbound returns the payload of a pending or handing message, read
// back from the journal.
func (j *Journal) ReadInbound(id string) ([]byte, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.closing {
		return nil, ErrClosed
	}
	e, ok := j.st.in[id]
	if !ok {
		return nil, fmt.Errorf("read %s: %w", id, ErrNotFound)
	}
	p, err := j.read(e.mem, e.written, e.off, e.n)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", id, err)
	}
	return p, nil
}

// AppendOutbound appends an answer for topic and returns its sequence
// number once it is durable. Past the outbound bounds it drops the oldest
// pending answers (never the new one) and returns them so that the caller
// can log them. If ctx ends first it returns ctx's error and the answer
// is not kept.
func (j *Journal) AppendOutbound(ctx context.Context, topic string, payload []byte) (seq uint64, dropped []Dropped, err error) {
	return j.AppendAnswer(ctx, topic, payload, "", IfHanding)
}

// Effect is what an answer does, in the same write, to the inbound
// message it answers, so that no crash can leave one without the other.
type Effect uint8

const (
	// IfHanding marks the message done if it is being handed: a worker
	// answering inside its Send, so that a crash after the answer is on
	// disk never answers it a second time (as interrupted) at the next
	// start. A message still waiting is left alone: it was not handed, so
	// the answer cannot be its worker's.
	IfHanding Effect = iota
	// Finish marks the message done whatever its state: it may have run
	// (it was being handed when yggd stopped) and is not run again, even
	// if the broker delivers it once more.
	Finish
	// Refuse forgets the message: it did not run, and the same id sent
	// again is a new attempt.
	Refuse
)

// AppendAnswer is AppendOutbound for an answer to the inbound message
// responseTo, which effect settles in the same write if the journal holds
// it as pending or being handed. Once it has settled a message, the answer
// is kept even if ctx ends first: the message is answered.
func (j *Journal) AppendAnswer(ctx context.Context, topic string, payload []byte, responseTo string, effect Effect) (seq uint64, dropped []Dropped, err error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, fmt.Errorf("append to %s: %w", topic, err)
	}
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return 0, nil, err
	}
	e := &outEntry{seq: j.st.nextSeq, topic: topic, n: len(payload), mem: j.keep(payload)}
	j.st.addOut(e)
	j.batch = encOutAdd(j.batch, e.seq, topic, payload)
	j.fix = append(j.fix, fixup{out: e, rel: int64(len(j.batch) - len(payload))})
	for len(j.st.outBySeq) > 1 && (len(j.st.outBySeq) > j.opts.MaxCount || j.st.outBytes > j.opts.MaxBytes) {
		old := j.st.oldestOut()
		j.st.delOut(old.seq)
		j.batch = encSeq(j.batch, kindOutDel, old.seq)
		j.nrec++
		j.stats.Dropped++
		dropped = append(dropped, Dropped{Seq: old.seq, Topic: old.topic, Bytes: old.n})
	}
	settled := false
	if in, ok := j.st.in[responseTo]; ok && (in.handing || effect != IfHanding) {
		if effect == Refuse {
			j.st.forget(responseTo)
			j.batch = encInID(j.batch, kindInForget, responseTo)
		} else {
			now := j.opts.Now().UnixNano()
			j.st.finish(responseTo, now)
			j.batch = encInDone(j.batch, responseTo, now)
		}
		j.nrec++
		settled = true
	}
	ch := j.enqueue(true) // counts the answer's record

	j.mu.Unlock()
	if err := j.await(ctx, ch); err != nil {
		if ctx.Err() != nil && !settled {
			j.Acked(e.seq)
		}
		return 0, dropped, fmt.Errorf("append to %s: %w", topic, err)
	}
	return e.seq, dropped, nil
}

// NextOutbound returns the first pending answer whose seq is greater than
// after, read back from the journal; ok is false when there is none. Start
// with after = 0 and pass the last seq returned to walk them in order.
func (j *Journal) NextOutbound(after uint64) (out Out, ok bool, err error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.closing {
		return Out{}, false, ErrClosed
	}
	e := j.st.nextOut(after)
	if e == nil {
		return Out{}, false, nil
	}
	p, err := j.read(e.mem, e.written, e.off, e.n)
	if err != nil {
		return Out{}, false, fmt.Errorf("read answer %d: %w", e.seq, err)
	}
	return Out{Seq: e.seq, Topic: e.topic, Payload: p}, true, nil
}

// NextOutboundSeq is NextOutbound without the payload: the seq of the
// first pending answer after after, without reading it back.
func (j *Journal) NextOutboundSeq(after uint64) (seq uint64, ok bool) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if e := j.st.nextOut(after); e != nil {
		return e.seq, true
	}
	return 0, false
}

// Acked removes the answer seq once the broker has acknowledged it. An
// unknown seq (already acknowledged, or dropped) is not an error. Like
// Done it does not wait for the disk: an acknowledgement lost in a power
// cut means the answer is published again after restart, which QoS 1
// allows.
func (j *Journal) Acked(seq uint64) error {
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return err
	}
	if _, ok := j.st.delOut(seq); !ok {
		j.mu.Unlock()
		return nil
	}
	j.batch = encSeq(j.batch, kindOutDel, seq)
	j.enqueue(false)
	j.mu.Unlock()
	j.lead(false)
	return nil
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.RLock()
	defer j.mu.RUnlock()
	s := j.stats
	s.Inbound, s.InboundBytes = len(j.st.in), j.st.inBytes
	s.Outbound, s.OutboundBytes = len(j.st.outBySeq), j.st.outBytes
	s.DedupeIDs = len(j.st.done)
	s.Segment, s.SegmentBytes = j.seg, j.size
	return s
}

// Close writes and syncs what is queued, stops the writer goroutine, waits
// for it and closes the file. It is idempotent and returns the first
// write error, if any.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		j.mu.Lock()
		j.closing = true
		j.mu.Unlock()
		j.signal()
		j.wg.Wait()
		j.mu.Lock()
		defer j.mu.Unlock()
		err := j.err
		if j.f == nil { // Options.Memory
			j.closeErr = err
			return
		}
		if cerr := j.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close journal %s: %w", j.dir, cerr)
		}
		j.closeErr = err
	})
	return j.closeErr
}

// usable returns why the journal cannot take a call. j.mu is held.
func (j *Journal) usable() error {
	if j.closing {
		return ErrClosed
	}
	return j.err
}

// enqueue counts the record just appended to the batch. With durable it
// returns a channel that receives the outcome once the batch is synced.
// The caller then unlocks j.mu and has the record written at once: await
// (durable) or lead. j.mu is held.
func (j *Journal) enqueue(durable bool) chan error {
	j.nrec++
	if !durable {
		return nil
	}
	ch := make(chan error, 1)
	j.waiters = append(j.waiters, ch)
	return ch
}

func (j *Journal) signal() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// await makes the batch holding the caller's record durable, leading the
// commit when no turn is under way, and returns its outcome or ctx's
// error. j.mu is not held.
func (j *Journal) await(ctx context.Context, ch chan error) error {
	j.lead(true)
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// keep returns what an entry holds of payload until it is written: the
// caller's slice, which is copied into the batch before the caller's call
// returns; in memory, where nothing is written, a copy of its own.
func (j *Journal) keep(payload []byte) []byte {
	if j.opts.Memory {
		return bytes.Clone(payload)
	}
	return payload
}

// read returns a copy of a payload. j.mu is held (read or write).
func (j *Journal) read(mem []byte, written bool, off int64, n int) ([]byte, error) {
	p := make([]byte, n)
	if !written {
		copy(p, mem)
		return p, nil
	}
	if _, err := j.f.ReadAt(p, off); err != nil {
		return nil, err
	}
	return p, nil
}

func (j *Journal) path(seg uint64) string { return filepath.Join(j.dir, segName(seg)) }
