//go:build linux

package supervisor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

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

// follower watches one directory while it exists and says when to look
// for it again while it does not. It is owned by Run's goroutine.
type follower struct {
	dir    string
	what   string // "worker directory", for the log
	events chan dirEvent
	watch  *watcher
	err    error     // the last failure to watch, logged once
	pollAt time.Time // when to look for the directory next, zero if not set
}

func newFollower(dir, what string) *follower {
	return &follower{dir: dir, what: what, events: make(chan dirEvent)}
}

// attach starts watching the directory, reading its events on a goroutine
// of wg until ctx is done or detach. It reports whether it could; a
// failure other than a missing directory is logged once.
func (f *follower) attach(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger) bool {
	w, err := newWatcher(f.dir)
	if err != nil {
		if !isMissing(err) && f.err == nil {
			// Degrade rather than refuse: what runs now still runs.
			log.Error("changes to the "+f.what+" will go unnoticed until it can be watched", "err", err)
		}
		f.err = err
		return false
	}
	f.watch, f.err = w, nil
	wg.Go(func() {
		if err := w.read(ctx, f.events); err != nil {
			log.Error("stop watching "+f.what, "dir", f.dir, "err", err)
		}
	})
	return true
}

// detach stops watching.
func (f *follower) detach() {
	if f.watch != nil {
		f.watch.Close()
		f.watch = nil
	}
}

// gone reports whether ev says that the watched directory itself went
// away, in which case it detaches.
func (f *follower) gone(ev dirEvent) bool {
	if ev.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) == 0 {
		return false
	}
	f.detach()
	return true
}

// pollTimer arms t for the next look at a directory that is not watched
// and returns its channel; nil while the directory is watched.
func (f *follower) pollTimer(t *time.Timer, every time.Duration) <-chan time.Time {
	if f.watch != nil {
		return nil
	}
	if f.pollAt.IsZero() {
		f.pollAt = time.Now().Add(every)
	}
	t.Reset(time.Until(f.pollAt))
	return t.C
}
