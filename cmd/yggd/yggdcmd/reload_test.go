package yggdcmd

import (
	"bytes"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDiffConfig(t *testing.T) {
	base := DefaultConfig()
	base.Brokers = []string{"tcp://a:1883"}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []configChange
	}{
		{"nothing", func(*Config) {}, nil},
		{"log_level", func(c *Config) { c.LogLevel = "debug" }, []configChange{{"log-level", "info", "debug"}}},
		{"brokers", func(c *Config) { c.Brokers = []string{"tcp://a:1883", "tcp://b:1883"} },
			[]configChange{{"broker", "[tcp://a:1883]", "[tcp://a:1883 tcp://b:1883]"}}},
		{"two_keys_in_field_order", func(c *Config) {
			c.QueueCount = 5
			c.DispatchTimeout = Duration(2 * time.Minute)
		}, []configChange{{"dispatch-timeout", "1m0s", "2m0s"}, {"queue-max-count", "10000", "5"}}},
		{"file_is_not_a_key", func(c *Config) { c.File = "/etc/other.toml" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base
			next.Brokers = append([]string(nil), base.Brokers...)
			tc.change(&next)
			got := diffConfig(base, next)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(configChange{})); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckDates(t *testing.T) {
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name                string
		notBefore, notAfter time.Time
		want                string // in the error; "" for none
	}{
		{"valid", now.Add(-day), now.Add(365 * day), ""},
		{"expired", now.Add(-2 * day), now.Add(-day), "the certificate has expired: run 'ygg register' again; yggd keeps running"},
		{"not_yet_valid", now.Add(day), now.Add(365 * day), "the certificate is not valid yet: check the system clock, or run 'ygg register' again"},
		{"expires_within_30_days", now.Add(-day), now.Add(29 * day), "expires within 30 days"},
		{"expires_in_31_days", now.Add(-day), now.Add(31 * day), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkDates(&x509.Certificate{NotBefore: tc.notBefore, NotAfter: tc.notAfter}, now)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("checkDates = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("checkDates = %v, want an error with %q", err, tc.want)
			case tc.name == "expires_within_30_days" && !errors.Is(err, errExpiresSoon):
				t.Errorf("checkDates = %v, want errExpiresSoon (a warning)", err)
			}
		})
	}
}

// newReloader returns a reloader in force with the configuration yggd
// parses from args, as serve does.
func newReloader(t *testing.T, args []string, logs *bytes.Buffer) *reloader {
	t.Helper()
	cfg, _, err := ParseConfig(args, logs)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logs, nil))
	id, err := loadIdentity(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := parseLevel(cfg.LogLevel)
	level := new(slog.LevelVar)
	level.Set(l)
	return &reloader{args: args, level: level, log: log, cfg: cfg, id: id}
}

func TestReload(t *testing.T) {
	const base = "broker = [\"tcp://a:1883\"]\nclient-id = \"host1\"\n"
	for _, tc := range []struct {
		name      string
		flags     []string
		file      string
		want      plan
		wantLevel slog.Level
		wantLog   string
	}{
		{"nothing_changed", nil, base, plan{}, slog.LevelInfo, `msg="configuration reloaded"`},
		{"log_level_live", nil, base + "log-level = \"debug\"\n", plan{}, slog.LevelDebug, `msg="configuration changed" key=log-level old=info new=debug`},
		{"flag_wins_over_file", []string{"--log-level", "warn"}, base + "log-level = \"debug\"\n", plan{}, slog.LevelWarn, `msg="configuration reloaded"`},
		{"broker_reconnects", nil, "broker = [\"tcp://b:1883\"]\nclient-id = \"host1\"\n", plan{reconnect: true}, slog.LevelInfo, `key=broker old=[tcp://a:1883] new=[tcp://b:1883]`},
		{"limits_restart_the_core", nil, base + "dispatch-timeout = \"2m\"\nmax-message-size = 1024\n",
			plan{restart: []string{"dispatch-timeout", "max-message-size"}}, slog.LevelInfo, `key=max-message-size old=33554432 new=1024`},
		{"client_id_restarts_the_core", nil, "broker = [\"tcp://a:1883\"]\nclient-id = \"host2\"\n",
			plan{restart: []string{"client id host1 → host2"}}, slog.LevelInfo, `key=client-id old=host1 new=host2`},
		{"topic_prefix_restarts_the_core", nil, base + "topic-prefix = \"other\"\n", plan{restart: []string{"topic-prefix"}}, slog.LevelInfo, `key=topic-prefix`},
		{"broken_file_refused", nil, base + "log-level = \"debug\"\nbroker = [\n", plan{}, slog.LevelInfo, `level=ERROR msg="configuration refused: yggd keeps running on the current one" error="read config `},
		{"invalid_value_refused", nil, base + "log-level = \"debug\"\nqueue-max-count = 0\n", plan{}, slog.LevelInfo, `level=ERROR msg="configuration refused: yggd keeps running on the current one" error="queue-max-count and queue-max-bytes: must be positive"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "config.toml")
			writeFile(t, filepath.Dir(file), "config.toml", base)
			var logs bytes.Buffer
			r := newReloader(t, append([]string{"--config", file}, tc.flags...), &logs)
			before := r.cfg
			writeFile(t, filepath.Dir(file), "config.toml", tc.file)
			got := r.reload()
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(plan{})); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if l := r.level.Level(); l != tc.wantLevel {
				t.Errorf("level = %v, want %v", l, tc.wantLevel)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs.String())
			}
			if strings.Contains(tc.name, "refused") && !cmp.Equal(r.cfg, before) {
				t.Errorf("refused configuration applied: %+v", r.cfg)
			}
		})
	}
}

// TestPollRenewal renames a renewed pair over the files in use, one file
// at a time, polling after each rename, as serve does.
func TestPollRenewal(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "host1", false, 0o600)
	var logs bytes.Buffer
	r := newReloader(t, []string{"--broker", "tcp://a:1883", "--cert-file", cert, "--key-file", key}, &logs)
	tlsConfig := r.id.tls
	current := func() []byte {
		c, err := r.id.tls.GetClientCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificate[0]
	}
	old := current()
	if p := r.poll(time.Now()); !cmp.Equal(p, plan{}, cmp.AllowUnexported(plan{})) {
		t.Errorf("poll without a change = %+v, want nothing to do", p)
	}

	// A new certificate beside the old key: refused, the old pair stays,
	// and it is not tried (nor logged) again until the files change.
	newCert, newKey := selfSigned(t, t.TempDir(), "host1", false, 0o600)
	if err := os.Rename(newCert, cert); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if p := r.poll(time.Now()); !cmp.Equal(p, plan{}, cmp.AllowUnexported(plan{})) {
			t.Errorf("poll of a half-written renewal = %+v, want nothing to do", p)
		}
	}
	if n := strings.Count(logs.String(), "the certificate files changed but do not load"); n != 1 {
		t.Errorf("%d warnings about the half-written renewal, want 1:\n%s", n, logs.String())
	}
	if !bytes.Equal(current(), old) {
		t.Error("a half-written renewal replaced the key pair")
	}

	// The key follows: the new pair is used by the same TLS configuration,
	// and the transport must reconnect.
	if err := os.Rename(newKey, key); err != nil {
		t.Fatal(err)
	}
	if p := r.poll(time.Now()); !cmp.Equal(p, plan{reconnect: true}, cmp.AllowUnexported(plan{})) {
		t.Errorf("poll of a renewal = %+v, want a reconnect", p)
	}
	if bytes.Equal(current(), old) || r.id.tls != tlsConfig {
		t.Error("the renewed pair is not served by the TLS configuration in use")
	}
	if !strings.Contains(logs.String(), `msg="new client certificate loaded"`) {
		t.Errorf("renewal not logged:\n%s", logs.String())
	}

	// A pair for another CN changes the client id: the core restarts.
	otherCert, otherKey := selfSigned(t, t.TempDir(), "host2", false, 0o600)
	os.Rename(otherKey, key)
	os.Rename(otherCert, cert)
	if p := r.poll(time.Now()); !cmp.Equal(p, plan{restart: []string{"client id host1 → host2"}}, cmp.AllowUnexported(plan{})) {
		t.Errorf("poll of a new CN = %+v, want a restart", p)
	}
}

func TestCheckValidityDaily(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "host1", false, 0o600) // valid for an hour
	var logs bytes.Buffer
	r := newReloader(t, []string{"--broker", "tcp://a:1883", "--cert-file", cert, "--key-file", key}, &logs)
	now := time.Now()
	r.checkValidity(now)
	r.poll(now.Add(time.Hour - time.Minute)) // within the day: not again
	r.poll(now.Add(25 * time.Hour))          // a day later: expired
	if n := strings.Count(logs.String(), "level=WARN msg=\"the certificate expires within 30 days"); n != 1 {
		t.Errorf("%d warnings of the coming expiry, want 1:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "level=ERROR msg=\"the certificate has expired"); n != 1 {
		t.Errorf("%d errors about the expiry, want 1:\n%s", n, logs.String())
	}
}
