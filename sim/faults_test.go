package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/fakes/logbuf"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// awaitHost polls the registry until cond holds for host id.
func awaitHost(ctx context.Context, s *Server, id string, cond func(Host) bool) (Host, error) {
	var last Host
	_, err := s.Await(ctx, 0, func(Message) bool {
		h, ok := s.Host(id)
		last = h
		return ok && cond(h)
	})
	if err != nil {
		return last, fmt.Errorf("host %s: last seen as %+v: %w", id, last, err)
	}
	return last, nil
}

func TestRegistryOnlineOfflineOnline(t *testing.T) {
	for _, retained := range []bool{true, false} {
		t.Run(fmt.Sprintf("retained_%v", retained), func(t *testing.T) {
			s := MustStart(t, &Server{TLSAddr: Off, Proxy: true})
			ctx := testContext(t)
			will := statusPayloadJSON(t, yggdrasil.StateOffline, time.Now().Add(-time.Hour))
			h := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "h1", will: will, willRetain: retained, noReconnect: true})
			h.mustPublish(h.topic("control", "out"), statusPayloadJSON(t, yggdrasil.StateOnline, time.Now()), retained)
			got, err := awaitHost(ctx, s, "h1", Host.Online)
			if err != nil {
				t.Fatal(err)
			}
			if got.StatusRetained != retained || string(got.Dispatchers) != `{"echo":null}` {
				t.Errorf("online host = %+v, want retained=%v and the echo dispatcher", got, retained)
			}

			// The connection breaks: the broker publishes the will.
			if err := s.Network(NetCut); err != nil {
				t.Fatal(err)
			}
			got, err = awaitHost(ctx, s, "h1", func(h Host) bool { return h.State == yggdrasil.StateOffline })
			if err != nil {
				t.Fatal(err)
			}
			if !got.StatusWill {
				t.Errorf("offline host = %+v, want the status to come from the will", got)
			}
			// The will's empty facts do not wipe the known ones.
			if !json.Valid(got.CanonicalFacts) || isEmptyFacts(got.CanonicalFacts) {
				t.Errorf("facts after the will = %s, want the online ones kept", got.CanonicalFacts)
			}

			// Back online.
			s.Network(NetHealthy)
			h2 := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "h1", noReconnect: true})
			h2.mustPublish(h2.topic("control", "out"), statusPayloadJSON(t, yggdrasil.StateOnline, time.Now()), retained)
			if _, err := awaitHost(ctx, s, "h1", Host.Online); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRegistryIgnoresOldAndRepeatedStatus(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off, OpenACL: true})
	ctx := testContext(t)
	topic := "yggdrasil/h1/control/out"
	now := time.Now()
	newer := statusPayloadJSON(t, yggdrasil.StateOnline, now)
	older := statusPayloadJSON(t, yggdrasil.StateOnline, now.Add(-time.Minute))
	for _, p := range [][]byte{newer, older, newer} {
		if err := s.Publish(ctx, topic, p, 1, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := awaitHost(ctx, s, "h1", Host.Online); err != nil {
		t.Fatal(err)
	}
	h, _ := s.Host("h1")
	var want yggdrasil.ConnectionStatus
	json.Unmarshal(newer, &want)
	if h.StatusMessageID != want.MessageID {
		t.Errorf("status id = %s, want the newer %s", h.StatusMessageID, want.MessageID)
	}
	if msgs, _ := s.HostMessages("h1"); len(msgs) != 3 {
		t.Errorf("history has %d messages, want 3", len(msgs))
	}
}

func TestRegistryNacks(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	ctx := testContext(t)
	h := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "h1"})
	nack := `{"type":"data","message_id":"n1","response_to":"m1","version":1,"directive":"nope",` +
		`"metadata":{"yggdrasil-error":"unknown-directive"},"content":{"error":"unknown-directive","message":"no worker handles nope"}}`
	h.mustPublish(h.topic("data", "out"), []byte(nack), false)
	got, err := awaitHost(ctx, s, "h1", func(h Host) bool { return len(h.Nacks) > 0 })
	if err != nil {
		t.Fatal(err)
	}
	n := got.Nacks[0]
	if n.ResponseTo != "m1" || n.Code != "unknown-directive" || n.Message != "no worker handles nope" || n.Directive != "nope" {
		t.Errorf("nack = %+v", n)
	}
}

func TestSessionsSurviveBrokerRestart(t *testing.T) {
	tests := []struct {
		name         string
		loseSessions bool
		publishFirst bool // publish before the restart (queued in the stored session) rather than after
		delivered    bool
	}{
		{"kept_published_after_restart", false, false, true},
		{"kept_published_before_restart", false, true, true},
		{"lost", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := MustStart(t, &Server{TLSAddr: Off})
			ctx := testContext(t)
			o := hostOpts{broker: s.BrokerURL(), id: "h1", persistent: true, noReconnect: true}
			h := mustConnectHost(t, o)
			h.mustSubscribe(h.topic("data", "in"))
			h.client.Disconnect(0)

			var id string
			publish := func() {
				var err error
				id, err = s.SendData(ctx, "h1", "echo", nil, json.RawMessage(`"queued"`))
				if err != nil {
					t.Fatal(err)
				}
			}
			if tt.publishFirst {
				publish()
			}
			if err := s.StopBroker(tt.loseSessions); err != nil {
				t.Fatal(err)
			}
			if err := s.Publish(ctx, "yggdrasil/h1/data/in", []byte("x"), 1, false); !errors.Is(err, ErrBrokerStopped) {
				t.Errorf("publish while stopped: err = %v, want ErrBrokerStopped", err)
			}
			if err := s.StartBroker(); err != nil {
				t.Fatal(err)
			}
			if !tt.publishFirst {
				publish()
			}
			h = mustConnectHost(t, o)
			if tt.delivered {
				if _, err := h.awaitMessage(ctx, id); err != nil {
					t.Fatal(err)
				}
				return
			}
			// The session is gone: publish a marker on a new subscription;
			// once it arrives, the lost message would have arrived before it.
			h.mustSubscribe(h.topic("data", "in"))
			if err := s.Publish(ctx, "yggdrasil/h1/data/in", []byte("marker"), 1, false); err != nil {
				t.Fatal(err)
			}
			if _, err := h.awaitMessage(ctx, "marker"); err != nil {
				t.Fatal(err)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			for _, m := range h.got {
				if string(m.Payload()) != "marker" {
					t.Errorf("got %s from a lost session", m.Payload())
				}
			}
		})
	}
}

func TestProxyFaults(t *testing.T) {
	s := MustStart(t, &Server{Proxy: true})
	ctx := testContext(t)
	h := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "h1"})
	h.mustSubscribe(h.topic("data", "in"))

	// Black hole: the connection stays, but nothing passes until healed;
	// then it passes, in order.
	if err := s.Network(NetBlackhole); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, "yggdrasil/h1/data/in", []byte("held"), 1, false); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if m, err := h.awaitMessage(short, "held"); err == nil {
		t.Fatalf("got %s through a black hole", m.Payload())
	}
	cancel()
	s.Network(NetHealthy)
	if _, err := h.awaitMessage(ctx, "held"); err != nil {
		t.Fatal(err)
	}

	// Cut: the connection is lost and new ones are reset.
	lost := make(chan struct{})
	h.client.Disconnect(0)
	o := hostOpts{broker: s.BrokerURL(), id: "h2", noReconnect: true}
	h2 := mustConnectHost(t, o)
	go func() {
		for h2.client.IsConnectionOpen() {
			time.Sleep(10 * time.Millisecond)
		}
		close(lost)
	}()
	if err := s.Network(NetCut); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-ctx.Done():
		t.Fatal("the client did not see the cut")
	}
	if _, err := connectHost(t, hostOpts{broker: s.BrokerURL(), id: "h3", noReconnect: true}); err == nil {
		t.Error("connect through a cut network succeeded")
	}
	s.Network(NetHealthy)
	mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "h3", noReconnect: true})

	// Delay: messages still pass, no sooner than the delay.
	if err := s.Delay(150 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	h4 := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "h4", noReconnect: true})
	h4.mustSubscribe(h4.topic("data", "in"))
	start := time.Now()
	s.Publish(ctx, "yggdrasil/h4/data/in", []byte("late"), 1, false)
	if _, err := h4.awaitMessage(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("a delayed message arrived after %v, want at least 150ms", d)
	}
	if st, _ := s.NetworkState(); st.Delay != 150*time.Millisecond || st.Mode != NetHealthy {
		t.Errorf("state = %+v", st)
	}
}

func TestFaultsWithoutProxy(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	if err := s.Network(NetCut); !errors.Is(err, ErrNoProxy) {
		t.Errorf("Network without proxy: err = %v, want ErrNoProxy", err)
	}
}

// TestStopBrokerWhileClientsLeave stops the broker while clean-session
// clients disconnect, which deletes them from mochi's client map: the stop
// must return and drop the clients that stayed. (The deadlock closeServer
// avoids needs a preemption inside a window of a few instructions; this
// loop does not reproduce it on demand, it guards the replacement closer.)
func TestStopBrokerWhileClientsLeave(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	ctx := testContext(t)
	for round := range 10 {
		var leaving []*host
		for i := range 8 {
			leaving = append(leaving, mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: fmt.Sprintf("r%d-%d", round, i), noReconnect: true}))
		}
		staying := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: fmt.Sprintf("r%d-stay", round), noReconnect: true})
		var wg sync.WaitGroup
		for _, h := range leaving {
			wg.Go(func() { h.client.Disconnect(0) })
		}
		stopped := make(chan error, 1)
		go func() { stopped <- s.StopBroker(false) }()
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("round %d: stopping the broker: %v", round, ctx.Err())
		}
		wg.Wait()
		for staying.client.IsConnected() {
			if ctx.Err() != nil {
				t.Fatalf("round %d: a client stayed connected to a stopped broker", round)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := s.StartBroker(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartBrokerWhilePortHeld: a broker started again takes its port back
// once whoever held it for a moment lets it go (a host dialling the stopped
// broker can hold it: a TCP self-connect).
func TestStartBrokerWhilePortHeld(t *testing.T) {
	var log logbuf.Buffer
	s := MustStart(t, &Server{TLSAddr: Off, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err := s.StopBroker(false); err != nil {
		t.Fatal(err)
	}
	held, err := net.Listen("tcp", strings.TrimPrefix(s.BrokerURL(), "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- s.StartBroker() }()
	// Let go once the broker has tried and is waiting for the port.
	ctx := testContext(t)
	for !strings.Contains(log.String(), "broker port in use, retrying") {
		select {
		case err := <-started:
			t.Fatalf("StartBroker while the port was held returned %v, want it to wait", err)
		case <-ctx.Done():
			t.Fatal("no log of the busy port")
		case <-time.After(10 * time.Millisecond):
		}
	}
	held.Close()
	if err := <-started; err != nil {
		t.Fatalf("StartBroker after the port was let go: %v", err)
	}
}

// TestStopBrokerWhileHostsConnect stops and starts the broker while
// clients keep connecting. Under -race (make test) it fails on mochi's own
// listener, which counts a connection in the server's wait group from the
// connection's goroutine, racing the stop's Wait; the sim's listener
// counts it before.
func TestStopBrokerWhileHostsConnect(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off, APIAddr: Off})
	addr := strings.TrimPrefix(s.BrokerURL(), "tcp://")
	connect := []byte{0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 4, 'h', 'o', 's', 't'}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Write(connect)
					c.Close()
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for range 30 {
		if err := s.StopBroker(false); err != nil {
			t.Fatal(err)
		}
		if err := s.StartBroker(); err != nil {
			t.Fatal(err)
		}
	}
}
