package sim

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is the broker's TCP or TLS listener: what mochi's
// listeners.TCP does, without two races of mochi 2.7.9 that the race
// detector reports when the broker stops while hosts connect:
//
//   - mochi counts a connection in Listeners.ClientsWg only from the
//     goroutine that serves it, so the stop's ClientsWg.Wait can run
//     while that first Add is being made. listener makes the Add itself,
//     before it starts the goroutine and only while it is open, and the
//     Done once mochi is through with the connection, so the count never
//     rises from zero behind a Wait;
//   - listeners.TCP.Serve writes one error variable from every
//     connection's goroutine.
//
// Close also closes the connections mochi was still setting up, which
// its closer cannot see yet: the stop does not wait for them.
type listener struct {
	id, address string
	tlsConfig   *tls.Config
	clients     *sync.WaitGroup // the server's Listeners.ClientsWg
	log         *slog.Logger
	within      time.Duration // tests only: for connectWithin

	mu     sync.Mutex
	ln     net.Listener
	closed bool
	conns  map[net.Conn]struct{} // accepted, until mochi is through with them
}

var _ listeners.Listener = (*listener)(nil)

func newListener(srv *mqtt.Server, id, address string, tlsConfig *tls.Config) *listener {
	return &listener{id: id, address: address, tlsConfig: tlsConfig, clients: &srv.Listeners.ClientsWg,
		conns: make(map[net.Conn]struct{})}
}

func (l *listener) ID() string       { return l.id }
func (l *listener) Protocol() string { return "tcp" }

// Address is the address listened on, once Init has bound it.
func (l *listener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

func (l *listener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	if l.tlsConfig != nil {
		ln = tls.NewListener(ln, l.tlsConfig)
	}
	l.mu.Lock()
	l.ln, l.log = ln, log
	l.mu.Unlock()
	return nil
}

// connectWithin bounds how long a connection may take to send its CONNECT
// (a TLS handshake included). mochi sets a connection's deadline only once
// CONNECT is read (from its keepalive, in attachClient's refreshDeadline),
// so until then a client that sends nothing would hold its connection and
// goroutine for ever.
const connectWithin = 10 * time.Second

// Accept's backoff after a temporary error, such as running out of file
// descriptors, as net/http's Server.Serve does.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Serve hands each connection to establish on a goroutine of its own,
// until the listener is closed. A failed Accept is retried after a
// backoff, unless the listener was closed.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	ln := l.ln
	l.mu.Unlock()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.isClosed() {
				return
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			l.log.Warn("accept failed, retrying", "listener", l.id, "error", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !l.hold(conn) {
			conn.Close()
			return
		}
		within := connectWithin
		if l.within > 0 {
			within = l.within
		}
		if err := conn.SetDeadline(time.Now().Add(within)); err != nil {
			l.log.Debug("set connect deadline", "listener", l.id, "error", err)
		}
		go func() {
			defer l.release(conn)
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("connection ended", "listener", l.id, "error", err)
			}
		}()
	}
}

// hold counts conn in the server's clients and keeps it for Close; false
// once the listener is closed.
func (l *listener) hold(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.clients.Add(1)
	l.conns[conn] = struct{}{}
	return true
}

func (l *listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

func (l *listener) release(conn net.Conn) {
	l.mu.Lock()
	delete(l.conns, conn)
	l.mu.Unlock()
	l.clients.Done()
}

// Close stops accepting, lets closeClients disconnect the clients mochi
// knows (the first time only, as listeners.TCP does), and closes every
// connection still held.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	ln := l.ln
	l.mu.Unlock()
	if !first {
		return
	}
	if ln != nil {
		ln.Close()
	}
	closeClients(l.id)
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
}
