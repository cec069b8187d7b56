package grpcbuf

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/mem"

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
