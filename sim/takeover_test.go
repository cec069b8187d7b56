package sim

import (
	"bytes"
	"slices"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeoverProbe is a test hook that publishes as the cloud from inside
// mochi's session takeover: when the old client's in-flight messages are
// cleared (after they were copied to the new client, before the new client
// is listed), the window takeoverGate closes.
type takeoverProbe struct {
	mqtt.HookBase
	client string
	during func() // called once, from inside the window
	once   sync.Once
}

func (p *takeoverProbe) ID() string { return "test-takeover-probe" }

func (p *takeoverProbe) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnQosDropped}, []byte{b})
}

func (p *takeoverProbe) OnQosDropped(cl *mqtt.Client, _ packets.Packet) {
	if cl.ID == p.client && cl.IsTakenOver() {
		p.once.Do(p.during)
	}
}

// TestTakeoverKeepsDelivery publishes at QoS 1 to a client while it takes
// over its session, which yggd does at every reconnection: the delivery
// must reach the new client, and the session's queued delivery must stay
// stored. Without takeoverGate mochi loses the publish.
func TestTakeoverKeepsDelivery(t *testing.T) {
	tests := []struct {
		name    string
		restart bool // the broker restarts, keeping sessions, while the client is away
		ungated bool // mochi alone, to show that the test provokes the loss
	}{
		{name: "reconnect"},
		{name: "reconnect_after_broker_restart", restart: true},
		{name: "mochi_alone_loses_publish", ungated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			in := "yggdrasil/h1/data/in"
			var s *Server
			published := make(chan error, 1) // the publish made during the takeover
			parked := make(chan struct{}, 1)
			probe := &takeoverProbe{client: "h1", during: func() {
				go func() { published <- s.Publish(ctx, in, []byte("during takeover"), 1, false) }()
				// Go on once the publish is done or waits for the gate;
				// not before, or it would miss the window.
				select {
				case err := <-published:
					published <- err
				case <-parked:
				case <-ctx.Done():
				}
			}}
			s = MustStart(t, &Server{TLSAddr: Off, APIAddr: Off, ungated: tt.ungated,
				testHooks: []mqtt.Hook{probe},
				onPark: func() {
					select {
					case parked <- struct{}{}:
					default:
					}
				}})

			c := mustDialRaw(ctx, t, s.broker.tcpAddr)
			c.mustConnect("h1")
			c.mustSubscribe(1, in)
			c.disconnect()
			// Queued while the client is away: the session has a message in
			// flight, so the takeover clears one from the old client.
			if err := s.Publish(ctx, in, []byte("queued"), 1, false); err != nil {
				t.Fatal(err)
			}
			c = mustResume(ctx, t, s, "h1", tt.restart)
			select {
			case err := <-published:
				if err != nil {
					t.Fatalf("publish during the takeover: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("the takeover never cleared the old client's messages, or the publish never ended")
			}
			// The publish has returned, so mochi has put the delivery in
			// flight for whichever client it found; the new one is listed.
			got := inflightPayloads(s, "h1")
			kept := slices.Contains(got, "during takeover")
			switch {
			case tt.ungated && kept:
				t.Fatalf("mochi alone kept the publish (%q in flight): the takeover no longer loses it, so takeoverGate may go", got)
			case tt.ungated:
				return // lost, as the test means to show
			case !kept || !slices.Contains(got, "queued"):
				t.Fatalf("h1 in flight after the takeover: %q, want both %q and %q", got, "queued", "during takeover")
			}

			// Both arrive. The publish that waited for the gate may arrive
			// twice: mochi resends what is in flight just after the CONNACK,
			// and by then it is; QoS 1 allows it.
			want := map[string]bool{"queued": true, "during takeover": true}
			pinged := false
		read:
			for {
				if len(want) == 0 && !pinged {
					c.mustWrite(rawPingreq << 4) // then expect nothing but duplicates
					pinged = true
				}
				p, err := c.read()
				switch {
				case err != nil:
					t.Fatalf("still waiting for %v: %v", want, err)
				case p.typ == rawPingresp && pinged:
					break read
				case p.typ != rawPublish:
					t.Fatalf("got %v, want PUBLISH", p)
				case p.payload() != "queued" && p.payload() != "during takeover":
					t.Fatalf("got %v, want only the two deliveries", p)
				default:
					c.puback(p.packetID())
					delete(want, p.payload())
				}
			}
			if left := storedInflight(s.broker.store, "h1"); len(left) != 0 {
				t.Errorf("session store keeps %d in-flight messages for h1 after every ack: %v", len(left), left)
			}
		})
	}
}

// TestTakeoverKeepsStoredSession checks the session store through a
// takeover: mochi clears the old client's in-flight messages once it has
// copied them to the new client, and the store must keep them for the new
// client (a broker restart before it acknowledges them would lose them).
func TestTakeoverKeepsStoredSession(t *testing.T) {
	ctx := testContext(t)
	in := "yggdrasil/h1/data/in"
	var s *Server
	during := make(chan []string, 1)
	probe := &takeoverProbe{client: "h1", during: func() { during <- storedInflight(s.broker.store, "h1") }}
	s = MustStart(t, &Server{TLSAddr: Off, APIAddr: Off, testHooks: []mqtt.Hook{probe}})

	c := mustDialRaw(ctx, t, s.broker.tcpAddr)
	c.mustConnect("h1")
	c.mustSubscribe(1, in)
	c.disconnect()
	if err := s.Publish(ctx, in, []byte("queued"), 1, false); err != nil {
		t.Fatal(err)
	}
	c = mustResume(ctx, t, s, "h1", false)
	select {
	case stored := <-during:
		if len(stored) != 1 {
			t.Errorf("session store during the takeover: %v, want the queued delivery", stored)
		}
	case <-ctx.Done():
		t.Fatal("the takeover never cleared the old client's messages")
	}
}

// inflightPayloads returns the payloads mochi holds in flight for client.
func inflightPayloads(s *Server, client string) []string {
	s.broker.mu.Lock()
	srv := s.broker.srv
	s.broker.mu.Unlock()
	cl, ok := srv.Clients.Get(client)
	if !ok {
		return nil
	}
	var out []string
	for _, p := range cl.State.Inflight.GetAll(false) {
		out = append(out, string(p.Payload))
	}
	return out
}
