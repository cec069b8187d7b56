package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// scanResult is what replaying one segment found.
type scanResult struct {
	end      int64  // end of the last intact record
	size     int64  // file size
	zeros    bool   // only zeros follow end: space made ready for records, not damage
	complete bool   // the segment opens with a whole snapshot
	reason   string // why the scan stopped before size
}

// recover finds the segment to continue, replays it into j.st, cuts off a
// torn or corrupt tail and opens the segment for appending.
func (j *Journal) recover() error {
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return err
	}
	probe, err := os.CreateTemp(j.dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("dir not writable: %w", err)
	}
	probe.Close()
	os.Remove(probe.Name())

	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return err
	}
	var segs []uint64
	for _, de := range ents {
		if n, ok := parseSegName(de.Name()); ok && de.Type().IsRegular() {
			segs = append(segs, n)
		}
	}
	slices.Sort(segs)
	if len(segs) == 0 {
		return j.create(1)
	}

	// The newest segment with a whole snapshot holds everything live.
	// Newer ones are rolls that a crash interrupted; older ones are left
	// from a crash between a roll's sync and its deletions.
	var st *state
	var res scanResult
	i := len(segs) - 1
	for ; i >= 0; i-- {
		st, res, err = j.replay(segs[i])
		if err != nil {
			return err
		}
		if res.complete || i == 0 {
			break
		}
		j.log.Warn("journal: discarding a segment whose snapshot is incomplete (interrupted roll)",
			"file", j.path(segs[i]), "bytes", res.size)
		if err := os.Remove(j.path(segs[i])); err != nil {
			return err
		}
	}
	seg := segs[i]
	for _, old := range segs[:i] {
		if err := os.Remove(j.path(old)); err != nil {
			return err
		}
	}
	if res.end < int64(len(magic)) {
		j.log.Warn("journal: segment has no valid header, starting it afresh",
			"file", j.path(seg), "offset", 0, "dropped_bytes", res.size)
		if err := os.Remove(j.path(seg)); err != nil {
			return err
		}
		return j.create(seg)
	}
	if !res.complete {
		j.log.Warn("journal: the only segment has an incomplete snapshot, keeping what precedes the damage",
			"file", j.path(seg))
	}
	f, err := os.OpenFile(j.path(seg), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if res.end < res.size && !res.zeros {
		j.log.Warn("journal: cutting off a torn or corrupt tail", "file", j.path(seg),
			"offset", res.end, "dropped_bytes", res.size-res.end, "reason", res.reason)
		err := f.Truncate(res.end)
		if err == nil {
			err = j.sync(f)
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("truncate %s: %w", j.path(seg), err)
		}
	}
	st.expire(j.opts.Now().UnixNano() - int64(j.opts.DedupeAge))
	j.f, j.seg, j.size, j.st = f, seg, res.end, st
	if res.zeros {
		j.zeroed = res.size
	} else {
		j.zeroed = res.end
	}
	for _, e := range st.inbound() {
		if e.handing {
			j.rec.Handing = append(j.rec.Handing, e.id)
		} else {
			j.rec.Pending = append(j.rec.Pending, e.id)
		}
	}
	j.rec.Outbound = len(st.outBySeq)
	return nil
}

// create starts segment seg with an empty snapshot.
func (j *Journal) create(seg uint64) error {
	st := newState(j.opts.DedupeSize)
	f, size, err := j.writeSnapshot(seg, nil, nil, st.nextSeq)
	if err != nil {
		if f != nil {
			f.Close()
		}
		return err
	}
	j.f, j.seg, j.size, j.zeroed, j.st = f, seg, size, size, st
	return nil
}

// allZero reports whether b holds only zeros.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// zerosToEnd reads r to its end and reports whether it held only zeros.
func zerosToEnd(r io.Reader) (bool, error) {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if !allZero(buf[:n]) {
			return false, nil
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// replay reads segment seg into a new state, stopping at the first record
// that is torn or corrupt.
func (j *Journal) replay(seg uint64) (*state, scanResult, error) {
	st := newState(j.opts.DedupeSize)
	var res scanResult
	f, err := os.Open(j.path(seg))
	if err != nil {
		return nil, res, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, res, err
	}
	res.size = fi.Size()
	r := bufio.NewReaderSize(f, 1<<20)
	head := make([]byte, headerLen)
	if _, err := io.ReadFull(r, head); err != nil || string(head) != magic {
		res.reason = "bad segment header"
		return st, res, nil
	}
	off := int64(len(magic))
	var body []byte
	first, ended := true, false
	for {
		_, err := io.ReadFull(r, head)
		if err == io.EOF {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			res.reason = "torn record header"
			break
		}
		if err != nil {
			return nil, res, fmt.Errorf("read %s: %w", j.path(seg), err)
		}
		n := int64(binary.LittleEndian.Uint32(head))
		if n == 0 && allZero(head) {
			if res.zeros, err = zerosToEnd(r); err != nil {
				return nil, res, fmt.Errorf("read %s: %w", j.path(seg), err)
			}
			if res.zeros {
				break
			}
		}
		if n == 0 || n > maxBody || n > res.size-off-headerLen {
			res.reason = fmt.Sprintf("bad record length %d", n)
			break
		}
		body = slices.Grow(body[:0], int(n))[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, res, fmt.Errorf("read %s: %w", j.path(seg), err)
		}
		if !checkFrame(head, body) {
			res.reason = "checksum mismatch"
			break
		}
		rec, err := decode(body)
		if err == nil && (rec.kind == kindSnapBegin) != first {
			err = fmt.Errorf("%w: snapshot start out of place", errDecode)
		}
		if err != nil {
			res.reason = err.Error()
			break
		}
		bodyOff := off + headerLen
		switch rec.kind {
		case kindSnapBegin:
			st.nextSeq = max(st.nextSeq, rec.seq)
		case kindSnapEnd:
			res.complete = !ended
			ended = true
		case kindInAdd:
			st.addIn(&inEntry{id: rec.id, at: rec.at, off: bodyOff + int64(rec.payloadOff), n: rec.payloadLen, written: true})
		case kindInHanding:
			st.handing(rec.id)
		case kindInDone:
			st.finish(rec.id, rec.at)
		case kindInForget:
			st.forget(rec.id)
		case kindOutAdd:
			st.addOut(&outEntry{seq: rec.seq, topic: rec.topic, off: bodyOff + int64(rec.payloadOff), n: rec.payloadLen, written: true})
		case kindOutDel:
			st.delOut(rec.seq)
		}
		first = false
		off += headerLen + n
	}
	res.end = off
	return st, res, nil
}
