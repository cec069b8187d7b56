package mqtt_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// handler is the router side, doing nothing.
type handler struct{}

func (handler) Will() []byte                { return []byte(`{"state":"offline"}`) }
func (handler) WillTopic() string           { return "yggdrasil/host-1/control/out" }
func (handler) Connected()                  {}
func (handler) HandleControl([]byte)        {}
func (handler) HandleData([]byte) (ok bool) { return true }

// startSim starts the simulated cloud's broker on loopback.
func startSim(t *testing.T) *sim.Server {
	t.Helper()
	s := &sim.Server{TLSAddr: sim.Off, APIAddr: sim.Off, OpenACL: true, Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// silentBroker accepts TCP connections and never answers: a connect to it
// waits for ConnectTimeout.
func silentBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	conns.Go(func() {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	})
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	return "tcp://" + ln.Addr().String()
}

// refusingBroker returns the URL of a loopback port nothing listens on.
func refusingBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "tcp://" + addr
}

// run starts tr and stops it with the test.
func run(t *testing.T, tr *mqtt.Transport) { runWith(t, tr, handler{}) }

// runWith starts tr with h and stops it with the test.
func runWith(t *testing.T, tr *mqtt.Transport, h mqtt.Handler) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := tr.Run(ctx, h); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// awaitState reads reported states until one satisfies want, for at most
// 10 s.
func awaitState(t *testing.T, states <-chan mqtt.State, what string, want func(mqtt.State) bool) mqtt.State {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var seen []mqtt.State
	for {
		select {
		case s := <-states:
			if want(s) {
				return s
			}
			seen = append(seen, s)
		case <-timeout:
			t.Fatalf("no state %s within 10 s; saw %+v", what, seen)
		}
	}
}

func connecting(s mqtt.State) bool { return s == mqtt.State{} }
func retrying(s mqtt.State) bool   { return s.Retry > 0 && s.Err != nil && s.Broker == "" }
func offline(s mqtt.State) bool    { return s.Offline }

// TestTransportReportsStates follows a connection through its states:
// connecting, connected to the broker's URL, waiting to retry after the
// broker went away, connected again, and offline after a disconnect.
func TestTransportReportsStates(t *testing.T) {
	s := startSim(t)
	states := make(chan mqtt.State, 100)
	tr := mqtt.New(mqtt.Config{Brokers: []string{s.BrokerURL()}, ClientID: "host-1", MaxBackoff: time.Second,
		OnState: func(st mqtt.State) { states <- st }})
	run(t, tr)
	connected := func(st mqtt.State) bool { return st.Broker == s.BrokerURL() }

	awaitState(t, states, "connecting", connecting)
	awaitState(t, states, "connected to "+s.BrokerURL(), connected)

	if err := s.StopBroker(false); err != nil {
		t.Fatal(err)
	}
	st := awaitState(t, states, "waiting to retry", retrying)
	if st.Retry > 2*time.Second {
		t.Errorf("first retry in %v, want about a second", st.Retry)
	}
	if err := s.StartBroker(); err != nil {
		t.Fatal(err)
	}
	awaitState(t, states, "connected again", connected)

	tr.Disconnect()
	awaitState(t, states, "offline", offline)
}

// TestTransportAlive checks that Run's loop answers the watchdog's probe
// in each state, including a connect that waits for a silent broker, and
// that a loop stuck (here in its OnState callback) fails the probe by its
// deadline.
func TestTransportAlive(t *testing.T) {
	const answerWithin, failAfter = 10 * time.Second, 100 * time.Millisecond
	tests := []struct {
		name    string
		broker  func(t *testing.T) string
		then    func(tr *mqtt.Transport) // after the first state
		state   string
		want    func(mqtt.State) bool
		stuck   bool // OnState blocks once connected
		wantErr bool
	}{
		{name: "connecting", broker: silentBroker, state: "connecting", want: connecting},
		{name: "waiting_to_retry", broker: refusingBroker, state: "waiting to retry", want: retrying},
		{name: "connected", state: "connected", want: func(s mqtt.State) bool { return s.Broker != "" }},
		{name: "offline", then: (*mqtt.Transport).Disconnect, state: "offline", want: offline},
		{name: "stuck", stuck: true, wantErr: true, state: "connected", want: func(s mqtt.State) bool { return s.Broker != "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var broker string
			if tt.broker != nil {
				broker = tt.broker(t)
			} else {
				broker = startSim(t).BrokerURL()
			}
			states := make(chan mqtt.State, 100)
			release := make(chan struct{})
			tr := mqtt.New(mqtt.Config{Brokers: []string{broker}, ClientID: "host-1", ConnectTimeout: time.Hour,
				OnState: func(st mqtt.State) {
					states <- st
					if tt.stuck && st.Broker != "" {
						<-release
					}
				}})
			run(t, tr)
			defer close(release) // before run's cleanup stops the transport
			if tt.then != nil {
				awaitState(t, states, "connected", func(s mqtt.State) bool { return s.Broker != "" })
				tt.then(tr)
			}
			awaitState(t, states, tt.state, tt.want)

			deadline := answerWithin
			if tt.wantErr {
				deadline = failAfter
			}
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()
			err := tr.Alive(ctx)
			switch {
			case tt.wantErr && err == nil:
				t.Fatal("Alive = nil, want an error")
			case tt.wantErr && !strings.Contains(err.Error(), "mqtt transport loop"):
				t.Errorf("Alive = %v, want an error naming the transport loop", err)
			case !tt.wantErr && err != nil:
				t.Fatalf("Alive = %v, want nil", err)
			}
		})
	}
}
