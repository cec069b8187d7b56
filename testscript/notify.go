package testscript

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	goscript "github.com/rogpeppe/go-internal/testscript"
)

// notifyCommands returns the commands that stand in for systemd's notify
// socket: they receive what yggd says through sd_notify.
func notifyCommands() map[string]command {
	return map[string]command{
		"notify-socket": {
			usage: "notify-socket",
			run:   cmdNotifySocket,
		},
		"notify-wait": {
			usage:     "notify-wait [-timeout d] regexp",
			negatable: true,
			run:       cmdNotifyWait,
		},
		"notify-mark": {
			usage: "notify-mark",
			run:   cmdNotifyMark,
		},
	}
}

// notifySocket records the datagrams sent to a script's notify socket.
type notifySocket struct {
	conn *net.UnixConn
	wg   sync.WaitGroup // the reader

	mu      sync.Mutex
	got     []string
	mark    int           // notify-wait looks at got[mark:]
	changed chan struct{} // closed, and replaced, at each datagram
}

var notifySockets sync.Map // *goscript.TestScript → *notifySocket

func cmdNotifySocket(ts *goscript.TestScript, args []string) error {
	if len(args) != 0 {
		return ErrUsage
	}
	if _, ok := notifySockets.Load(ts); ok {
		return errors.New("the notify socket is already there")
	}
	// sun_path holds about 108 bytes: not under $WORK.
	dir := ts.Getenv("YGG_SOCKET_DIR")
	if dir == "" {
		d, err := os.MkdirTemp("", "ygg-notify")
		if err != nil {
			return fmt.Errorf("make notify socket dir: %w", err)
		}
		ts.Defer(func() { os.RemoveAll(d) })
		dir = d
	}
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("listen on the notify socket: %w", err)
	}
	n := &notifySocket{conn: conn, changed: make(chan struct{})}
	notifySockets.Store(ts, n)
	n.wg.Go(n.read)
	ts.Defer(func() {
		conn.Close()
		n.wg.Wait()
		os.Remove(path)
		notifySockets.Delete(ts)
	})
	ts.Setenv("NOTIFY_SOCKET", path)
	return nil
}

// read records every datagram until the socket is closed.
func (n *notifySocket) read() {
	buf := make([]byte, 64<<10)
	for {
		size, err := n.conn.Read(buf)
		if err != nil {
			return
		}
		n.mu.Lock()
		n.got = append(n.got, string(buf[:size]))
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
}

func notifyOf(ts *goscript.TestScript) (*notifySocket, error) {
	n, ok := notifySockets.Load(ts)
	if !ok {
		return nil, errors.New("no notify socket: run notify-socket first")
	}
	return n.(*notifySocket), nil
}

// cmdNotifyWait waits for a datagram received after the mark that matches
// regexp, and prints it.
func cmdNotifyWait(ts *goscript.TestScript, args []string) error {
	fs := flag.NewFlagSet("notify-wait", flag.ContinueOnError)
	timeout := timeoutFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return ErrUsage
	}
	re, err := regexp.Compile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	n, err := notifyOf(ts)
	if err != nil {
		return err
	}
	// A negated wait asserts absence: it watches for less long.
	d := timeoutOr(*timeout, waitTimeout)
	if isNegated(ts) && *timeout == 0 {
		d = absenceTimeout
	}
	ctx, cancel := context.WithTimeout(scriptContext(ts), d)
	defer cancel()
	for {
		n.mu.Lock()
		got, mark, changed := n.got, n.mark, n.changed
		n.mu.Unlock()
		for _, g := range got[mark:] {
			if re.MatchString(g) {
				io.WriteString(ts.Stdout(), g+"\n")
				return nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("no datagram matching %q within %v; since the mark: %q", re, d, got[mark:])
		}
	}
}

// cmdNotifyMark makes later waits look only at datagrams received from now
// on.
func cmdNotifyMark(ts *goscript.TestScript, args []string) error {
	if len(args) != 0 {
		return ErrUsage
	}
	n, err := notifyOf(ts)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.mark = len(n.got)
	n.mu.Unlock()
	return nil
}
