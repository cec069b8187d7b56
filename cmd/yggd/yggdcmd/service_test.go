package yggdcmd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

func TestStatusText(t *testing.T) {
	brokers := []string{"ssl://a:8883", "wss://b:443"}
	tests := []struct {
		name  string
		state mqtt.State
		want  string
	}{
		{"connecting", mqtt.State{}, "connecting to ssl://a:8883, wss://b:443"},
		{"connected", mqtt.State{Broker: "ssl://a:8883"}, "connected to ssl://a:8883"},
		{"retry_after_error", mqtt.State{Retry: 7600 * time.Millisecond, Err: errors.New("connect: EOF")}, "reconnecting in 8s: connect: EOF"},
		{"retry_soon", mqtt.State{Retry: 640 * time.Millisecond, Err: errors.New("lost")}, "reconnecting in 640ms: lost"},
		{"reconnect_command", mqtt.State{Retry: 5 * time.Second}, "reconnecting in 5s, as a reconnect command asked"},
		{"offline", mqtt.State{Offline: true}, "staying offline after a disconnect command"},
		{"one_line", mqtt.State{Retry: time.Second, Err: errors.New("a\nb")}, "reconnecting in 1s: a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statusText(tt.state, brokers); got != tt.want {
				t.Errorf("statusText(%+v) = %q, want %q", tt.state, got, tt.want)
			}
		})
	}
}

// recorder is a notify function that keeps what it is sent, with the
// (bubble's) time since start.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	sent  []string
	pings []time.Duration
}

func (r *recorder) notify(state string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, state)
	if state == "WATCHDOG=1" {
		r.pings = append(r.pings, time.Since(r.start))
	}
	return nil
}

// probeFunc answers the first n probes (all when n < 0), then never again:
// a loop that wedged.
func probeFunc(n int) func(context.Context) error {
	var asked atomic.Int64
	return func(ctx context.Context) error {
		if n < 0 || asked.Add(1) <= int64(n) {
			return nil
		}
		<-ctx.Done()
		return context.Cause(ctx)
	}
}

// TestWatchdog runs the watchdog for three intervals of a bubble's time:
// pings every interval/2 while the probes answer, none once one fails (and
// one error naming the loop), pings without probes once yggd stops.
func TestWatchdog(t *testing.T) {
	const interval = 4 * time.Second
	every := func(n int) []time.Duration {
		var d []time.Duration
		for i := 1; i <= n; i++ {
			d = append(d, time.Duration(i)*interval/2)
		}
		return d
	}
	tests := []struct {
		name           string
		interval       time.Duration
		router, mqtt   int  // probes answered before the loop wedges; -1: all
		stopping       bool // yggd is stopping from the start
		wantPings      []time.Duration
		wantWedgedLoop string
	}{
		{name: "alive", interval: interval, router: -1, mqtt: -1, wantPings: every(6)},
		{name: "router_wedged", interval: interval, router: 0, mqtt: -1, wantWedgedLoop: "router"},
		{name: "router_wedged_later", interval: interval, router: 2, mqtt: -1, wantPings: every(2), wantWedgedLoop: "router"},
		{name: "transport_wedged", interval: interval, router: -1, mqtt: 1, wantPings: every(1), wantWedgedLoop: "mqtt transport"},
		{name: "stopping_pings_without_probes", interval: interval, router: 0, mqtt: 0, stopping: true, wantPings: every(6)},
		{name: "no_watchdog", router: -1, mqtt: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{start: time.Now()}
				var logs bytes.Buffer
				s := &service{log: slog.New(slog.NewTextHandler(&logs, nil)), notify: rec.notify, interval: tt.interval}
				running, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tt.stopping {
					cancel()
				}
				stop := s.ready(running, loopProbe{"router", probeFunc(tt.router)}, loopProbe{"mqtt transport", probeFunc(tt.mqtt)})
				time.Sleep(3*tt.interval + tt.interval/4)
				stop()

				if diff := cmp.Diff(tt.wantPings, rec.pings); diff != "" {
					t.Errorf("pings at (-want +got):\n%s", diff)
				}
				if rec.sent[0] != "READY=1" {
					t.Errorf("first sent %q, want READY=1", rec.sent[0])
				}
				errorLines := strings.Count(logs.String(), "level=ERROR")
				if tt.wantWedgedLoop == "" {
					if errorLines != 0 {
						t.Errorf("logged errors, want none:\n%s", logs.String())
					}
					return
				}
				loopAttr := slog.String("loop", tt.wantWedgedLoop)
				if strings.Contains(tt.wantWedgedLoop, " ") {
					loopAttr = slog.String("loop", strconv.Quote(tt.wantWedgedLoop))
				}
				if errorLines != 1 || !strings.Contains(logs.String(), loopAttr.String()) {
					t.Errorf("log, want one error naming loop %q:\n%s", tt.wantWedgedLoop, logs.String())
				}
				status := "STATUS=watchdog pings stopped: the " + tt.wantWedgedLoop + " loop did not answer its probe"
				if last := rec.sent[len(rec.sent)-1]; last != status {
					t.Errorf("last sent %q, want %q", last, status)
				}
			})
		})
	}
}

// TestServiceTellsSystemd runs the service against a real notify socket:
// READY=1, the connection's STATUS, STOPPING=1, and no transport state
// once stopping; WATCHDOG_PID of another process turns the watchdog off.
func TestServiceTellsSystemd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "1")

	s := newService(slog.New(slog.DiscardHandler), []string{"tcp://broker:1883"})
	if s.interval != 0 {
		t.Errorf("watchdog interval %v with another process's WATCHDOG_PID, want 0", s.interval)
	}
	s.transportState(mqtt.State{Broker: "tcp://broker:1883"})
	stop := s.ready(t.Context())
	s.stopping()
	s.transportState(mqtt.State{Retry: time.Second, Err: errors.New("lost")})
	stop()

	want := []string{"STATUS=connected to tcp://broker:1883", "READY=1", "STOPPING=1", "STATUS=stopping"}
	var got []string
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) // all were sent before
	buf := make([]byte, 1024)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		got = append(got, string(buf[:n]))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("datagrams (-want +got):\n%s", diff)
	}
}
