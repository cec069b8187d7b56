package grpcbuf

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// LargeField is the size from which a bytes field (a message's content)
// travels apart from the rest of its message: Marshal hands gRPC the
// caller's bytes as they are, after the encoded rest, instead of copying
// them into the message's buffer, and Unmarshal copies them from the
// received frames straight into their own slice, instead of gathering the
// frames into one buffer first and copying the field out of that. For a
// 1 MiB detached content that is two copies of 1 MiB, and two buffers of
// 1 MiB, fewer on each side of the connection.
const LargeField = 32 << 10

// largeFieldOK reports whether fd may travel apart: a singular bytes field
// outside any oneof, whose last occurrence on the wire wins.
func largeFieldOK(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.BytesKind && fd.Cardinality() != protoreflect.Repeated &&
		fd.ContainingOneof() == nil && !fd.IsExtension()
}

// largeFields returns the fields of m that are large enough to travel
// apart, nil when there are none (the common case: no allocation).
func largeFields(m protoreflect.Message) []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if largeFieldOK(fd) && len(m.Get(fd).Bytes()) >= LargeField {
			out = append(out, fd)
		}
	}
	return out
}

// marshalSplit encodes m without its large fields into a pooled buffer,
// followed by each large field's tag and length, and then the field's
// bytes themselves, not copied. The wire format allows fields in any
// order. gRPC reads the bytes while it writes the message: the caller
// must not change them until its call has returned, as with any message
// it sends.
func marshalSplit(m protoreflect.Message, large []protoreflect.FieldDescriptor) (mem.BufferSlice, error) {
	rest := m.New()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		for _, l := range large {
			if fd == l {
				return true
			}
		}
		rest.Set(fd, v) // shares v's memory: rest is only read
		return true
	})
	if u := m.GetUnknown(); len(u) > 0 {
		rest.SetUnknown(u)
	}
	size := proto.Size(rest.Interface())
	head := size
	for _, fd := range large {
		head += protowire.SizeTag(fd.Number()) + protowire.SizeVarint(uint64(len(m.Get(fd).Bytes())))
	}
	buf := Pool.Get(head)
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], rest.Interface())
	if err != nil {
		Pool.Put(buf)
		return nil, err
	}
	out := make(mem.BufferSlice, 0, 1+2*len(large))
	for i, fd := range large {
		v := m.Get(fd).Bytes()
		if i == 0 {
			b = protowire.AppendVarint(protowire.AppendTag(b, fd.Number(), protowire.BytesType), uint64(len(v)))
			*buf = b
			out = append(out, mem.NewBuffer(buf, Pool))
		} else {
			// The tag of a later field goes in a small buffer of its own.
			t := protowire.AppendVarint(protowire.AppendTag(nil, fd.Number(), protowire.BytesType), uint64(len(v)))
			out = append(out, mem.SliceBuffer(t))
		}
		out = append(out, mem.SliceBuffer(v))
	}
	return out, nil
}

// unmarshalSplit decodes data into m, copying each large bytes field of
// m's type from the frames straight into a slice of its own and decoding
// the rest of the message, gathered apart, with proto.Unmarshal. It
// reports false, having changed nothing, when data is not what it can
// take that way (a group, a field repeated, a truncated message): the
// caller then decodes data in full, which reports any error.
func unmarshalSplit(data mem.BufferSlice, m protoreflect.Message) (bool, error) {
	fields := m.Descriptor().Fields()
	r := sliceReader{bufs: data}
	var rest []byte
	type found struct {
		fd protoreflect.FieldDescriptor
		v  []byte
	}
	var large []found
	for !r.done() {
		tag, ok := r.varint()
		if !ok {
			return false, nil
		}
		num, typ := protowire.DecodeTag(tag)
		if num <= 0 {
			return false, nil
		}
		switch typ {
		case protowire.VarintType:
			v, ok := r.varint()
			if !ok {
				return false, nil
			}
			rest = protowire.AppendVarint(protowire.AppendTag(rest, num, typ), v)
		case protowire.Fixed32Type, protowire.Fixed64Type:
			n := 4
			if typ == protowire.Fixed64Type {
				n = 8
			}
			rest = protowire.AppendTag(rest, num, typ)
			if rest, ok = r.append(rest, n); !ok {
				return false, nil
			}
		case protowire.BytesType:
			n64, ok := r.varint()
			if !ok || n64 > uint64(r.left()) {
				return false, nil
			}
			n := int(n64)
			fd := fields.ByNumber(num)
			if fd != nil && largeFieldOK(fd) && n >= LargeField {
				for _, f := range large {
					if f.fd == fd {
						return false, nil // repeated on the wire: let proto decide
					}
				}
				v := GetLarge(n)
				r.copy(v)
				large = append(large, found{fd, v})
				continue
			}
			if fd != nil && largeFieldOK(fd) {
				for _, f := range large {
					if f.fd == fd {
						return false, nil
					}
				}
			}
			rest = protowire.AppendVarint(protowire.AppendTag(rest, num, typ), n64)
			if rest, ok = r.append(rest, n); !ok {
				return false, nil
			}
		default: // groups: rare, and not worth decoding here
			return false, nil
		}
	}
	if len(large) == 0 {
		return false, nil
	}
	if err := proto.Unmarshal(rest, m.Interface()); err != nil {
		return true, err
	}
	for _, f := range large {
		m.Set(f.fd, protoreflect.ValueOfBytes(f.v))
	}
	return true, nil
}

// sliceReader reads a mem.BufferSlice as one stream of bytes.
type sliceReader struct {
	bufs mem.BufferSlice
	i    int    // the buffer being read
	cur  []byte // what is left of it
	read int    // bytes read before cur
	n    int    // total bytes, -1 until known
	init bool
}

func (r *sliceReader) start() {
	if !r.init {
		r.init, r.n = true, r.bufs.Len()
		if len(r.bufs) > 0 {
			r.cur = r.bufs[0].ReadOnlyData()
		}
	}
}

// next moves to the next non-empty buffer, if cur is used up.
func (r *sliceReader) next() bool {
	r.start()
	for len(r.cur) == 0 {
		if r.i+1 >= len(r.bufs) {
			return false
		}
		r.i++
		r.cur = r.bufs[r.i].ReadOnlyData()
	}
	return true
}

func (r *sliceReader) done() bool { return !r.next() }

func (r *sliceReader) left() int {
	r.start()
	return r.n - r.read
}

func (r *sliceReader) varint() (uint64, bool) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if !r.next() {
			return 0, false
		}
		b := r.cur[0]
		r.cur = r.cur[1:]
		r.read++
		if shift == 63 && b > 1 {
			return 0, false // overflows 64 bits: invalid, as protobuf has it
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, true
		}
	}
	return 0, false
}

// copy fills dst; the caller has checked that enough is left.
func (r *sliceReader) copy(dst []byte) {
	for len(dst) > 0 && r.next() {
		n := copy(dst, r.cur)
		dst, r.cur = dst[n:], r.cur[n:]
		r.read += n
	}
}

// append appends the next n bytes to dst.
func (r *sliceReader) append(dst []byte, n int) ([]byte, bool) {
	if n > r.left() {
		return dst, false
	}
	for n > 0 && r.next() {
		k := min(n, len(r.cur))
		dst = append(dst, r.cur[:k]...)
		r.cur = r.cur[k:]
		r.read += k
		n -= k
	}
	return dst, true
}
