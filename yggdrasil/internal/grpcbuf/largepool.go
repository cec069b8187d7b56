package grpcbuf

import (
	"math/bits"
	"sync"
	"unsafe"
	"weak"
)

// Large buffers: the contents of LargeField bytes or more that the codec
// decodes, and the bodies that yggd fetches for detached workers. Without
// reuse each of them is a fresh allocation, which the kernel faults in
// page by page and the GC collects a moment later: at 1 MiB, the page
// faults of clearing a new buffer cost more than copying into it.
//
// GetLarge hands out buffers by size class, eight classes per power of
// two (at most 1/8 of a buffer unused), from a sync.Pool per class, so
// that pooled buffers that stay unused are let go at the next GCs.
// ReleaseLarge takes back only a buffer that GetLarge handed out and that
// has not been released since: a buffer from anywhere else, or released
// twice in a row, is left alone. So a component may release what it was
// given without knowing where it came from, but only when nothing else
// holds it any more, and only once: the check goes by address, so a
// second release after GetLarge has handed the same memory out again
// would take it from its new owner.
//
// The price is memory: after a burst, the buffers that were in flight at
// its peak stay pooled until two GCs have passed them by, which at idle
// (a GC forced every two minutes) takes up to four minutes. So buffers
// above 4 MiB, rare and costly to keep, are not pooled.

const (
	largeMinExp = 15 // 32 KiB, LargeField
	largeMaxExp = 22 // 4 MiB: above, buffers are not pooled
	largeSteps  = 8  // classes per power of two
)

var large = &largePool{}

// GetLarge returns a buffer of length n; its content is not cleared when
// it is reused. Buffers below LargeField or above the largest class are
// plain allocations that ReleaseLarge ignores.
func GetLarge(n int) []byte { return large.get(n) }

// ReleaseLarge takes back b, if GetLarge handed it out and it has not been
// released since; b must then no longer be used by anyone, and its holder
// must not release it again (see above).
func ReleaseLarge(b []byte) { large.release(b) }

type largePool struct {
	pools [(largeMaxExp - largeMinExp + 1) * largeSteps]sync.Pool // by class

	mu  sync.Mutex
	out map[uintptr]weak.Pointer[byte] // the buffers handed out, by address
	// sweepAt is the size of out at which entries for buffers that were
	// never released, and are gone, are swept.
	sweepAt int
}

// largeClass returns the index of the smallest class that holds n bytes and its
// size, or -1 when n is not pooled.
func largeClass(n int) (int, int) {
	if n < 1<<largeMinExp || n > 1<<largeMaxExp {
		return -1, 0
	}
	e := bits.Len(uint(n - 1)) // 2^(e-1) < n <= 2^e, e >= largeMinExp
	step := 1 << (e - 4)       // 2^(e-1) is 8 steps, 2^e 16
	k := (n + step - 1) / step // 9 to 16
	return (e-largeMinExp)*largeSteps + k - largeSteps - 1, k * step
}

func (p *largePool) get(n int) []byte {
	idx, size := largeClass(n)
	if idx < 0 {
		return make([]byte, n)
	}
	if b, ok := p.pools[idx].Get().(*[]byte); ok {
		buf := (*b)[:n]
		p.track(buf)
		return buf
	}
	buf := make([]byte, n, size)
	p.track(buf)
	return buf
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func (p *largePool) track(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out == nil {
		p.out = map[uintptr]weak.Pointer[byte]{}
		p.sweepAt = 64
	}
	p.out[addr(b)] = weak.Make(unsafe.SliceData(b))
	if len(p.out) >= p.sweepAt {
		for a, w := range p.out {
			if w.Value() == nil {
				delete(p.out, a)
			}
		}
		p.sweepAt = max(64, 2*len(p.out))
	}
}

func (p *largePool) release(b []byte) {
	if cap(b) == 0 {
		return
	}
	idx, size := largeClass(cap(b))
	if idx < 0 || size != cap(b) {
		return
	}
	ptr := unsafe.SliceData(b)
	p.mu.Lock()
	w, ok := p.out[addr(b)]
	if ok {
		delete(p.out, addr(b))
	}
	p.mu.Unlock()
	if !ok || w.Value() != ptr {
		return // not handed out by get, or already released
	}
	b = b[:cap(b)]
	p.pools[idx].Put(&b)
}
