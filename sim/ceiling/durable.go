package ceiling

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SyncMethod is how a Durable makes an append durable.
type SyncMethod int

// The methods DurableBenchmark compares (durable_test.go). Each writes in
// place into a preallocated, zero-filled file, so that no append changes
// the file's size or extents and a data sync is one data write and one
// cache flush, without a metadata journal commit.
const (
	// SyncFdatasync: pwritev, then fdatasync; concurrent callers share
	// one fdatasync (group commit, the first waiting caller leads).
	SyncFdatasync SyncMethod = iota
	// SyncRWFDsync: pwritev2 with RWF_DSYNC, the write and its sync in
	// one system call.
	SyncRWFDsync
	// SyncODsync: pwritev on a file opened with O_DSYNC.
	SyncODsync
	// SyncDirect: pwrite of whole 4 KiB blocks from an aligned buffer on
	// a file opened with O_DIRECT|O_DSYNC, past the page cache: the
	// device writes the blocks through its cache (FUA) instead of a write
	// and then a flush. Each record starts on a block boundary.
	SyncDirect
)

func (m SyncMethod) String() string {
	switch m {
	case SyncFdatasync:
		return "pwritev+fdatasync"
	case SyncRWFDsync:
		return "pwritev2(RWF_DSYNC)"
	case SyncODsync:
		return "O_DSYNC+pwritev"
	case SyncDirect:
		return "O_DIRECT+O_DSYNC"
	}
	return fmt.Sprintf("SyncMethod(%d)", int(m))
}

// DefaultDurableSize is the size of a Durable's file when none is given.
const DefaultDurableSize = 64 << 20

// headerSize is a record's header: its length and its CRC-32C, so that a
// reader could tell a whole record from a torn one.
const headerSize = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Durable is the write path of the durable ceiling's journal: records
// appended to a preallocated, zero-filled file, written in place and made
// durable before Append returns. It is write-only: the ceiling measures
// the price of the guarantee, which is paid on the write path; reading
// the records back after a crash is not part of that price and is not
// implemented. When the file is full, writing starts again at its
// beginning (a ring): in the benchmark, a record older than a whole file
// belongs to a message answered long ago.
type Durable struct {
	f      *os.File
	fd     int
	size   int64
	method SyncMethod

	mu      sync.Mutex
	cond    sync.Cond
	off     int64  // where the next record goes
	started uint64 // fdatasyncs started
	done    uint64 // fdatasyncs finished
	syncing bool
	err     error // sticky: after a failed sync, nothing is known durable
}

// OpenDurable creates (or truncates) the file at path, fills it with size
// zero bytes (DefaultDurableSize if size ≤ 0), and makes that durable, so
// that later appends only overwrite allocated, written blocks.
func OpenDurable(path string, size int64, method SyncMethod) (*Durable, error) {
	if size <= 0 {
		size = DefaultDurableSize
	}
	if method == SyncDirect {
		size = (size + blockSize - 1) / blockSize * blockSize
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open durable file: %w", err)
	}
	if err := zeroFill(f, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("preallocate durable file %s: %w", path, err)
	}
	if dir, err := os.Open(dirOf(path)); err == nil {
		err = dir.Sync()
		dir.Close()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("sync directory of %s: %w", path, err)
		}
	}
	if method == SyncODsync || method == SyncDirect {
		// The same file again, with every write synchronous.
		flags := os.O_RDWR | unix.O_DSYNC
		if method == SyncDirect {
			flags |= unix.O_DIRECT
		}
		g, err := os.OpenFile(path, flags, 0)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("open durable file with O_DSYNC: %w", err)
		}
		f = g
	}
	d := &Durable{f: f, fd: int(f.Fd()), size: size, method: method}
	d.cond.L = &d.mu
	return d, nil
}

func zeroFill(f *os.File, size int64) error {
	zero := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		n := min(int64(len(zero)), size-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return err
		}
		off += n
	}
	return f.Sync()
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			if i == 0 {
				return "/"
			}
			return path[:i]
		}
	}
	return "."
}

// blockSize is the alignment O_DIRECT asks of offsets, lengths and
// buffers (the page size; at least the logical block size of any disk).
const blockSize = 4096

// blocks holds aligned buffers for SyncDirect.
var blocks sync.Pool

// alignedBlocks returns n bytes (a multiple of blockSize) whose address
// is a multiple of blockSize; put it back into blocks when done.
func alignedBlocks(n int) []byte {
	if b, ok := blocks.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	raw := make([]byte, n+blockSize)
	a := int(-uintptr(unsafe.Pointer(&raw[0])) & (blockSize - 1))
	return raw[a : a+n : a+n]
}

// ErrRecordTooLarge is returned by Append for a record that does not fit
// in the file.
var ErrRecordTooLarge = errors.New("record larger than the durable file")

// Append writes p as one record and returns once it is durable (on the
// disk, through its cache). It is safe for concurrent use; with
// SyncFdatasync, callers that arrive while a sync runs share the next one.
func (d *Durable) Append(p []byte) error {
	n := int64(headerSize + len(p))
	if d.method == SyncDirect {
		n = (n + blockSize - 1) / blockSize * blockSize
	}
	if n > d.size {
		return ErrRecordTooLarge
	}
	var hdr [headerSize]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(len(p)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(p, castagnoli))

	d.mu.Lock()
	if d.err != nil {
		d.mu.Unlock()
		return d.err
	}
	if d.off+n > d.size {
		d.off = 0
	}
	off := d.off
	d.off += n
	d.mu.Unlock()

	iov := [][]byte{hdr[:], p}
	var err error
	switch d.method {
	case SyncDirect:
		blk := alignedBlocks(int(n))
		copy(blk, hdr[:])
		copy(blk[headerSize:], p)
		clear(blk[headerSize+len(p):])
		_, err = unix.Pwrite(d.fd, blk, off)
		blocks.Put(&blk)
	case SyncRWFDsync:
		_, err = unix.Pwritev2(d.fd, iov, off, unix.RWF_DSYNC)
	default:
		_, err = unix.Pwritev(d.fd, iov, off)
	}
	if err != nil {
		return d.fail(fmt.Errorf("write durable record: %w", err))
	}
	if d.method != SyncFdatasync {
		return nil
	}
	return d.sync()
}

// sync returns once an fdatasync that started after the caller's write
// has finished, leading one itself when none is under way.
func (d *Durable) sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	need := d.started + 1 // a sync under way may have started before the write
	for d.done < need && d.err == nil {
		if d.syncing {
			d.cond.Wait()
			continue
		}
		d.syncing = true
		d.started++
		d.mu.Unlock()
		err := unix.Fdatasync(d.fd)
		d.mu.Lock()
		d.syncing = false
		d.done = d.started
		if err != nil && d.err == nil {
			d.err = fmt.Errorf("fdatasync durable file: %w", err)
		}
		d.cond.Broadcast()
	}
	return d.err
}

func (d *Durable) fail(err error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
	return d.err
}

// Close closes the file.
func (d *Durable) Close() error { return d.f.Close() }
