package ipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// peerCred returns the kernel's word on who is at the other end of a UNIX
// socket connection (SO_PEERCRED): never the pid a request claims. On the
// accepting side it is the process that connected; on the connecting side,
// the process that listens.
func peerCred(c net.Conn) (*unix.Ucred, error) {
	var cred *unix.Ucred
	err := control(c, func(fd int) (err error) {
		cred, err = unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	return cred, nil
}

// control runs f on the file descriptor of a UNIX socket connection.
func control(c net.Conn, f func(fd int) error) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("%T is not a UNIX socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// peerProcess is the process at the other end of an accepted connection:
// its credentials as the kernel recorded them at connect(), and a pidfd
// that refers to that very process, so that a pid reused after it exits
// never passes for it.
type peerProcess struct {
	cred  unix.Ucred
	pidfd *os.File
}

// openPeer takes the peer's credentials and pidfd from an accepted
// connection. SO_PEERPIDFD (Linux 6.5) gives the pidfd of the process that
// connected, with no window at all. On older kernels the pidfd is opened
// from the pid, which leaves a window between connect() and this call in
// which the connecting process could exit and a new one take its pid.
func openPeer(c net.Conn) (*peerProcess, error) {
	cred, err := peerCred(c)
	if err != nil {
		return nil, err
	}
	var fd int
	err = control(c, func(sock int) (err error) {
		fd, err = unix.GetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		return err
	})
	if errors.Is(err, unix.ENOPROTOOPT) {
		fd, err = unix.PidfdOpen(int(cred.Pid), 0)
	}
	if err != nil {
		return nil, fmt.Errorf("peer pidfd of pid %d: %w", cred.Pid, err)
	}
	unix.CloseOnExec(fd)
	return &peerProcess{cred: *cred, pidfd: os.NewFile(uintptr(fd), "pidfd")}, nil
}

// alive reports whether the process that connected still runs (a zombie
// counts: its pid cannot be reused until it is reaped).
func (p *peerProcess) alive() bool {
	raw, err := p.pidfd.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), 0, nil, 0) }); err != nil {
		return false
	}
	return serr == nil
}

func (p *peerProcess) close() { p.pidfd.Close() }

// waitExit blocks until the peer process exits (true) or stop is closed
// (false). The wait is in Go's network poller (a pidfd becomes readable
// once its process has exited), not on a thread of its own.
func (p *peerProcess) waitExit(stop <-chan struct{}) (bool, error) {
	raw, err := p.pidfd.SyscallConn()
	if err != nil {
		return false, err
	}
	var fd int
	var derr error
	if err := raw.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return false, err
	}
	if derr != nil {
		return false, fmt.Errorf("watch pid %d: %w", p.cred.Pid, derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return false, fmt.Errorf("watch pid %d: %w", p.cred.Pid, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd") // non-blocking: registered with the poller
	readable := waitReadable(f)
	select {
	case <-readable:
		f.Close()
		return true, nil
	case <-stop:
		f.Close() // ends waitReadable
		<-readable
		return false, nil
	}
}

// waitReadable returns a channel closed when f is readable or closed.
func waitReadable(f *os.File) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		defer close(c)
		raw, err := f.SyscallConn()
		if err != nil {
			return
		}
		raw.Read(func(fd uintptr) bool {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(pfd, 0)
			return err != nil || n > 0
		})
	}()
	return c
}

// connInfo is the AuthInfo of one dispatcher connection: the peer process
// and, once admitted, the supervised worker it belongs to.
type connInfo struct {
	credentials.CommonAuthInfo
	peer *peerProcess

	mu    sync.Mutex
	ok    bool
	owner string
}

func (*connInfo) AuthType() string { return "peercred" }

func (c *connInfo) admitted() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owner, c.ok
}

func (c *connInfo) admit(owner string) {
	c.mu.Lock()
	c.owner, c.ok = owner, true
	c.mu.Unlock()
}

// peerConn closes the peer's pidfd with the connection.
type peerConn struct {
	net.Conn
	peer *peerProcess
	once sync.Once
}

func (c *peerConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.peer.close)
	return err
}

// peerCreds are server-side transport credentials that admit only
// processes of yggd's own user, and record who the peer is on every
// accepted connection. They add no encryption: the connection never
// leaves the host.
type peerCreds struct {
	uid     int // the only uid admitted
	refused func(cred *unix.Ucred, err error)
}

func (pc peerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	p, err := openPeer(c)
	if err != nil {
		pc.refused(nil, err)
		return nil, nil, err
	}
	if int(p.cred.Uid) != pc.uid {
		p.close()
		err := fmt.Errorf("peer pid %d runs as uid %d, not as yggd's uid %d", p.cred.Pid, p.cred.Uid, pc.uid)
		pc.refused(&p.cred, err)
		return nil, nil, err
	}
	info := &connInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, peer: p}
	return &peerConn{Conn: c, peer: p}, info, nil
}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred: server side only")
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}
func (p peerCreds) Clone() credentials.TransportCredentials { return p }
func (peerCreds) OverrideServerName(string) error           { return nil }
