package grpcbuf

import (
	"runtime"
	"testing"
	"unsafe"
)

func TestLargeClass(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		wantIdx  int
		wantSize int
	}{
		{name: "below", n: LargeField - 1, wantIdx: -1},
		{name: "smallest", n: LargeField, wantIdx: 7, wantSize: 32 << 10},
		{name: "just_over_32k", n: 32<<10 + 1, wantIdx: 8, wantSize: 36 << 10},
		{name: "one_mib", n: 1 << 20, wantIdx: 5*8 + 7, wantSize: 1 << 20},
		{name: "one_mib_and_a_bit", n: 1<<20 + 200, wantIdx: 6 * 8, wantSize: 1<<20 + 1<<17},
		{name: "largest", n: 4 << 20, wantIdx: 63, wantSize: 4 << 20},
		{name: "above", n: 4<<20 + 1, wantIdx: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx, size := largeClass(tt.n)
			if idx != tt.wantIdx || (idx >= 0 && size != tt.wantSize) {
				t.Errorf("largeClass(%d) = %d, %d; want %d, %d", tt.n, idx, size, tt.wantIdx, tt.wantSize)
			}
			if idx >= 0 && (size < tt.n || size-tt.n > size/8) {
				t.Errorf("largeClass(%d) size %d: does not hold it within 1/8", tt.n, size)
			}
		})
	}
}

// TestLargeReuse: a released buffer is handed out again (sync.Pool may
// drop some, the race detector on purpose, so a few tries).
func TestLargeReuse(t *testing.T) {
	p := &largePool{}
	reused := false
	for range 20 {
		b := p.get(1 << 20)
		if len(b) != 1<<20 || cap(b) != 1<<20 {
			t.Fatalf("get(1 MiB): len %d cap %d", len(b), cap(b))
		}
		b[0] = 1
		first := unsafe.SliceData(b)
		p.release(b)
		c := p.get(1<<20 - 100)
		if len(c) != 1<<20-100 {
			t.Fatalf("get: len %d", len(c))
		}
		if unsafe.SliceData(c) == first {
			reused = true
		}
		p.release(c)
	}
	if !reused {
		t.Error("no released buffer was handed out again in 20 tries")
	}
}

// TestLargeReleaseOnlyOwn: buffers the pool did not hand out, or handed
// out and released already, are never handed out by it.
func TestLargeReleaseOnlyOwn(t *testing.T) {
	p := &largePool{}
	foreign := make([]byte, 1<<20)
	p.release(foreign)
	b := p.get(1 << 20)
	p.release(b)
	p.release(b) // twice: ignored
	seen := map[*byte]int{}
	var held [][]byte
	for range 10 {
		c := p.get(1 << 20)
		held = append(held, c)
		seen[unsafe.SliceData(c)]++
	}
	if seen[unsafe.SliceData(foreign)] > 0 {
		t.Error("a buffer the pool did not make was handed out")
	}
	for ptr, n := range seen {
		if n > 1 {
			t.Errorf("buffer %p handed out %d times at once", ptr, n)
		}
	}
	for _, c := range held {
		p.release(c)
	}
	small := p.get(100)
	if cap(small) != 100 {
		t.Errorf("get(100): cap %d, want a plain allocation", cap(small))
	}
	p.release(small)
}

// TestLargeSweep: buffers handed out and never released do not pile up
// in the table of those handed out.
func TestLargeSweep(t *testing.T) {
	p := &largePool{}
	for i := range 1000 {
		p.get(LargeField)
		if i%100 == 0 {
			runtime.GC() // the dropped buffers go
		}
	}
	p.mu.Lock()
	n := len(p.out)
	p.mu.Unlock()
	if n >= 1000 {
		t.Errorf("%d buffers tracked after 1000 dropped ones", n)
	}
}
