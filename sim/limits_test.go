package sim

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// mustDialBroker opens a raw TCP connection to s's plain listener.
func mustDialBroker(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.BrokerURL(), "tcp://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// awaitClosed reads from c until the broker closes it; it fails the test
// if that takes longer than within.
func awaitClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(within)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the broker kept the connection open for %v", within)
		}
		return
	}
}

// TestPacketTooLarge: a fixed header announcing a packet larger than the
// broker's bound ends the connection at once; the broker neither
// allocates the announced size nor waits for it.
func TestPacketTooLarge(t *testing.T) {
	s := MustStart(t, &Server{})
	c := mustDialBroker(t, s)
	// CONNECT, remaining length 268,435,455 (the largest MQTT allows).
	if _, err := c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}); err != nil {
		t.Fatal(err)
	}
	awaitClosed(t, c, 5*time.Second)
}
