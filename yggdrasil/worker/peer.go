package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// peerCred returns the kernel's word on who is at the other end of a UNIX
// socket connection (SO_PEERCRED). On an accepted connection that is the
// process that called connect; on a dialled one, the process that called
// listen.
func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("peer credentials: %T is not a UNIX socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", credErr)
	}
	return cred, nil
}

// dispatcherDialer dials the dispatcher and remembers who listens there:
// the SO_PEERCRED of its first connection, which names yggd's process.
type dispatcherDialer struct {
	addr string // a net.Dial "unix" address

	mu   sync.Mutex
	cred *unix.Ucred
}

func (d *dispatcherDialer) dial(ctx context.Context, _ string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "unix", d.addr)
	if err != nil {
		return nil, err
	}
	cred, err := peerCred(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	d.mu.Lock()
	if d.cred == nil {
		d.cred = cred
	}
	d.mu.Unlock()
	return c, nil
}

// peer returns the dispatcher's credentials, or nil before a connection.
func (d *dispatcherDialer) peer() *unix.Ucred {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cred
}

// onlyDispatcher are server-side transport credentials that accept a
// connection only from the dispatcher's process: SO_PEERCRED of the
// accepted connection must give the pid and uid that the dispatcher's
// socket gave when the worker dialled it. A refused connection is closed
// before gRPC reads anything from it, so Send never runs.
//
// Pid reuse: the dispatcher is alive for as long as the check matters. yggd
// starts the worker as its child, with SIGTERM as its parent-death signal,
// and serves until its workers have stopped, so the dispatcher's pid cannot
// be given to another process while the worker serves.
//
// They add no encryption: the connection never leaves the host.
type onlyDispatcher struct {
	pid int32
	uid uint32
	log *refusalLog
}

// peerInfo is the AuthInfo of an accepted connection.
type peerInfo struct {
	credentials.CommonAuthInfo
	cred unix.Ucred
}

func (peerInfo) AuthType() string { return "peercred" }

func (o onlyDispatcher) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cred, err := peerCred(c)
	if err != nil {
		return nil, nil, err
	}
	if cred.Pid != o.pid || cred.Uid != o.uid {
		o.log.refused(cred, o.pid, time.Now())
		return nil, nil, fmt.Errorf("refused pid %d uid %d: not the dispatcher", cred.Pid, cred.Uid)
	}
	return c, peerInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, cred: *cred}, nil
}

func (onlyDispatcher) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred: server side only")
}

func (onlyDispatcher) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}
func (o onlyDispatcher) Clone() credentials.TransportCredentials { return o }
func (onlyDispatcher) OverrideServerName(string) error           { return nil }

// refusalLogEvery is the shortest time between two lines about refused
// connections.
const refusalLogEvery = time.Minute

// refusalLog reports refused connections on the worker's stderr, which yggd
// writes to its log: a refusal means that some local process went for the
// worker, which the host's administrator should hear about. Any local
// process can connect as often as it likes, though, so the lines are rate
// limited, at most one every refusalLogEvery; a line counts the refusals it
// stands for. (Refusals held back are reported with the next refusal after
// the interval, not on a timer.)
type refusalLog struct {
	w io.Writer

	mu   sync.Mutex
	last time.Time
	held int // refusals since the last line
}

func (r *refusalLog) refused(cred *unix.Ucred, dispatcher int32, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < refusalLogEvery {
		r.held++
		return
	}
	more := ""
	if r.held > 0 {
		more = fmt.Sprintf(" (and %d more since the last report)", r.held)
	}
	fmt.Fprintf(r.w, "worker: refused a connection from pid %d uid %d: only the dispatcher (pid %d) may call this worker%s\n",
		cred.Pid, cred.Uid, dispatcher, more)
	r.last, r.held = now, 0
}
