package journal

import (
	"bufio"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// run is the writer goroutine: the group commit. Each turn takes the
// whole batch that callers appended since the last turn, writes it with
// one write call, syncs once if any caller waits for durability, then
// wakes all of them. While it writes and syncs, callers fill the next
// batch, so the sync rate stays near the disk's and every sync covers
// what arrived meanwhile.
//
// A caller whose record is to be written at once (all of them) takes the
// turn itself (lead) when no turn is under way, instead of waking this
// goroutine: for a durable record that saves being woken back after the
// fsync, and at one message in flight the round trip waits on two of
// them. While a turn is under way the caller wakes this goroutine, which
// takes the next turn, so groups still form under load. The token (wmu)
// makes turns one at a time.
func (j *Journal) run() {
	defer j.wg.Done()
	for {
		<-j.kick
		j.wmu.Lock()
		closed := j.turn(true)
		j.wmu.Unlock()
		if closed {
			return
		}
	}
}

// lead writes the batch on the caller's goroutine if no turn is under way,
// and otherwise wakes the writer goroutine, which takes the next turn
// once the current one is over. A caller that waits for the sync
// (durable) waits for a group first when one is due (groupDue). One that
// does not (Done, Forget, Acked) never waits: when a group is due it
// leaves the turn to the writer goroutine, as the outbox's pump, which
// acknowledges, would otherwise stall meanwhile. j.mu is not held.
func (j *Journal) lead(durable bool) {
	if !j.wmu.TryLock() {
		j.signal()
		return
	}
	if !durable && j.groupDue() > 0 {
		j.wmu.Unlock()
		j.signal()
		return
	}
	// A durable record that another caller appends from here on joins
	// this turn; only a durable leader waits for more.
	j.turn(durable)
	j.wmu.Unlock()
}

// turn is one group commit, after waiting for a group if group allows it
// and one is due; it reports whether the journal is closing, in which
// case it was the last. The caller holds wmu.
func (j *Journal) turn(group bool) (closed bool) {
	if group {
		if d := j.groupDue(); d > 0 {
			j.groupWait(d)
		}
	}
	j.mu.Lock()
	batch, fix, waiters, nrec := j.batch, j.fix, j.waiters, j.nrec
	closing, base, failed := j.closing, j.size, j.err != nil
	j.batch, j.fix, j.waiters, j.nrec = j.spare[:0], nil, nil, 0
	j.mu.Unlock()

	var err error
	if j.opts.Memory {
		// Nothing to write: the entries keep their payloads.
		batch, fix = batch[:0], nil
	}
	if len(batch) > 0 && !failed {
		_, err = j.f.WriteAt(batch, base)
		j.dirty = true
		if end := base + int64(len(batch)); err == nil && end > j.zeroed {
			err = j.zeroAhead(end)
		}
	}
	if err == nil && !failed && j.dirty && (len(waiters) > 0 || closing) {
		t0 := time.Now()
		if err = j.sync(j.f); err == nil {
			j.dirty, j.group = false, len(waiters)
			j.syncTime += (time.Since(t0) - j.syncTime) / 8
		}
	}

	j.mu.Lock()
	if err != nil && j.err == nil {
		j.err = fmt.Errorf("write journal %s: %w", j.path(j.seg), err)
		j.log.Error("journal write failed: every later call fails", "file", j.path(j.seg), "error", err)
	}
	if err == nil && !failed && len(batch) > 0 {
		j.size += int64(len(batch))
		j.stats.Records += uint64(nrec)
		j.stats.Commits++
		for _, x := range fix {
			if x.in != nil {
				x.in.off, x.in.written, x.in.mem = base+x.rel, true, nil
			} else {
				x.out.off, x.out.written, x.out.mem = base+x.rel, true, nil
			}
		}
	}
	werr := j.err
	roll := werr == nil && !closing && j.size >= j.rollAt && j.size >= 2*j.st.liveBytes()
	j.mu.Unlock()
	for _, ch := range waiters {
		ch <- werr
	}
	if cap(batch) <= 1<<20 {
		j.spare = batch[:0]
	} else {
		j.spare = nil
	}
	if closing {
		return true
	}
	if roll {
		j.roll()
	}
	return false
}

// groupDue returns how long a turn that is to sync waits first, so that
// the records of the messages in flight meanwhile join its group: when the
// last sync covered two durable callers or more, four times what a sync
// takes (its moving average), at most Options.GroupWait; else 0. Here a
// sync costs about 200 µs of wall time and 130 µs of system CPU
// (BENCHMARKS.md), and at 64 messages in flight and 100 B a wait of 1 ms
// cut the syncs from 0.21 to 0.09 a message; where a sync costs next to
// nothing (tmpfs), there is no wait. With one message in flight nothing
// would join a group, and no commit waits but the first after a burst.
// Closing does not wait. The moving average is of the group commits'
// syncs only (a roll's syncs a new file and its directory). wmu is held.
func (j *Journal) groupDue() time.Duration {
	if j.opts.GroupWait <= 0 || j.group < 2 {
		return 0
	}
	d := min(4*j.syncTime, j.opts.GroupWait)
	if d < 20*time.Microsecond {
		return 0
	}
	j.mu.RLock()
	due := len(j.waiters) > 0 && !j.closing
	j.mu.RUnlock()
	if !due {
		return 0
	}
	return d
}

// zeroAhead writes zeros after end, the end of the records, so that the
// next batches are written in place into blocks the file already has: a
// data sync then commits no metadata (the file's size and its extents do
// not change), which on ext4 makes it about a fifth faster (the ceilings'
// BenchmarkDurableInterleaved: O_APPEND on a growing file +20 % against
// writing in place). The zeros are written, not fallocated: writing into
// fallocated (unwritten) extents changes them, which is metadata again.
// Replay takes zeros after the last record for the end of the segment.
// wmu is held.
func (j *Journal) zeroAhead(end int64) error {
	n := min(max(j.opts.SegmentSize/16, 4<<10), 1<<20)
	for off := int64(0); off < n; off += int64(len(zeroBlock)) {
		if _, err := j.f.WriteAt(zeroBlock[:min(n-off, int64(len(zeroBlock)))], end+off); err != nil {
			return err
		}
	}
	j.zeroed = end + n
	return nil
}

// zeroBlock is what zeroAhead writes, a piece at a time: shared by every
// journal (64 KiB in all, where each journal kept a 1 MiB buffer).
var zeroBlock = make([]byte, 64<<10)

// sync makes f's written data durable, unless Options.NoSync.
func (j *Journal) sync(f *os.File) error {
	if j.opts.NoSync {
		return nil
	}
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err == nil {
				j.mu.Lock()
				j.stats.Syncs++
				j.mu.Unlock()
			}
			return err
		}
	}
}

// syncDir makes the directory's entries (created or removed files)
// durable, unless Options.NoSync.
func (j *Journal) syncDir() error {
	if j.opts.NoSync {
		return nil
	}
	d, err := os.Open(j.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// snapItem is one live entry as the snapshot saw it.
type snapItem struct {
	in   *inEntry
	out  *outEntry
	hand bool
	off  int64 // old offset of the payload
	noff int64 // new offset
}

// roll starts segment seg+1 with a snapshot of the live state, then
// deletes the older segments. It runs on the writer goroutine between two
// batches, so nothing else writes meanwhile; callers go on changing the
// state and filling the next batch, which is written after the snapshot.
//
// The snapshot holds the entries whose records are written; the others
// are in the next batch and follow the snapshot in the new segment.
// Changes made after the snapshot was taken but recorded in the next
// batch are restated by it, which replay tolerates (every record is
// idempotent). Deleting the old segments is safe because the new one,
// snapshot included, is synced and its name is in the synced directory
// before the first old file is removed: a crash at any point leaves
// either the old segments (and maybe a new one whose snapshot is
// incomplete, which recovery discards) or a complete new segment, which
// recovery prefers to anything older.
func (j *Journal) roll() {
	j.mu.RLock()
	var items []snapItem
	for _, e := range j.st.inbound() {
		if e.written {
			items = append(items, snapItem{in: e, hand: e.handing, off: e.off})
		}
	}
	window := j.st.window()
	for _, e := range j.st.out {
		if !e.gone && e.written {
			items = append(items, snapItem{out: e, off: e.off})
		}
	}
	nextSeq, old, oldSize := j.st.nextSeq, j.seg, j.size
	j.mu.RUnlock()

	next := old + 1
	f, size, err := j.writeSnapshot(next, items, window, nextSeq)
	if err != nil {
		j.log.Error("journal roll failed: keeping the current segment", "file", j.path(next), "error", err)
		if f != nil {
			f.Close()
		}
		os.Remove(j.path(next))
		j.mu.Lock()
		j.rollAt = j.size + j.opts.SegmentSize
		j.mu.Unlock()
		return
	}

	j.mu.Lock()
	oldf := j.f
	for _, it := range items {
		if it.in != nil {
			it.in.off = it.noff
		} else {
			it.out.off = it.noff
		}
	}
	j.f, j.seg, j.size, j.zeroed = f, next, size, size
	j.rollAt = j.opts.SegmentSize
	j.mu.Unlock()

	oldf.Close()
	removed := j.removeBefore(next)
	if err := j.syncDir(); err != nil {
		j.log.Warn("journal: sync dir after removing old segments", "dir", j.dir, "error", err)
	}
	j.log.Debug("journal rolled", "file", j.path(next), "snapshot_bytes", size,
		"old_bytes", oldSize, "removed_segments", removed)
}

// writeSnapshot creates segment seg holding the snapshot and syncs it and
// the directory.
func (j *Journal) writeSnapshot(seg uint64, items []snapItem, window []doneEntry, nextSeq uint64) (*os.File, int64, error) {
	f, err := os.OpenFile(j.path(seg), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var size int64
	var buf []byte
	put := func() error {
		n, err := w.Write(buf)
		size += int64(n)
		buf = buf[:0]
		return err
	}
	buf = append(buf, magic...)
	buf = encSeq(buf, kindSnapBegin, nextSeq)
	if err := put(); err != nil {
		return f, 0, err
	}
	for i := range items {
		it := &items[i]
		var p []byte
		n := 0
		if it.in != nil {
			n = it.in.n
		} else {
			n = it.out.n
		}
		p = make([]byte, n)
		if _, err := j.f.ReadAt(p, it.off); err != nil {
			return f, 0, fmt.Errorf("read back %d bytes at %d: %w", n, it.off, err)
		}
		if it.in != nil {
			buf = encInAdd(buf, it.in.id, it.in.at, p)
			it.noff = size + int64(len(buf)-len(p))
			if it.hand {
				buf = encInID(buf, kindInHanding, it.in.id)
			}
		} else {
			buf = encOutAdd(buf, it.out.seq, it.out.topic, p)
			it.noff = size + int64(len(buf)-len(p))
		}
		if err := put(); err != nil {
			return f, 0, err
		}
	}
	for _, d := range window {
		buf = encInDone(buf, d.id, d.at)
		if len(buf) > 64<<10 {
			if err := put(); err != nil {
				return f, 0, err
			}
		}
	}
	buf = encSnapEnd(buf)
	if err := put(); err != nil {
		return f, 0, err
	}
	if err := w.Flush(); err != nil {
		return f, 0, err
	}
	if err := j.sync(f); err != nil {
		return f, 0, err
	}
	if err := j.syncDir(); err != nil {
		return f, 0, err
	}
	return f, size, nil
}

// removeBefore deletes the segments numbered below seg and returns how
// many it deleted.
func (j *Journal) removeBefore(seg uint64) int {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		j.log.Warn("journal: list old segments", "dir", j.dir, "error", err)
		return 0
	}
	n := 0
	for _, de := range ents {
		if k, ok := parseSegName(de.Name()); ok && k < seg {
			if err := os.Remove(j.path(k)); err != nil {
				j.log.Warn("journal: remove old segment", "file", j.path(k), "error", err)
				continue
			}
			n++
		}
	}
	return n
}
