package sim

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// testRegistry is a registry whose clock the test moves.
type testRegistry struct {
	*registry
	t   *testing.T
	now time.Time
	seq int64
}

func newTestRegistry(t *testing.T, forgetAfter time.Duration) *testRegistry {
	tr := &testRegistry{registry: newRegistry(yggdrasil.DefaultTopicPrefix, 200, testLogger(t)), t: t,
		now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	tr.forgetAfter = forgetAfter
	tr.registry.now = func() time.Time { return tr.now }
	return tr
}

func (tr *testRegistry) advance(d time.Duration) { tr.now = tr.now.Add(d) }

// status has host publish a connection-status with state at the current
// time.
func (tr *testRegistry) status(host, state string) {
	tr.t.Helper()
	tr.observeAt(yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, host, yggdrasil.KindControl, yggdrasil.DirOut),
		statusPayloadJSON(tr.t, state, tr.now))
}

// toHost has the cloud send host a data message at the current time.
func (tr *testRegistry) toHost(host string) {
	tr.observeAt(yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, host, yggdrasil.KindData, yggdrasil.DirIn),
		[]byte(`{"type":"data","message_id":"m","version":1,"directive":"echo","content":null}`))
}

func (tr *testRegistry) observeAt(topic string, payload []byte) {
	m := newMessage(yggdrasil.DefaultTopicPrefix, topic, payload)
	tr.seq++
	m.Seq, m.Time = tr.seq, tr.now
	tr.observe(m)
}

func ids(hosts []Host) []string {
	out := []string{}
	for _, h := range hosts {
		out = append(out, h.ID)
	}
	return out
}

func TestRegistryIndex(t *testing.T) {
	tr := newTestRegistry(t, -1)
	for _, id := range []string{"h3", "h1", "h5", "h2", "h4"} {
		tr.status(id, yggdrasil.StateOnline)
	}
	tr.status("h2", yggdrasil.StateOffline)
	tr.status("h4", yggdrasil.StateOnline) // again: no second entry
	tr.toHost("h0")                        // known, never online

	tests := []struct {
		name string
		got  any
		want any
	}{
		{"list_sorted", ids(tr.list()), []string{"h0", "h1", "h2", "h3", "h4", "h5"}},
		{"online_count", tr.onlineCount(), 4},
		{"online_all", ids(tr.onlinePage(0, math.MaxInt)), []string{"h1", "h3", "h4", "h5"}},
		{"online_page", ids(tr.onlinePage(1, 3)), []string{"h3", "h4"}},
		{"online_page_past_end", ids(tr.onlinePage(3, 10)), []string{"h5"}},
		{"online_page_beyond", ids(tr.onlinePage(7, 9)), []string{}},
		{"online_ids_page", tr.onlineIDs(2, 4), []string{"h4", "h5"}},
		{"online_ids_beyond", tr.onlineIDs(5, 6), []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("offline_leaves_online_index", func(t *testing.T) {
		tr.status("h1", yggdrasil.StateOffline)
		tr.status("h5", yggdrasil.StateOffline)
		if got, want := tr.onlineIDs(0, math.MaxInt), []string{"h3", "h4"}; !cmp.Equal(got, want) {
			t.Errorf("online = %v, want %v", got, want)
		}
	})
}

// TestRegistryIndexMatchesHosts changes many hosts in a scrambled order
// and checks that the indexes are what sorting the map gives.
func TestRegistryIndexMatchesHosts(t *testing.T) {
	tr := newTestRegistry(t, -1)
	const n = 500
	for i := range 3 * n {
		id := fmt.Sprintf("host-%04d", (i*7919)%n)
		state := yggdrasil.StateOnline
		if i%3 == 1 {
			state = yggdrasil.StateOffline
		}
		tr.status(id, state)
	}
	var wantAll, wantOnline []string
	for i := range n {
		id := fmt.Sprintf("host-%04d", i)
		wantAll = append(wantAll, id)
		if tr.hosts[id].Online() {
			wantOnline = append(wantOnline, id)
		}
	}
	if diff := cmp.Diff(wantAll, ids(tr.list())); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantOnline, tr.onlineIDs(0, math.MaxInt)); diff != "" {
		t.Errorf("online (-want +got):\n%s", diff)
	}
}

func TestRegistryForgetAfter(t *testing.T) {
	const after = 24 * time.Hour
	type step struct {
		do      func(tr *testRegistry)
		advance time.Duration
	}
	offline := func(tr *testRegistry) { tr.status("h1", yggdrasil.StateOffline) }
	online := func(tr *testRegistry) { tr.status("h1", yggdrasil.StateOnline) }
	toHost := func(tr *testRegistry) { tr.toHost("h1") }
	tests := []struct {
		name        string
		forgetAfter time.Duration
		steps       []step
		wantKnown   bool
	}{
		{"offline_kept_until_due", after, []step{{online, time.Hour}, {offline, after}}, true},
		{"offline_forgotten_when_due", after, []step{{online, time.Hour}, {offline, after + time.Second}}, false},
		{"online_never_forgotten", after, []step{{online, 10 * after}}, true},
		{"back_online_kept", after, []step{{offline, after - time.Hour}, {online, 10 * after}}, true},
		{"offline_again_clock_restarts", after, []step{{offline, after - time.Hour}, {online, time.Hour}, {offline, after - time.Second}}, true},
		{"offline_again_then_due", after, []step{{offline, after - time.Hour}, {online, time.Hour}, {offline, after + time.Second}}, false},
		{"message_from_host_resets", after, []step{{offline, after - time.Hour}, {offline, after - time.Hour}}, true},
		{"message_to_host_does_not_reset", after, []step{{offline, after - time.Hour}, {toHost, 2 * time.Hour}}, false},
		{"never_online_forgotten", after, []step{{toHost, after + time.Second}}, false},
		{"negative_keeps_all", -1, []step{{offline, 100 * after}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestRegistry(t, tt.forgetAfter)
			for _, s := range tt.steps {
				s.do(tr)
				tr.advance(s.advance)
			}
			_, known := tr.host("h1")
			if known != tt.wantKnown {
				t.Errorf("host known = %v, want %v", known, tt.wantKnown)
			}
			if got := ids(tr.list()); known != (len(got) == 1) {
				t.Errorf("list = %v, want h1 listed: %v", got, known)
			}
			if _, ok := tr.history("h1"); ok != known {
				t.Errorf("history found = %v, want %v", ok, known)
			}
		})
	}
}

// TestRegistryForgetsOnlyDue forgets the hosts that are due among many
// and keeps the rest, whatever order they went offline in.
func TestRegistryForgetsOnlyDue(t *testing.T) {
	tr := newTestRegistry(t, time.Hour)
	for i := range 10 {
		tr.status(fmt.Sprintf("h%d", i), yggdrasil.StateOffline)
		tr.advance(10 * time.Minute)
	}
	// h0 went offline 100 minutes ago, h9 10 minutes ago: h0 to h3 are due.
	tr.status("h1", yggdrasil.StateOnline)
	tr.status("h2", yggdrasil.StateOffline) // seen again now
	want := []string{"h1", "h2", "h4", "h5", "h6", "h7", "h8", "h9"}
	if diff := cmp.Diff(want, ids(tr.list())); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	tr.advance(2 * time.Hour)
	if diff := cmp.Diff([]string{"h1"}, ids(tr.list())); diff != "" {
		t.Errorf("list two hours later (-want +got):\n%s", diff)
	}
}

// TestRegistryForgetsOnTime checks that a host seen again while others
// went idle is forgotten when it is due, not once those queued after it
// are.
func TestRegistryForgetsOnTime(t *testing.T) {
	tr := newTestRegistry(t, 24*time.Hour)
	tr.status("b", yggdrasil.StateOffline) // t0
	tr.advance(time.Hour)
	tr.status("a", yggdrasil.StateOffline) // t0+1h
	tr.advance(2 * time.Hour)
	tr.status("a", yggdrasil.StateOffline) // a seen again at t0+3h
	tr.advance(time.Hour)
	tr.status("c", yggdrasil.StateOffline) // t0+4h
	tr.advance(20*time.Hour + time.Second) // t0+24h+1s: b is due
	if diff := cmp.Diff([]string{"a", "c"}, ids(tr.list())); diff != "" {
		t.Errorf("list when b is due (-want +got):\n%s", diff)
	}
	tr.advance(3 * time.Hour) // t0+27h+1s: a is due, c is not
	if diff := cmp.Diff([]string{"c"}, ids(tr.list())); diff != "" {
		t.Errorf("list when a is due (-want +got):\n%s", diff)
	}
}

// BenchmarkV2Connections lists the first page of connections with 10,000
// hosts online: the index makes it cost the page, not the hosts.
func BenchmarkV2Connections(b *testing.B) {
	s := &Server{TLSAddr: Off, APIAddr: Off, Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sent := time.Now()
	for i := range 10_000 {
		host := fmt.Sprintf("host-%05d", i)
		cs := yggdrasil.ConnectionStatus{Type: yggdrasil.TypeConnectionStatus, MessageID: yggdrasil.NewMessageID(),
			Version: 1, Sent: sent, Content: yggdrasil.StatusContent{State: yggdrasil.StateOnline,
				Dispatchers:    map[string]map[string]string{"echo": nil},
				CanonicalFacts: yggdrasil.CanonicalFacts{FQDN: host + ".example"}}}
		p, err := json.Marshal(cs)
		if err != nil {
			b.Fatal(err)
		}
		m := newMessage(s.Prefix, yggdrasil.Topic(s.Prefix, host, yggdrasil.KindControl, yggdrasil.DirOut), p)
		m.Seq = int64(i + 1)
		s.registry.observe(m)
	}
	if n := s.registry.onlineCount(); n != 10_000 {
		b.Fatalf("%d hosts online, want 10000", n)
	}
	for _, q := range []string{"", "?limit=100&offset=5000"} {
		b.Run("query="+q, func(b *testing.B) {
			for b.Loop() {
				w := httptest.NewRecorder()
				s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+CloudConnectorPath+"/v2/connections"+q, nil))
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
