// Package dbusd starts a private, real dbus-daemon for tests and the demo.
// It writes a bus configuration that listens on a UNIX socket in a short
// temporary directory (sun_path holds about 108 bytes), runs
// "dbus-daemon --nofork --print-address", and reports the address the daemon
// prints. Programs under test reach it the way every D-Bus client reaches the
// system bus: through DBUS_SYSTEM_BUS_ADDRESS.
package dbusd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned by Start when dbus-daemon cannot be found.
var ErrNotInstalled = errors.New("dbus-daemon is not installed")

// Daemon is a private dbus-daemon. The zero value is ready to Start.
type Daemon struct {
	// Program is the dbus-daemon executable; "" looks it up in $PATH.
	Program string
	// Policy is the <policy> XML of the bus configuration; "" allows
	// everything (any connection may own any name and call anything).
	Policy string
	// Logger receives the daemon's own output (nil = discarded).
	Logger *slog.Logger

	mu     sync.Mutex
	dir    string
	addr   string
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has been reaped
	closed bool
}

// permissive lets every connection own and call everything.
const permissive = `<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>`

// Start runs the daemon and waits until it has printed its address. The
// context bounds only the start-up.
func (d *Daemon) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil || d.closed {
		return errors.New("start dbus-daemon: already started")
	}
	prog := d.Program
	if prog == "" {
		p, err := exec.LookPath("dbus-daemon")
		if err != nil {
			return fmt.Errorf("start dbus-daemon: %w", ErrNotInstalled)
		}
		prog = p
	}
	dir, err := os.MkdirTemp("", "dbus")
	if err != nil {
		return fmt.Errorf("start dbus-daemon: %w", err)
	}
	policy := d.Policy
	if policy == "" {
		policy = permissive
	}
	config := fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  %s
</busconfig>
`, filepath.Join(dir, "bus"), policy)
	confPath := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(confPath, []byte(config), 0o600); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("start dbus-daemon: %w", err)
	}

	cmd := exec.Command(prog, "--config-file="+confPath, "--nofork", "--nopidfile", "--nosyslog", "--print-address")
	cmd.Env = append(os.Environ(), "DBUS_VERBOSE=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("start dbus-daemon: %w", err)
	}
	logw := &logWriter{logger: d.Logger}
	cmd.Stderr = logw
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("start dbus-daemon: %w", err)
	}
	done := make(chan struct{})
	addrc := make(chan string, 1)
	go func() {
		// The first line is the address; drain the rest so the daemon
		// never blocks on a full pipe, then reap it.
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		addrc <- strings.TrimSpace(line)
		io.Copy(io.Discard, r)
		cmd.Wait()
		close(done)
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-ctx.Done():
	}
	if addr == "" {
		cmd.Process.Kill()
		<-done
		os.RemoveAll(dir)
		if ctx.Err() != nil {
			return fmt.Errorf("start dbus-daemon: %w", ctx.Err())
		}
		return fmt.Errorf("start dbus-daemon: exited without printing an address: %s", logw.tail())
	}
	d.dir, d.addr, d.cmd, d.done = dir, addr, cmd, done
	return nil
}

// Addr is the bus address, e.g. "unix:path=/tmp/dbus123/bus,guid=…", for
// DBUS_SYSTEM_BUS_ADDRESS; "" before Start.
func (d *Daemon) Addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

// Close stops the daemon (SIGTERM, then SIGKILL after two seconds), waits for
// it and removes its directory. It is safe to call more than once.
func (d *Daemon) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(2 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	return os.RemoveAll(d.dir)
}

// logWriter passes the daemon's stderr to the logger and keeps the last
// bytes for error messages.
type logWriter struct {
	logger *slog.Logger
	mu     sync.Mutex
	last   []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.last = append(w.last, p...)
	if len(w.last) > 2048 {
		w.last = w.last[len(w.last)-2048:]
	}
	w.mu.Unlock()
	if w.logger != nil {
		for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
			if line != "" {
				w.logger.Info("dbus-daemon", "line", line)
			}
		}
	}
	return len(p), nil
}

func (w *logWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(string(w.last))
}
