package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/fakes/logbuf"
	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/sim/fleet"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// testLogger writes warnings to the test's output until the test ends.
func testLogger(t *testing.T) *slog.Logger { return logbuf.TestLogger(t, slog.LevelWarn) }

// AwaitHosts polls the sim until cond holds for every host of f, and
// returns an error naming a host for which it does not when ctx ends.
func AwaitHosts(ctx context.Context, s *sim.Server, f *fleet.Fleet, n int, cond func(sim.Host, bool) bool) error {
	_, err := s.Await(ctx, 0, func(sim.Message) bool {
		for i := range n {
			if h, ok := s.Host(f.ClientID(i)); !cond(h, ok) {
				return false
			}
		}
		return true
	})
	if err != nil {
		for i := range n {
			if h, ok := s.Host(f.ClientID(i)); !cond(h, ok) {
				return fmt.Errorf("host %s is %q (known %v): %w", f.ClientID(i), h.State, ok, err)
			}
		}
	}
	return err
}

// awaitStats polls the fleet's stats until cond holds, and returns an
// error with the last stats when ctx ends first.
func awaitStats(ctx context.Context, f *fleet.Fleet, cond func(fleet.Stats) bool) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st := f.Stats()
		if cond(st) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet stats %+v: %w", st, ctx.Err())
		case <-tick.C:
		}
	}
}

func TestFleet(t *testing.T) {
	for _, tt := range []struct {
		name     string
		stateDir bool
	}{
		{"journal_in_memory", false},
		{"journal_on_disk", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &sim.Server{TLSAddr: sim.Off, Logger: testLogger(t)}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			const n = 5
			cfg := fleet.Config{Hosts: n, Broker: s.BrokerURL(), ClientPrefix: "h", ConnectRate: -1, Log: testLogger(t)}
			if tt.stateDir {
				cfg.StateDir = t.TempDir()
			}
			f, err := fleet.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			fctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- f.Run(fctx) }()
			var stopped bool
			stopFleet := func() error {
				if stopped {
					return nil
				}
				stopped = true
				stop()
				return <-done
			}
			defer stopFleet()

			if err := AwaitHosts(ctx, s, f, n, func(h sim.Host, ok bool) bool { return ok && h.Online() }); err != nil {
				t.Fatalf("hosts online: %v", err)
			}
			h, _ := s.Host("h3")
			if got := string(h.Dispatchers); got != `{"echo":{"worker":"fleet-echo"}}` {
				t.Errorf("dispatchers = %s, want the echo worker", got)
			}
			if st := f.Stats(); st.Connected != n || st.Started != n {
				t.Errorf("stats = %+v, want %d started and connected", st, n)
			}
			if err := awaitStats(ctx, f, func(st fleet.Stats) bool { return st.Online == n }); err != nil {
				t.Error(err)
			}

			t.Run("ping", func(t *testing.T) {
				if _, _, err := s.Ping(ctx, "h2"); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("echo", func(t *testing.T) {
				m, d := roundTrip(ctx, t, s, "h4", "echo", map[string]string{"k": "v"}, json.RawMessage(`{"hello":[1,2]}`))
				if m.Host != "h4" || string(d.Content) != `{"hello":[1,2]}` || d.Metadata["k"] != "v" || d.Directive != "echo" {
					t.Errorf("answer = %s from %s, want the content and metadata back from h4", m.Payload, m.Host)
				}
			})
			t.Run("measure", func(t *testing.T) {
				m := &fleet.Measure{API: s.APIURL(), ListCalls: 3}
				for i := range n {
					m.Hosts = append(m.Hosts, f.ClientID(i))
				}
				got, err := m.Run(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got.Online != n || got.ListCalls != 3 || got.Pinged != n || got.Answered != n || len(got.Failures) > 0 {
					t.Errorf("figures = %+v, want %d online, 3 listings, %d pings answered", got, n, n)
				}
			})
			t.Run("unknown_directive_refused", func(t *testing.T) {
				m, d := roundTrip(ctx, t, s, "h1", "nope", nil, nil)
				if d.Metadata[yggdrasil.MetadataError] == "" {
					t.Errorf("answer = %s, want a negative acknowledgement", m.Payload)
				}
			})

			// Stopping publishes each host's offline status.
			if err := stopFleet(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if err := AwaitHosts(ctx, s, f, n, func(h sim.Host, ok bool) bool { return ok && h.State == yggdrasil.StateOffline }); err != nil {
				t.Fatalf("hosts offline: %v", err)
			}
			if st := f.Stats(); st.Connected != 0 || st.Online != 0 {
				t.Errorf("stats after stop = %+v, want none connected or online", st)
			}
		})
	}
}

// TestRunStopsStartedHostsOnError makes the fourth host's journal
// directory impossible: Run returns its error at once, having stopped the
// three hosts it had started. Their broker refuses connections: a sim
// closed while mochi accepts a connection races in mochi.
func TestRunStopsStartedHostsOnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := "tcp://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "h3"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := fleet.New(fleet.Config{Hosts: 5, Broker: broker, ClientPrefix: "h", ConnectRate: -1, StateDir: dir, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = f.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "host h3") {
		t.Fatalf("Run = %v, want an error about host h3", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Run returned only when its context ended")
	}
	if st := f.Stats(); st.Started != 3 || st.Connected != 0 || st.Online != 0 {
		t.Errorf("stats = %+v, want 3 started, none left connected or online", st)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  fleet.Config
	}{
		{"no_hosts", fleet.Config{Broker: "tcp://127.0.0.1:1"}},
		{"no_broker", fleet.Config{Hosts: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := fleet.New(tt.cfg); err == nil {
				t.Errorf("New(%+v) = nil error, want one", tt.cfg)
			}
		})
	}
}

func TestClientIDsSortInOrder(t *testing.T) {
	f, err := fleet.New(fleet.Config{Hosts: 101, Broker: "tcp://127.0.0.1:1", ClientPrefix: "x-"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]string{0: "x-000", 7: "x-007", 100: "x-100"} {
		if got := f.ClientID(i); got != want {
			t.Errorf("ClientID(%d) = %q, want %q", i, got, want)
		}
	}
}

// roundTrip sends a data message to host through the sim and returns the
// answer, decoded too.
func roundTrip(ctx context.Context, t *testing.T, s *sim.Server, host, directive string, metadata map[string]string, content json.RawMessage) (sim.Message, yggdrasil.Data) {
	t.Helper()
	id, err := s.SendData(ctx, host, directive, metadata, content)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.AwaitAnswer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var d yggdrasil.Data
	if err := json.Unmarshal(m.Payload, &d); err != nil {
		t.Fatalf("answer %s: %v", m.Payload, err)
	}
	return m, d
}
