package ceiling

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var methods = []SyncMethod{SyncFdatasync, SyncRWFDsync, SyncODsync, SyncDirect}

// record reads the record at off of the file at path.
func record(t *testing.T, path string, off int64) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(binary.LittleEndian.Uint32(b[off:]))
	p := b[off+headerSize : off+headerSize+n]
	if got, want := binary.LittleEndian.Uint32(b[off+4:]), crc32.Checksum(p, castagnoli); got != want {
		t.Fatalf("record at %d: crc %08x, want %08x", off, got, want)
	}
	return p
}

func TestDurableAppend(t *testing.T) {
	for _, m := range methods {
		t.Run(m.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal")
			d, err := OpenDurable(path, 1<<16, m)
			if m == SyncDirect && errors.Is(err, unix.EINVAL) {
				t.Skip("no O_DIRECT on this file system:", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if fi, err := os.Stat(path); err != nil || fi.Size() != 1<<16 {
				t.Fatalf("file after open: %v, %v; want 65536 bytes", fi, err)
			}
			recs := [][]byte{[]byte(`{"a":1}`), bytes.Repeat([]byte("x"), 300), {}}
			var off int64
			for _, r := range recs {
				if err := d.Append(r); err != nil {
					t.Fatalf("append: %v", err)
				}
				if got := record(t, path, off); !bytes.Equal(got, r) {
					t.Fatalf("record at %d: %q, want %q", off, got, r)
				}
				off += headerSize + int64(len(r))
				if m == SyncDirect {
					off = (off + blockSize - 1) / blockSize * blockSize
				}
			}
			if fi, _ := os.Stat(path); fi.Size() != 1<<16 {
				t.Errorf("file grew to %d bytes, want 65536", fi.Size())
			}
		})
	}
}

func TestDurableWrapsAndRefusesTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	d, err := OpenDurable(path, 100, SyncFdatasync)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, b := bytes.Repeat([]byte("a"), 60), bytes.Repeat([]byte("b"), 30)
	for _, p := range [][]byte{a, b} {
		if err := d.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	// 68 + 38 > 100: b starts again at 0.
	if got := record(t, path, 0); !bytes.Equal(got, b) {
		t.Errorf("record at 0 after the wrap: %q, want %q", got, b)
	}
	if err := d.Append(make([]byte, 93)); !errors.Is(err, ErrRecordTooLarge) {
		t.Errorf("append of 101 bytes in 100: %v, want ErrRecordTooLarge", err)
	}
}

func TestDurableConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	d, err := OpenDurable(path, 1<<20, SyncFdatasync)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				if err := d.Append(fmt.Appendf(nil, "g%d-%02d", g, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var got []string
	for off := int64(0); len(got) < 160; {
		p := record(t, path, off)
		got = append(got, string(p))
		off += headerSize + int64(len(p))
	}
	slices.Sort(got)
	for g := range 8 {
		for i := range 20 {
			if want := fmt.Sprintf("g%d-%02d", g, i); !slices.Contains(got, want) {
				t.Fatalf("record %s missing", want)
			}
		}
	}
	if d.done == 0 || d.done > 160 {
		t.Errorf("%d fdatasyncs for 160 appends", d.done)
	}
}

// BenchmarkDurable measures one synced append of a small record, the cost
// the durable ceiling pays twice per message, by method: p50-µs is the
// median of the single appends. "append-grow" (O_APPEND on a file that
// grows) and "fallocate" (preallocated but unwritten extents) are what a
// less careful author would do; each sync then also commits metadata.
//
//	go test -run - -bench Durable -benchtime 2000x ./sim/ceiling
func BenchmarkDurable(b *testing.B) {
	for _, size := range []int{100, 400} {
		rec := bytes.Repeat([]byte("x"), size)
		for _, m := range methods {
			b.Run(fmt.Sprintf("%s/%dB", m, size), func(b *testing.B) {
				d, err := OpenDurable(filepath.Join(b.TempDir(), "journal"), 8<<20, m)
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				timed(b, func() error { return d.Append(rec) })
			})
		}
		b.Run(fmt.Sprintf("append-grow/%dB", size), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "journal"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			timed(b, func() error {
				if _, err := f.Write(rec); err != nil {
					return err
				}
				return unix.Fdatasync(int(f.Fd()))
			})
		})
		b.Run(fmt.Sprintf("fallocate/%dB", size), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "journal"), os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if err := unix.Fallocate(int(f.Fd()), 0, 0, 8<<20); err != nil {
				b.Skip("fallocate:", err)
			}
			f.Sync()
			var off int64
			timed(b, func() error {
				if _, err := f.WriteAt(rec, off); err != nil {
					return err
				}
				off += int64(len(rec))
				return unix.Fdatasync(int(f.Fd()))
			})
		})
	}
}

// timed runs op b.N times and reports the median as p50-µs.
func timed(b *testing.B, op func() error) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Microsecond), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100])/float64(time.Microsecond), "p99-µs")
}

// BenchmarkDurableInterleaved is BenchmarkDurable with the ways taken in
// turn, one append each, so that a noisy machine's changes of load fall
// on all of them alike: the fairer comparison of the p50s.
//
//	go test -run - -bench DurableInterleaved -benchtime 3000x ./sim/ceiling
func BenchmarkDurableInterleaved(b *testing.B) {
	for _, size := range []int{200, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) { durableInterleaved(b, size) })
	}
}

func durableInterleaved(b *testing.B, size int) {
	rec := bytes.Repeat([]byte("x"), size)
	type way struct {
		name string
		op   func() error
		lat  []time.Duration
		cpu  time.Duration // the process's user+system time, summed
	}
	var ways []*way
	for _, m := range methods {
		d, err := OpenDurable(filepath.Join(b.TempDir(), "journal"), 8<<20, m)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		ways = append(ways, &way{name: m.String(), op: func() error { return d.Append(rec) }})
	}
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "journal"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ways = append(ways, &way{name: "append-grow", op: func() error {
		if _, err := f.Write(rec); err != nil {
			return err
		}
		return unix.Fdatasync(int(f.Fd()))
	}})
	b.ResetTimer()
	for range b.N {
		for _, w := range ways {
			c0 := cpuTime()
			t0 := time.Now()
			if err := w.op(); err != nil {
				b.Fatal(err)
			}
			w.lat = append(w.lat, time.Since(t0))
			w.cpu += cpuTime() - c0
		}
	}
	b.StopTimer()
	for _, w := range ways {
		slices.Sort(w.lat)
		b.ReportMetric(float64(w.lat[len(w.lat)/2])/float64(time.Microsecond), w.name+"-p50-µs")
		b.ReportMetric(float64(w.lat[len(w.lat)*9/10])/float64(time.Microsecond), w.name+"-p90-µs")
		b.ReportMetric(float64(w.cpu)/float64(b.N)/float64(time.Microsecond), w.name+"-cpu-µs")
	}
}

// cpuTime is the process's CPU time so far, every thread's: with a
// blocking system call, the Go runtime hands the caller's P to another
// thread, and what that costs counts.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
