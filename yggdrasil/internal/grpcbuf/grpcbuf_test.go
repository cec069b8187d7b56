package grpcbuf

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/ygglab/yggdrasil/proto"
)

func TestTieredPoolSizes(t *testing.T) {
	p := newTieredPool(8, 20)
	tests := []struct {
		name         string
		n            int
		wantLen, cap int
	}{
		{name: "tiny", n: 1, wantLen: 1, cap: 256},
		{name: "smallest_tier", n: 256, wantLen: 256, cap: 256},
		{name: "just_over", n: 257, wantLen: 257, cap: 512},
		{name: "64k_message", n: 64<<10 + 20, wantLen: 64<<10 + 20, cap: 128 << 10},
		{name: "largest_tier", n: 1 << 20, wantLen: 1 << 20, cap: 1 << 20},
		{name: "beyond_tiers", n: 1<<20 + 1, wantLen: 1<<20 + 1, cap: 1<<20 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := p.Get(tt.n)
			if len(*b) != tt.wantLen || cap(*b) != tt.cap {
				t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tt.n, len(*b), cap(*b), tt.wantLen, tt.cap)
			}
			p.Put(b)
		})
	}
}

// TestPutForeignBuffer: a buffer the pool did not make (not a power of
// two, or beyond the largest tier) is dropped, not handed out again.
func TestPutForeignBuffer(t *testing.T) {
	p := newTieredPool(8, 20)
	odd := make([]byte, 300)
	p.Put(&odd)
	huge := make([]byte, 2<<20)
	p.Put(&huge)
	for range 10 {
		if b := p.Get(300); cap(*b) != 512 {
			t.Fatalf("Get(300) returned a buffer of cap %d, want 512", cap(*b))
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, size := range []int{10, 64 << 10} {
		in := &pb.Data{MessageId: "m1", Directive: "echo", Content: make([]byte, size), Metadata: map[string]string{"k": "v"}}
		var c Codec
		bs, err := c.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out pb.Data
		if err := c.Unmarshal(bs, &out); err != nil {
			t.Fatal(err)
		}
		bs.Free()
		if out.GetMessageId() != "m1" || len(out.GetContent()) != size || !cmp.Equal(out.GetMetadata(), in.GetMetadata()) {
			t.Errorf("size %d: round trip gave %v", size, &out)
		}
	}
	if _, err := (Codec{}).Marshal("not a message"); err == nil {
		t.Error("Marshal of a string: no error")
	}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{}, new(string)); err == nil {
		t.Error("Unmarshal into a string: no error")
	}
}

// frames cuts b into pieces of n bytes, as gRPC hands a received message
// over in its frames.
func frames(b []byte, n int) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, mem.SliceBuffer(append([]byte(nil), b[:k]...)))
		b = b[k:]
	}
	return out
}

func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// TestCodecLargeContent: a content of LargeField bytes or more travels
// apart, and arrives whole and equal whatever the frames it came in.
func TestCodecLargeContent(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		frame int
	}{
		{name: "below_threshold", size: LargeField - 1, frame: 16 << 10},
		{name: "at_threshold", size: LargeField, frame: 16 << 10},
		{name: "one_mib_in_16k_frames", size: 1 << 20, frame: 16 << 10},
		{name: "one_mib_in_odd_frames", size: 1 << 20, frame: 1},
		{name: "one_mib_in_3_byte_frames", size: 1<<20 + 7, frame: 3},
		{name: "one_mib_in_one_buffer", size: 1 << 20, frame: 8 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &pb.Data{MessageId: "m1", ResponseTo: "r1", Directive: "http://x/y", Content: content(tt.size),
				Metadata: map[string]string{"k": "v", "return_url": "http://x/y"}}
			var c Codec
			bs, err := c.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			wire := bs.Materialize()
			bs.Free()
			var want pb.Data
			if err := proto.Unmarshal(wire, &want); err != nil {
				t.Fatalf("proto.Unmarshal of what Marshal wrote: %v", err)
			}
			if !proto.Equal(&want, in) {
				t.Fatalf("Marshal wrote %v, want %v", &want, in)
			}
			var out pb.Data
			if err := c.Unmarshal(frames(wire, tt.frame), &out); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&out, in) {
				t.Errorf("Unmarshal gave a message unequal to the one sent (content %d bytes, want %d)", len(out.GetContent()), tt.size)
			}
		})
	}
}

// TestCodecMarshalDoesNotCopyLargeContent: the content's own bytes are in
// the slice handed to gRPC.
func TestCodecMarshalDoesNotCopyLargeContent(t *testing.T) {
	in := &pb.Data{MessageId: "m1", Content: content(1 << 20)}
	bs, err := Codec{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Free()
	shared := false
	for _, b := range bs {
		if d := b.ReadOnlyData(); len(d) == len(in.Content) && &d[0] == &in.Content[0] {
			shared = true
		}
	}
	if !shared {
		t.Errorf("Marshal copied the content: %d buffers, none is the content", len(bs))
	}
}

// TestCodecUnmarshalLikeProto: what the split decoding cannot take, or
// takes differently, ends as proto.Unmarshal would have it.
func TestCodecUnmarshalLikeProto(t *testing.T) {
	big := content(LargeField)
	enc := func(d *pb.Data) []byte {
		b, err := proto.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		wire []byte
	}{
		{name: "content_twice_large_last", wire: append(enc(&pb.Data{Content: []byte("small")}), enc(&pb.Data{Content: big})...)},
		{name: "content_twice_small_last", wire: append(enc(&pb.Data{Content: big}), enc(&pb.Data{Content: []byte("small")})...)},
		{name: "content_twice_large", wire: append(enc(&pb.Data{Content: big}), enc(&pb.Data{Content: content(LargeField + 1)})...)},
		{name: "unknown_fields_kept", wire: protowire.AppendBytes(protowire.AppendTag(enc(&pb.Data{MessageId: "m", Content: big}), 99, protowire.BytesType), []byte("x"))},
		{name: "unknown_varint_kept", wire: protowire.AppendVarint(protowire.AppendTag(enc(&pb.Data{Content: big}), 98, protowire.VarintType), 300)},
		{name: "unknown_fixed_kept", wire: protowire.AppendFixed64(protowire.AppendFixed32(protowire.AppendTag(protowire.AppendTag(enc(&pb.Data{Content: big}), 97, protowire.Fixed32Type), 96, protowire.Fixed64Type), 7), 8)},
		{name: "group", wire: protowire.AppendTag(protowire.AppendTag(enc(&pb.Data{Content: big}), 95, protowire.StartGroupType), 95, protowire.EndGroupType)},
		// A ten-byte varint whose last byte overflows 64 bits is invalid
		// protobuf (seen by a review's fuzzing of the codec).
		{name: "varint_overflows", wire: append(enc(&pb.Data{Content: big}), 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)},
		{name: "varint_ten_bytes", wire: append(enc(&pb.Data{Content: big}), 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want, got pb.Data
			wantErr := proto.Unmarshal(tt.wire, &want)
			err := Codec{}.Unmarshal(frames(tt.wire, 1000), &got)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("Unmarshal error %v, proto.Unmarshal's %v", err, wantErr)
			}
			if !proto.Equal(&got, &want) {
				t.Errorf("Unmarshal gave content %d bytes, unknown %d bytes; proto.Unmarshal content %d, unknown %d",
					len(got.GetContent()), len(got.ProtoReflect().GetUnknown()), len(want.GetContent()), len(want.ProtoReflect().GetUnknown()))
			}
		})
	}
}

// TestCodecUnmarshalTruncated: a message cut short is an error, however
// it is cut.
func TestCodecUnmarshalTruncated(t *testing.T) {
	wire, err := proto.Marshal(&pb.Data{MessageId: "m1", Content: content(LargeField + 10), Directive: "d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{1, 5, len(wire) - 2, len(wire) - 20} {
		var out pb.Data
		if err := (Codec{}).Unmarshal(frames(wire[:cut], 4096), &out); err == nil {
			t.Errorf("cut at %d of %d: no error", cut, len(wire))
		}
	}
}
