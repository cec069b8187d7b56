package fleet

import (
	"math"
	"testing"

	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// TestHostCounts: the fleet's counts follow each host's latest state,
// whatever order the transport reports it in.
func TestHostCounts(t *testing.T) {
	up := mqtt.State{Broker: "tcp://127.0.0.1:1883"}
	type step struct {
		name              string
		do                func(h *host)
		connected, online int64
	}
	connect := func(h *host) { h.onState(up) }
	drop := func(h *host) { h.onState(mqtt.State{}) }
	acked := func(on bool) func(h *host) { return func(h *host) { h.onStatus(on) } }
	tests := []struct {
		name  string
		steps []step
	}{
		{"connect_then_ack", []step{
			{"connect", connect, 1, 0},
			{"ack_online", acked(true), 1, 1},
			{"drop", drop, 0, 0},
		}},
		{"ack_after_drop", []step{
			{"connect", connect, 1, 0},
			{"drop", drop, 0, 0},
			{"late_ack_online", acked(true), 0, 0},
		}},
		{"ack_before_connect_reported", []step{
			{"ack_online", acked(true), 0, 0},
			{"connect", connect, 1, 1},
		}},
		{"offline_status", []step{
			{"connect", connect, 1, 0},
			{"ack_online", acked(true), 1, 1},
			{"ack_offline", acked(false), 1, 0},
			{"drop_twice", func(h *host) { drop(h); drop(h) }, 0, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &Fleet{}
			h := &host{fleet: f, id: "h"}
			for _, s := range tt.steps {
				s.do(h)
				if st := f.Stats(); st.Connected != s.connected || st.Online != s.online {
					t.Fatalf("after %s: connected %d online %d, want %d %d", s.name, st.Connected, st.Online, s.connected, s.online)
				}
			}
		})
	}
}

func TestNewRefusesRates(t *testing.T) {
	for _, rate := range []float64{2e9, 1e7, math.Inf(1), math.NaN()} {
		if _, err := New(Config{Hosts: 1, Broker: "tcp://127.0.0.1:1", ConnectRate: rate}); err == nil {
			t.Errorf("connect rate %g: no error, want one (its ticker interval is under 1µs)", rate)
		}
	}
	for _, rate := range []float64{-1, 1e6, 0.5} {
		if _, err := New(Config{Hosts: 1, Broker: "tcp://127.0.0.1:1", ConnectRate: rate}); err != nil {
			t.Errorf("connect rate %g: %v", rate, err)
		}
	}
}
