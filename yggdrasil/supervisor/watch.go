//go:build linux

package supervisor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// watchMask is what we ask inotify to report about the worker directory.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE |
	unix.IN_ATTRIB | unix.IN_DELETE | unix.IN_MOVED_FROM |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// dirEvent is one inotify event about the worker directory.
type dirEvent struct {
	name string // entry name, "" for events about the directory itself
	mask uint32
}

// watcher reports changes to one directory.
type watcher struct {
	f *os.File
}

// newWatcher starts watching dir.
func newWatcher(dir string) (*watcher, error) {
	// Non-blocking, so that os.File puts it in the runtime poller and Close
	// wakes a pending Read.
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch %s: inotify_init1: %w", dir, err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, watchMask); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: inotify_add_watch: %w", dir, err)
	}
	return &watcher{f: os.NewFile(uintptr(fd), "inotify:"+dir)}, nil
}

// Close stops the watcher and makes a pending read return.
func (w *watcher) Close() error { return w.f.Close() }

// read sends the events it reads to events until the watcher is closed or
// ctx is done. It returns the read error, or nil after Close.
func (w *watcher) read(ctx context.Context, events chan<- dirEvent) error {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read inotify events: %w", err)
		}
		for _, ev := range parseEvents(buf[:n]) {
			select {
			case events <- ev:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// parseEvents decodes a buffer of struct inotify_event records.
func parseEvents(b []byte) []dirEvent {
	var evs []dirEvent
	for len(b) >= unix.SizeofInotifyEvent {
		// struct inotify_event { int wd; uint32_t mask, cookie, len; char name[]; }
		mask := binary.NativeEndian.Uint32(b[4:8])
		nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
		end := unix.SizeofInotifyEvent + nameLen
		if end > len(b) {
			break // cannot happen: the kernel writes whole events
		}
		name := b[unix.SizeofInotifyEvent:end]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		evs = append(evs, dirEvent{name: string(name), mask: mask})
		b = b[end:]
	}
	return evs
}
