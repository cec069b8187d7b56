package check

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil/config"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

// outcome keeps the fields a test asserts on: the status and whether
// there is advice.
type outcome struct {
	Status    Status
	HasAdvice bool
}

func outcomeOf(r Result) outcome { return outcome{r.Status, r.Advice != ""} }

var (
	okOutcome   = outcome{OK, false}
	errOutcome  = outcome{Error, true}
	warnOutcome = outcome{Warning, true}
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		file string
		want outcome
		msg  string
	}{
		{"ok", `broker = ["tcp://h:1883"]` + "\nclient-id = \"h1\"\n", okOutcome, "parses"},
		{"unknown_key", `broker = ["tcp://h:1883"]` + "\nclient-id = \"h1\"\nbrokers = []\n", errOutcome, "unknown key brokers"},
		{"wrong_type", `broker = "tcp://h:1883"`, errOutcome, "broker must be a list of URLs"},
		{"not_toml", `broker = [`, errOutcome, "read config"},
		{"invalid_value", `broker = ["h:1883"]` + "\nclient-id = \"h1\"\n", errOutcome, "has no scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, r := Config(path)
			if got := outcomeOf(r); got != tt.want || !strings.Contains(r.Message, tt.msg) {
				t.Errorf("Config = %+v, want %+v with %q", r, tt.want, tt.msg)
			}
		})
	}
}

func TestKeyFile(t *testing.T) {
	euid := os.Geteuid()
	type keyCase struct {
		name    string
		mode    os.FileMode
		missing bool
		yggdUID int
		want    outcome
		advice  string
	}
	tests := []keyCase{
		{name: "owner_only", mode: 0o600, yggdUID: euid, want: okOutcome},
		{name: "owner_read_only", mode: 0o400, yggdUID: euid, want: okOutcome},
		{name: "world_readable", mode: 0o644, yggdUID: euid, want: errOutcome, advice: "chmod 600 "},
		{name: "group_readable", mode: 0o640, yggdUID: euid, want: errOutcome, advice: "chmod 600 "},
		{name: "missing", missing: true, yggdUID: euid, want: errOutcome},
	}
	if euid != 0 {
		tests = append(tests, keyCase{name: "owned_by_another_user", mode: 0o600, yggdUID: euid + 1, want: errOutcome, advice: "chown root "})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if !tt.missing {
				if err := os.WriteFile(path, []byte("key"), tt.mode); err != nil {
					t.Fatal(err)
				}
				os.Chmod(path, tt.mode)
			}
			r := KeyFile(path, tt.yggdUID)
			if got := outcomeOf(r); got != tt.want || !strings.HasPrefix(r.Advice, tt.advice) {
				t.Errorf("KeyFile = %+v, want %+v with advice %q", r, tt.want, tt.advice)
			}
		})
	}
}

func TestValidity(t *testing.T) {
	now := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name                string
		notBefore, notAfter time.Time
		want                outcome
	}{
		{"valid_a_year", now.Add(-day), now.Add(365 * day), okOutcome},
		{"expires_in_29_days", now.Add(-day), now.Add(29 * day), warnOutcome},
		{"expired", now.Add(-2 * day), now.Add(-day), errOutcome},
		{"not_yet_valid", now.Add(day), now.Add(365 * day), errOutcome},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Validity("cert.pem", &x509.Certificate{NotBefore: tt.notBefore, NotAfter: tt.notAfter}, now)
			if got := outcomeOf(r); got != tt.want {
				t.Errorf("Validity = %+v, want %+v", r, tt.want)
			}
		})
	}
}

func TestClientID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want outcome
	}{
		{"286d5969-4ae3-4cf6-9638-e164895a8dab", okOutcome},
		{"host.example_1", okOutcome},
		{"a/b", errOutcome},
		{"a+b", errOutcome},
		{"a#", errOutcome},
		{"", errOutcome},
	} {
		t.Run(tt.id, func(t *testing.T) {
			if got := outcomeOf(clientID(tt.id, "the certificate's CN")); got != tt.want {
				t.Errorf("clientID(%q) = %+v, want %+v", tt.id, got, tt.want)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	ca, err := sim.OpenCA("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cert1, key1, _ := ca.IssueClient("h1")
	_, key2, _ := ca.IssueClient("h2")
	c1, k1, k2 := write("c1.pem", cert1), write("k1.pem", key1), write("k2.pem", key2)
	caFile := write("ca.pem", ca.CertPEM())
	now := time.Now()

	tests := []struct {
		name     string
		cfg      config.Config
		want     map[string]Status
		clientID string
	}{
		{"matching_pair", config.Config{CertFile: c1, KeyFile: k1, CARoot: caFile},
			map[string]Status{NameCertificate: OK, NameKeyFile: OK, NameValidity: OK, NameClientID: OK}, "h1"},
		{"mismatched_key", config.Config{CertFile: c1, KeyFile: k2, CARoot: caFile},
			map[string]Status{NameCertificate: Error, NameKeyFile: OK, NameValidity: Skipped, NameClientID: Skipped}, ""},
		{"missing_cert", config.Config{CertFile: filepath.Join(dir, "none.pem"), KeyFile: k1},
			map[string]Status{NameCertificate: Error, NameKeyFile: OK, NameValidity: Skipped, NameClientID: Skipped}, ""},
		{"no_certificate", config.Config{ClientID: "h9"},
			map[string]Status{NameCertificate: Skipped, NameKeyFile: Skipped, NameValidity: Skipped, NameClientID: OK}, "h9"},
		{"ca_root_missing", config.Config{CertFile: c1, KeyFile: k1, CARoot: filepath.Join(dir, "none.pem")},
			map[string]Status{NameCertificate: Error, NameKeyFile: OK, NameValidity: OK, NameClientID: OK}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, res := Identity(tt.cfg, now, os.Geteuid())
			got := map[string]Status{}
			for _, r := range res {
				got[r.Name] = r.Status
				if r.Status != OK && r.Status != Skipped && r.Advice == "" {
					t.Errorf("%s: %s without advice", r.Name, r.Status)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if tt.clientID != "" && id.ClientID != tt.clientID {
				t.Errorf("client id = %q, want %q", id.ClientID, tt.clientID)
			}
		})
	}
}

func TestWorkerDir(t *testing.T) {
	euid := os.Geteuid()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the worker dir
		want  []outcome
	}{
		{"ok", func(t *testing.T, dir string) string {
			mustWrite(t, filepath.Join(dir, "echo-worker"), 0o755)
			mustWrite(t, filepath.Join(dir, "README"), 0o644) // not a worker name
			return dir
		}, []outcome{okOutcome, okOutcome}},
		{"missing", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "none")
		}, []outcome{errOutcome, {Skipped, false}}},
		{"writable_by_others", func(t *testing.T, dir string) string {
			os.Chmod(dir, 0o777)
			return dir
		}, []outcome{errOutcome, {Skipped, false}}},
		{"not_executable", func(t *testing.T, dir string) string {
			mustWrite(t, filepath.Join(dir, "echo-worker"), 0o644)
			return dir
		}, []outcome{okOutcome, errOutcome}},
		{"worker_writable_by_group", func(t *testing.T, dir string) string {
			mustWrite(t, filepath.Join(dir, "echo-worker"), 0o775)
			return dir
		}, []outcome{okOutcome, errOutcome}},
		{"empty", func(t *testing.T, dir string) string { return dir }, []outcome{okOutcome, warnOutcome}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, err := os.MkdirTemp("", "ygg-check-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(base) })
			os.Chmod(base, 0o755)
			dir := tt.setup(t, base)
			res := WorkerDir(dir, euid)
			var got []outcome
			for _, r := range res {
				got = append(got, outcomeOf(r))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s\nresults: %+v", diff, res)
			}
		})
	}
}

func mustWrite(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestYggd(t *testing.T) {
	connected := control.Connection{State: control.StateConnected, Broker: "ssl://b:8883"}
	running := control.Worker{Name: "echo-worker", State: control.WorkerRunning, Handlers: []string{"echo"}}
	tests := []struct {
		name string
		st   *control.Status
		err  error
		want []outcome
	}{
		{"connected", &control.Status{Connection: connected, Identity: control.Identity{ClientID: "h1"}, Workers: []control.Worker{running}},
			nil, []outcome{okOutcome, okOutcome}},
		{"not_running", nil, control.ErrNotRunning, []outcome{errOutcome, {Skipped, false}}},
		{"not_allowed", nil, control.ErrNotAllowed, []outcome{errOutcome, {Skipped, false}}},
		{"reconnecting", &control.Status{Connection: control.Connection{State: control.StateReconnecting, LastError: "x"}, Identity: control.Identity{ClientID: "h1"}},
			nil, []outcome{errOutcome, okOutcome}},
		{"offline", &control.Status{Connection: control.Connection{State: control.StateOffline}, Identity: control.Identity{ClientID: "h1"}},
			nil, []outcome{errOutcome, okOutcome}},
		{"other_identity", &control.Status{Connection: connected, Identity: control.Identity{ClientID: "h2"}},
			nil, []outcome{warnOutcome, okOutcome}},
		{"worker_backoff", &control.Status{Connection: connected, Identity: control.Identity{ClientID: "h1"},
			Workers: []control.Worker{running, {Name: "bad-worker", State: control.WorkerBackoff, Restarts: 3, LastExit: "exit status 1"}}},
			nil, []outcome{okOutcome, errOutcome}},
		{"worker_unregistered", &control.Status{Connection: connected, Identity: control.Identity{ClientID: "h1"},
			Workers: []control.Worker{{Name: "mute-worker", State: control.WorkerRunning}}},
			nil, []outcome{okOutcome, warnOutcome}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Yggd("/run/yggdrasil/control.sock", tt.st, tt.err, "h1", "yggdrasil.service")
			var got []outcome
			for _, r := range res {
				got = append(got, outcomeOf(r))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s\nresults: %+v", diff, res)
			}
		})
	}
}

func TestRHSM(t *testing.T) {
	id := Ident{ClientID: "u1", Leaf: &x509.Certificate{}}
	tests := []struct {
		name     string
		id       Ident
		consumer string
		err      error
		want     outcome
	}{
		{"matches", id, "u1", nil, okOutcome},
		{"not_reachable", id, "", errors.New("connect to the system bus: no such file"), warnOutcome},
		{"not_registered", id, "", nil, errOutcome},
		{"other_consumer", id, "u2", nil, errOutcome},
		{"no_certificate", Ident{ClientID: "h1"}, "", nil, outcome{Skipped, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := outcomeOf(RHSM("cert.pem", tt.id, tt.consumer, tt.err)); got != tt.want {
				t.Errorf("RHSM = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestTopics runs the probe against the sim's broker with its ACL: ok,
// a broker without ACL (warning), and a host refused its own topics: an
// error, or a warning when yggd says it is connected.
func TestTopics(t *testing.T) {
	s := &sim.Server{TLSAddr: sim.Off, APIAddr: sim.Off, Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	open := &sim.Server{TLSAddr: sim.Off, APIAddr: sim.Off, OpenACL: true, Logger: slog.New(slog.DiscardHandler)}
	if err := open.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { open.Close() })
	cfg := config.Default()
	id, _ := Identity(config.Config{ClientID: "h1"}, time.Now(), 0)
	connected := &control.Status{Connection: control.Connection{State: control.StateConnected}}

	tests := []struct {
		name   string
		broker string
		deny   bool
		yggd   *control.Status
		want   outcome
		msg    string
	}{
		{"acl_enforced", s.BrokerURL(), false, nil, okOutcome, "was refused another host's topic"},
		{"no_acl", open.BrokerURL(), false, nil, warnOutcome, "broker does not enforce ACLs"},
		{"own_topics_refused", s.BrokerURL(), true, nil, errOutcome, "refuses this host its own topics"},
		{"own_topics_refused_yggd_connected", s.BrokerURL(), true, connected, warnOutcome, "yggd's own connection works"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.DenyHost("h1", tt.deny)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r := Topics(ctx, cfg, id, []string{tt.broker}, tt.yggd, 5*time.Second)
			if got := outcomeOf(r); got != tt.want || !strings.Contains(r.Message, tt.msg) {
				t.Errorf("Topics = %+v, want %+v with %q", r, tt.want, tt.msg)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	WriteTable(&b, Report{Checks: []Result{
		ok(NameConfig, "fine"),
		failed(NameKeyFile, "chmod 600 k", "k is mode 0644"),
		skipped(NameRHSM, "no cert"),
	}})
	want := "ok       config           fine\n" +
		"error    key-file         k is mode 0644\n" +
		"                          advice: chmod 600 k\n" +
		"skipped  rhsm             no cert\n" +
		"\n1 ok, 0 warnings, 1 errors, 1 skipped\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}
