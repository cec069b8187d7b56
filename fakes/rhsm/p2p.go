package rhsm

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// p2pServer is the private peer-to-peer D-Bus server that RegisterServer.Start
// opens (rhsm-dbus.md §3 and §8). godbus has no server side, so the server
// half of the SASL handshake is done here by hand, and the socket is then
// handed to godbus as if it were a client connection whose own handshake is
// answered by a script.
type p2pServer struct {
	dir  string
	guid string
	ln   *net.UnixListener
	addr string

	mu    sync.Mutex
	conns map[*dbus.Conn]bool
	wg    sync.WaitGroup
}

// startP2P listens on a fresh socket and serves each connection with
// export, which exports the per-connection Register object.
func startP2P(export func(*dbus.Conn) error, logf func(string, ...any)) (*p2pServer, error) {
	dir, err := os.MkdirTemp("", "rhsm")
	if err != nil {
		return nil, fmt.Errorf("make socket dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("make socket dir: %w", err)
	}
	path := filepath.Join(dir, "register")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("listen: %w", err)
	}
	var g [16]byte
	rand.Read(g[:])
	s := &p2pServer{dir: dir, ln: ln, guid: hex.EncodeToString(g[:]), conns: map[*dbus.Conn]bool{}}
	s.addr = "unix:path=" + path + ",guid=" + s.guid
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return // closed
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if err := s.serve(c, export); err != nil {
					logf("private connection refused", "err", err)
					c.Close()
				}
			}()
		}
	}()
	return s, nil
}

// serve authenticates one connection and exports the Register object on it.
func (s *p2pServer) serve(c *net.UnixConn, export func(*dbus.Conn) error) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	uid, err := peerUID(c)
	if err != nil {
		return err
	}
	if uid != uint32(os.Getuid()) && uid != 0 {
		return fmt.Errorf("peer uid %d is neither root nor %d", uid, os.Getuid())
	}
	rest, err := serverAuth(c, uid, s.guid)
	if err != nil {
		return fmt.Errorf("authenticate: %w", err)
	}
	c.SetDeadline(time.Time{})
	conn, err := dbus.NewConn(&scriptedClient{Conn: c, guid: s.guid, rest: rest})
	if err != nil {
		return err
	}
	// Export before Auth starts the reader: the client's first call may
	// already be in rest, and must find the object.
	if err := export(conn); err != nil {
		conn.Close()
		return err
	}
	s.mu.Lock()
	if s.conns == nil { // server closed meanwhile
		s.mu.Unlock()
		conn.Close()
		return errors.New("server closed")
	}
	s.conns[conn] = true
	s.mu.Unlock()
	if err := conn.Auth([]dbus.Auth{dbus.AuthAnonymous()}); err != nil {
		conn.Close()
		return fmt.Errorf("start connection: %w", err)
	}
	s.wg.Add(1)
	go func() { // forget the connection when the client hangs up
		defer s.wg.Done()
		<-conn.Context().Done()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
	}()
	return nil
}

// close stops listening, closes every private connection and waits.
func (s *p2pServer) close() {
	s.ln.Close()
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	s.wg.Wait()
	os.RemoveAll(s.dir)
}

func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("read peer credentials: %w", cerr)
	}
	return cred.Uid, nil
}

// serverAuth runs the server half of the D-Bus SASL exchange, accepting
// EXTERNAL for uid, and returns the bytes read past BEGIN (a client may send
// its first message in the same packet).
func serverAuth(c io.ReadWriter, uid uint32, guid string) ([]byte, error) {
	r := bufio.NewReader(c)
	nul, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if nul != 0 {
		return nil, errors.New("first byte is not NUL")
	}
	reply := func(s string) error { _, err := io.WriteString(c, s+"\r\n"); return err }
	checkUID := func(hexUID string) bool {
		if hexUID == "" {
			return true // no claim: the socket credentials decide
		}
		b, err := hex.DecodeString(hexUID)
		if err != nil {
			return false
		}
		n, err := strconv.ParseUint(string(b), 10, 32)
		return err == nil && uint32(n) == uid
	}
	authed, waitingData := false, false
	for range 16 {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			reply("ERROR empty command")
			continue
		}
		switch {
		case f[0] == "AUTH" && len(f) >= 2 && f[1] == "EXTERNAL" && len(f) == 3:
			if checkUID(f[2]) {
				authed = true
				err = reply("OK " + guid)
			} else {
				err = reply("REJECTED EXTERNAL")
			}
		case f[0] == "AUTH" && len(f) == 2 && f[1] == "EXTERNAL":
			waitingData = true
			err = reply("DATA")
		case f[0] == "DATA" && waitingData:
			waitingData = false
			arg := ""
			if len(f) > 1 {
				arg = f[1]
			}
			if checkUID(arg) {
				authed = true
				err = reply("OK " + guid)
			} else {
				err = reply("REJECTED EXTERNAL")
			}
		case f[0] == "AUTH", f[0] == "CANCEL", f[0] == "ERROR":
			waitingData = false
			err = reply("REJECTED EXTERNAL")
		case f[0] == "NEGOTIATE_UNIX_FD" && authed:
			err = reply("ERROR unix fd passing is not supported")
		case f[0] == "BEGIN" && authed:
			rest := make([]byte, r.Buffered())
			io.ReadFull(r, rest)
			return rest, nil
		default:
			err = reply("ERROR unexpected command")
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, errors.New("too many authentication commands")
}

// scriptedClient is the socket as godbus's client code sees it: until godbus
// writes BEGIN, its handshake lines are answered from a script and never
// reach the peer; after that, bytes pass through, starting with those the
// server-side handshake read ahead.
type scriptedClient struct {
	net.Conn
	guid string

	mu      sync.Mutex
	through bool
	pending bytes.Buffer // scripted answers for godbus to read
	line    []byte       // partial line godbus is writing
	rest    []byte       // bytes read ahead past BEGIN
}

func (s *scriptedClient) Read(p []byte) (int, error) {
	s.mu.Lock()
	if !s.through {
		n, _ := s.pending.Read(p)
		s.mu.Unlock()
		if n == 0 {
			return 0, errors.New("handshake script: nothing to read")
		}
		return n, nil
	}
	if len(s.rest) > 0 {
		n := copy(p, s.rest)
		s.rest = s.rest[n:]
		s.mu.Unlock()
		return n, nil
	}
	s.mu.Unlock()
	return s.Conn.Read(p)
}

func (s *scriptedClient) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.through {
		s.mu.Unlock()
		return s.Conn.Write(p)
	}
	defer s.mu.Unlock()
	for _, b := range p {
		if b == 0 && len(s.line) == 0 {
			continue // the NUL byte
		}
		s.line = append(s.line, b)
		if b != '\n' {
			continue
		}
		cmd := strings.Fields(string(s.line))
		s.line = s.line[:0]
		switch {
		case len(cmd) == 0:
		case cmd[0] == "AUTH" && len(cmd) == 1:
			s.pending.WriteString("REJECTED ANONYMOUS\r\n")
		case cmd[0] == "AUTH":
			s.pending.WriteString("OK " + s.guid + "\r\n")
		case cmd[0] == "NEGOTIATE_UNIX_FD":
			s.pending.WriteString("ERROR\r\n")
		case cmd[0] == "BEGIN":
			s.through = true
		}
	}
	return len(p), nil
}
