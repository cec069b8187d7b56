package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// magic opens every segment file.
const magic = "YGGJNL01"

// headerLen is the size of a record's frame header: the body's length and
// a CRC-32C, both little-endian uint32.
const headerLen = 8

// maxBody bounds a record's body, so that a corrupt length field cannot
// make recovery allocate without limit.
const maxBody = 1 << 30

// Record kinds. The numbers are part of the file format.
const (
	kindSnapBegin = 1 // next outbound seq
	kindSnapEnd   = 2 //
	kindInAdd     = 3 // id, arrival time, payload
	kindInHanding = 4 // id
	kindInDone    = 5 // id, time done
	kindInForget  = 6 // id
	kindOutAdd    = 7 // seq, topic, payload
	kindOutDel    = 8 // seq
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is a decoded record body. Payloads are not copied: payloadOff and
// payloadLen locate the payload inside the body.
type record struct {
	kind       byte
	id         string // inbound kinds
	at         int64  // kindInAdd, kindInDone: wall clock, Unix nanoseconds
	seq        uint64 // outbound kinds, kindSnapBegin
	topic      string // kindOutAdd
	payloadOff int    // kindInAdd, kindOutAdd
	payloadLen int
}

// appendRecord appends a framed record to buf: the header, then the body
// built by body. It returns the grown buffer.
func appendRecord(buf []byte, body func([]byte) []byte) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, headerLen)...)
	buf = body(buf)
	n := len(buf) - start - headerLen
	binary.LittleEndian.PutUint32(buf[start:], uint32(n))
	crc := crc32.Update(0, castagnoli, buf[start:start+4])
	crc = crc32.Update(crc, castagnoli, buf[start+headerLen:])
	binary.LittleEndian.PutUint32(buf[start+4:], crc)
	return buf
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encInAdd(buf []byte, id string, at int64, payload []byte) []byte {
	return appendRecord(buf, func(b []byte) []byte {
		b = append(b, kindInAdd)
		b = appendString(b, id)
		b = binary.AppendVarint(b, at)
		return append(b, payload...)
	})
}

func encInID(buf []byte, kind byte, id string) []byte {
	return appendRecord(buf, func(b []byte) []byte {
		return appendString(append(b, kind), id)
	})
}

func encInDone(buf []byte, id string, at int64) []byte {
	return appendRecord(buf, func(b []byte) []byte {
		b = appendString(append(b, kindInDone), id)
		return binary.AppendVarint(b, at)
	})
}

func encOutAdd(buf []byte, seq uint64, topic string, payload []byte) []byte {
	return appendRecord(buf, func(b []byte) []byte {
		b = binary.AppendUvarint(append(b, kindOutAdd), seq)
		b = appendString(b, topic)
		return append(b, payload...)
	})
}

func encSeq(buf []byte, kind byte, seq uint64) []byte {
	return appendRecord(buf, func(b []byte) []byte {
		return binary.AppendUvarint(append(b, kind), seq)
	})
}

func encSnapEnd(buf []byte) []byte {
	return appendRecord(buf, func(b []byte) []byte { return append(b, kindSnapEnd) })
}

// checkFrame reports whether header and body form an intact record.
func checkFrame(header, body []byte) bool {
	crc := crc32.Update(0, castagnoli, header[:4])
	crc = crc32.Update(crc, castagnoli, body)
	return crc == binary.LittleEndian.Uint32(header[4:])
}

var errDecode = errors.New("malformed record")

// decode parses a record body whose frame has been checked.
func decode(body []byte) (record, error) {
	var r record
	if len(body) == 0 {
		return r, errDecode
	}
	r.kind = body[0]
	p := 1
	uvarint := func() (uint64, bool) {
		v, n := binary.Uvarint(body[p:])
		if n <= 0 {
			return 0, false
		}
		p += n
		return v, true
	}
	varint := func() (int64, bool) {
		v, n := binary.Varint(body[p:])
		if n <= 0 {
			return 0, false
		}
		p += n
		return v, true
	}
	str := func() (string, bool) {
		n, ok := uvarint()
		if !ok || n > uint64(len(body)-p) {
			return "", false
		}
		s := string(body[p : p+int(n)])
		p += int(n)
		return s, true
	}
	ok := true
	switch r.kind {
	case kindSnapBegin, kindOutDel:
		r.seq, ok = uvarint()
	case kindSnapEnd:
	case kindInAdd:
		if r.id, ok = str(); ok {
			r.at, ok = varint()
		}
		r.payloadOff, r.payloadLen = p, len(body)-p
		p = len(body)
	case kindInHanding, kindInForget:
		r.id, ok = str()
	case kindInDone:
		if r.id, ok = str(); ok {
			r.at, ok = varint()
		}
	case kindOutAdd:
		if r.seq, ok = uvarint(); ok {
			r.topic, ok = str()
		}
		r.payloadOff, r.payloadLen = p, len(body)-p
		p = len(body)
	default:
		return r, fmt.Errorf("%w: unknown kind %d", errDecode, r.kind)
	}
	if !ok || p != len(body) {
		return r, fmt.Errorf("%w: kind %d", errDecode, r.kind)
	}
	return r, nil
}

// segName returns the file name of segment n.
func segName(n uint64) string { return fmt.Sprintf("journal-%d.log", n) }

// parseSegName returns the number of the segment called name.
func parseSegName(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, "journal-")
	if !ok {
		return 0, false
	}
	if s, ok = strings.CutSuffix(s, ".log"); !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n > 0
}
