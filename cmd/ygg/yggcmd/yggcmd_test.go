package yggcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/fakes/dbusd"
	"github.com/ygglab/yggdrasil/fakes/rhsm"
	"github.com/ygglab/yggdrasil/fakes/systemd"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/facts"
)

// host is a private bus with the RHSM and systemd fakes, which ygg reaches
// through DBUS_SYSTEM_BUS_ADDRESS.
type host struct {
	rhsm    *rhsm.Server
	systemd *systemd.Server
}

func mustHost(t *testing.T, r *rhsm.Server, s *systemd.Server) *host {
	t.Helper()
	d := dbusd.MustStart(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", d.Addr())
	if r == nil {
		r = &rhsm.Server{}
	}
	if s == nil {
		s = &systemd.Server{}
	}
	r.ConsumerDir = filepath.Join(t.TempDir(), "consumer")
	r.Bus, s.Bus = d.Addr(), d.Addr()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &host{rhsm: r, systemd: s}
}

// systemdCalls returns the recorded systemd calls as strings.
func (h *host) systemdCalls() []string {
	var out []string
	for _, c := range h.systemd.Calls() {
		out = append(out, c.String())
	}
	return out
}

// rhsmCalls returns the recorded RHSM methods (interface.member).
func (h *host) rhsmMethods() []string {
	var out []string
	for _, c := range h.rhsm.Calls() {
		out = append(out, strings.TrimPrefix(c.Method, "com.redhat.RHSM1."))
	}
	return out
}

func (h *host) mustState(t *testing.T) systemd.UnitState {
	t.Helper()
	st, ok := h.systemd.Unit("yggd.service")
	if !ok {
		t.Fatal("no yggd.service in the fake")
	}
	return st
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, strings.NewReader(""), &out, &errb)
	t.Logf("ygg %s → %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return result{out.String(), errb.String(), code}
}

var enableAndStart = []string{"EnableUnitFiles [yggd.service] false true", "Reload", "StartUnit yggd.service replace"}

func TestRegisterOK(t *testing.T) {
	h := mustHost(t, nil, nil)
	r := run(t, "register", "--username", "admin", "--password", "secret")
	if r.code != 0 {
		t.Fatalf("exit %d, want 0", r.code)
	}
	uuid := h.rhsm.UUID()
	if uuid == "" {
		t.Fatal("not registered")
	}
	cn, err := facts.CertCN(filepath.Join(h.rhsm.Dir(), "cert.pem"))
	if err != nil || cn != uuid {
		t.Errorf("cert CN = %q, %v; want %q", cn, err, uuid)
	}
	if _, err := os.Stat(filepath.Join(h.rhsm.Dir(), "key.pem")); err != nil {
		t.Errorf("key.pem: %v", err)
	}
	if !strings.Contains(r.stdout, "Registered with Red Hat Subscription Management (consumer "+uuid+").") {
		t.Errorf("stdout does not report the consumer id")
	}
	if strings.Contains(r.stdout, "\033") {
		t.Errorf("stdout has ANSI codes but is not a terminal: %q", r.stdout)
	}
	if diff := cmp.Diff(enableAndStart, h.systemdCalls()); diff != "" {
		t.Errorf("systemd calls (-want +got):\n%s", diff)
	}
	if st := h.mustState(t); st != (systemd.UnitState{ActiveState: "active", UnitFileState: "enabled"}) {
		t.Errorf("unit state %+v, want active and enabled", st)
	}
	// The credentials went over the private connection, as a{ss}.
	var private []string
	for _, c := range h.rhsm.Calls() {
		if c.Private {
			private = append(private, c.String())
		}
	}
	if want := []string{"com.redhat.RHSM1.Register.Register(sssa{ss}a{ss}s) private"}; !cmp.Equal(private, want) {
		t.Errorf("private calls %q, want %q", private, want)
	}
}

func TestRegisterActivationKey(t *testing.T) {
	h := mustHost(t, nil, nil)
	if r := run(t, "connect", "-o", "acme", "-a", "ygg-key"); r.code != 0 {
		t.Fatalf("exit %d, want 0", r.code)
	}
	if h.rhsm.UUID() == "" {
		t.Error("not registered")
	}
}

func TestRegisterBadCredentials(t *testing.T) {
	h := mustHost(t, nil, nil)
	r := run(t, "register", "-u", "admin", "-p", "wrong")
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	if want := "ygg: register with Red Hat Subscription Management: " + rhsm.BadCredentials + "\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	if calls := h.systemdCalls(); len(calls) != 0 {
		t.Errorf("systemd calls %q, want none", calls)
	}
	if h.rhsm.UUID() != "" {
		t.Error("registered after bad credentials")
	}

	// Missing credentials off a terminal: a usage error, nothing done.
	r = run(t, "register", "-u", "admin")
	if r.code != 2 || !strings.Contains(r.stderr, "--username and --password are required when standard input is not a terminal") {
		t.Errorf("missing password: exit %d, stderr %q; want 2 and a usage error", r.code, r.stderr)
	}
	if calls := h.systemdCalls(); len(calls) != 0 || h.rhsm.UUID() != "" {
		t.Errorf("missing password: systemd calls %q, uuid %q; want nothing done", calls, h.rhsm.UUID())
	}
}

func TestRegisterSystemdFailure(t *testing.T) {
	h := mustHost(t, nil, &systemd.Server{JobResult: func(method, unit string) string {
		if method == "StartUnit" {
			return systemd.ResultFailed
		}
		return ""
	}})
	r := run(t, "register", "-u", "admin", "-p", "secret")
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	for _, want := range []string{"ygg: start yggd.service: job failed; run 'systemctl status yggd.service'", "run 'ygg register' again"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if h.rhsm.UUID() == "" {
		t.Error("registration was undone; want the host to stay registered")
	}
}

func TestRegisterAlreadyRegistered(t *testing.T) {
	h := mustHost(t, nil, nil)
	uuid, err := h.rhsm.RegisterConsumer("acme")
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, "register") // no credentials needed
	if r.code != 0 {
		t.Fatalf("exit %d, want 0", r.code)
	}
	if !strings.Contains(r.stdout, "already registered with Red Hat Subscription Management (consumer "+uuid+")") {
		t.Errorf("stdout does not say already registered")
	}
	for _, m := range h.rhsmMethods() {
		if strings.HasPrefix(m, "Register") {
			t.Errorf("RHSM got %s on a registered host", m)
		}
	}
	if h.rhsm.UUID() != uuid {
		t.Errorf("consumer changed to %q", h.rhsm.UUID())
	}
	if diff := cmp.Diff(enableAndStart, h.systemdCalls()); diff != "" {
		t.Errorf("systemd calls (-want +got):\n%s", diff)
	}
}

func TestUnregisterReversesRegister(t *testing.T) {
	h := mustHost(t, nil, nil)
	if r := run(t, "register", "-u", "admin", "-p", "secret"); r.code != 0 {
		t.Fatalf("register: exit %d", r.code)
	}
	r := run(t, "unregister")
	if r.code != 0 {
		t.Fatalf("unregister: exit %d", r.code)
	}
	if h.rhsm.UUID() != "" {
		t.Error("still registered")
	}
	if _, err := os.Stat(filepath.Join(h.rhsm.Dir(), "cert.pem")); !os.IsNotExist(err) {
		t.Errorf("cert.pem: %v, want it deleted", err)
	}
	if st := h.mustState(t); st != (systemd.UnitState{ActiveState: "inactive", UnitFileState: "disabled"}) {
		t.Errorf("unit state %+v, want inactive and disabled", st)
	}
	want := append(enableAndStart, "StopUnit yggd.service replace", "DisableUnitFiles [yggd.service] false", "Reload")
	if diff := cmp.Diff(want, h.systemdCalls()); diff != "" {
		t.Errorf("systemd calls (-want +got):\n%s", diff)
	}

	// Twice: a success that says "already".
	r = run(t, "disconnect")
	if r.code != 0 {
		t.Fatalf("second unregister: exit %d", r.code)
	}
	for _, want := range []string{"yggd.service is already stopped.", "yggd.service is already disabled.", "already unregistered"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("second unregister: stdout lacks %q", want)
		}
	}
}

func TestUnregisterRunsEveryStep(t *testing.T) {
	h := mustHost(t, &rhsm.Server{Hook: func(c rhsm.Call) error {
		if strings.HasSuffix(c.Method, ".Unregister") {
			return &rhsm.Error{Exception: "RestlibException", Severity: "error", Message: "Service unavailable"}
		}
		return nil
	}}, &systemd.Server{JobResult: func(method, unit string) string {
		if method == "StopUnit" {
			return systemd.ResultTimeout
		}
		return ""
	}})
	if _, err := h.rhsm.RegisterConsumer("acme"); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "register"); r.code != 0 {
		t.Fatalf("register: exit %d", r.code)
	}
	r := run(t, "unregister")
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	want := "ygg: stop yggd.service: job timeout; run 'systemctl status yggd.service' and 'journalctl -u yggd.service' to see why\n" +
		"ygg: unregister from Red Hat Subscription Management: Service unavailable\n"
	if r.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}
	if st := h.mustState(t); st.UnitFileState != "disabled" {
		t.Errorf("unit file state %q: the disable step did not run after the stop failed", st.UnitFileState)
	}
}

// fakeYggd serves a control socket in $RUNTIME_DIRECTORY whose status is
// whatever the test stores in it.
type fakeYggd struct {
	mu    sync.Mutex
	st    control.Status
	level slog.LevelVar // what log-level reads and changes
}

func (f *fakeYggd) set(st control.Status) {
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
}

func (f *fakeYggd) status() control.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

var healthy = control.Status{
	Connection: control.Connection{State: control.StateConnected, Broker: "tcp://broker:1883",
		ConnectedSince: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
	Identity: control.Identity{ClientID: "host1"},
	Workers:  []control.Worker{{Name: "echo-worker", Handlers: []string{"echo"}, PID: 10, State: control.WorkerRunning}},
}

// mustYggd starts a fake yggd's control socket where ygg looks by default
// ($RUNTIME_DIRECTORY/control.sock) and returns it.
func mustYggd(t *testing.T, st control.Status) (*fakeYggd, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ygg") // short: sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("RUNTIME_DIRECTORY", dir)
	f := &fakeYggd{st: st}
	path := filepath.Join(dir, "control.sock")
	s, err := control.Listen(control.Config{Path: path, Status: f.status, Level: &f.level})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return f, path
}

func TestStatus(t *testing.T) {
	h := mustHost(t, nil, nil)
	yggd, sock := mustYggd(t, healthy)
	r := run(t, "status", "--format", "json")
	if r.code != 1 {
		t.Errorf("status of an unregistered host: exit %d, want 1", r.code)
	}
	run(t, "register", "-u", "admin", "-p", "secret")
	r = run(t, "status", "-f", "json")
	if r.code != 0 {
		t.Errorf("status: exit %d, want 0", r.code)
	}
	var got statusReport
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	wantYggd := healthy
	wantYggd.Version = control.Version
	want := statusReport{Hostname: host, Registered: true, ConsumerID: h.rhsm.UUID(), Unit: "yggd.service",
		ActiveState: "active", UnitFileState: "enabled", Running: true, ControlSocket: sock, Yggd: &wantYggd}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	r = run(t, "status")
	for _, line := range []string{
		"registered (consumer " + h.rhsm.UUID() + ")",
		"active (enabled)",
		"Connection:    connected to tcp://broker:1883 since ",
		"\necho-worker  running  10   0         echo      -\n",
	} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("table does not show %q", line)
		}
	}

	// Whatever is wrong with yggd makes the exit status 1.
	backoff := healthy
	backoff.Workers = []control.Worker{{Name: "crash-worker", State: control.WorkerBackoff, Restarts: 3, LastExit: "exit status 1"}}
	offline := healthy
	offline.Connection = control.Connection{State: control.StateOffline}
	reconnecting := healthy
	reconnecting.Connection = control.Connection{State: control.StateReconnecting, LastError: "connection refused"}
	tests := []struct {
		name string
		st   control.Status
		want string
	}{
		{name: "worker_backoff", st: backoff, want: "crash-worker  backoff"},
		{name: "offline_by_command", st: offline, want: "Connection:    offline: a disconnect command asked it"},
		{name: "reconnecting", st: reconnecting, want: "Connection:    reconnecting (last error: connection refused)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yggd.set(tt.st)
			r := run(t, "status")
			if r.code != 1 || !strings.Contains(r.stdout, tt.want) {
				t.Errorf("status: exit %d, want 1 and %q", r.code, tt.want)
			}
		})
	}
}

func TestStatusYggdNotRunning(t *testing.T) {
	mustHost(t, nil, nil)
	run(t, "register", "-u", "admin", "-p", "secret")
	dir := t.TempDir()
	config := filepath.Join(dir, "config.toml")
	os.WriteFile(config, []byte("broker = [\"tcp://b:1\"]\ncontrol-socket = \"/nonexistent/ctl.sock\"\n"), 0o600)
	r := run(t, "status", "--config", config, "--format", "json")
	if r.code != 1 || !strings.Contains(r.stdout, `"yggd_error": "control socket /nonexistent/ctl.sock: yggd is not running`) {
		t.Errorf("status with yggd not running: exit %d, want 1 and a yggd_error naming the configured socket", r.code)
	}
}

func TestWorkers(t *testing.T) {
	yggd, _ := mustYggd(t, healthy)
	r := run(t, "workers")
	want := "WORKER       STATE    PID  RESTARTS  HANDLERS  LAST EXIT\n" +
		"echo-worker  running  10   0         echo      -\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("workers: exit %d, stdout\n%s\nwant 0 and\n%s", r.code, r.stdout, want)
	}
	r = run(t, "workers", "--format", "json")
	var got control.Workers
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(control.Workers{Version: 1, Workers: healthy.Workers}, got); diff != "" {
		t.Errorf("workers --format json (-want +got):\n%s", diff)
	}

	failing := healthy
	failing.Workers = append(slices.Clone(healthy.Workers), control.Worker{Name: "crash-worker", State: control.WorkerBackoff, Restarts: 2})
	yggd.set(failing)
	if r := run(t, "workers"); r.code != 1 || !strings.Contains(r.stdout, "crash-worker  backoff  -    2") {
		t.Errorf("workers with one in backoff: exit %d, want 1 and its line", r.code)
	}

	t.Setenv("RUNTIME_DIRECTORY", t.TempDir())
	if r := run(t, "workers"); r.code != 1 || !strings.Contains(r.stderr, "yggd is not running") {
		t.Errorf("workers with no yggd: exit %d, stderr %q; want 1 and why", r.code, r.stderr)
	}
}

func TestLogLevel(t *testing.T) {
	yggd, _ := mustYggd(t, healthy)
	if r := run(t, "log-level"); r.code != 0 || r.stdout != "info\n" {
		t.Errorf("log-level: exit %d, stdout %q; want 0 and info", r.code, r.stdout)
	}
	if r := run(t, "log-level", "debug"); r.code != 0 || r.stdout != "debug\n" {
		t.Errorf("log-level debug: exit %d, stdout %q; want 0 and debug", r.code, r.stdout)
	}
	if got := yggd.level.Level(); got != slog.LevelDebug {
		t.Errorf("yggd's level is %v after log-level debug, want debug", got)
	}
	if r := run(t, "log-level"); r.stdout != "debug\n" {
		t.Errorf("log-level after the change: stdout %q, want debug", r.stdout)
	}
	if r := run(t, "log-level", "loud"); r.code != 1 || !strings.Contains(r.stderr, `level: "loud" is not one of error, warn, info, debug, trace`) {
		t.Errorf("log-level loud: exit %d, stderr %q; want 1 and yggd's refusal", r.code, r.stderr)
	}
	if got := yggd.level.Level(); got != slog.LevelDebug {
		t.Errorf("yggd's level is %v after a refused change, want debug kept", got)
	}
	if r := run(t, "log-level", "debug", "info"); r.code != 2 {
		t.Errorf("log-level with two levels: exit %d, want 2", r.code)
	}
	t.Setenv("RUNTIME_DIRECTORY", t.TempDir())
	if r := run(t, "log-level", "debug"); r.code != 1 || !strings.Contains(r.stderr, "yggd is not running") {
		t.Errorf("log-level with no yggd: exit %d, stderr %q; want 1 and why", r.code, r.stderr)
	}
}

func TestStatusNoBus(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
	r := run(t, "status", "--format", "json")
	if r.code != 1 || !strings.Contains(r.stdout, `"rhsm_error": "connect to the system bus:`) {
		t.Errorf("exit %d, stdout %s; want 1 and an rhsm_error", r.code, r.stdout)
	}
}

func TestUsage(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
	for _, tt := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no_command", nil, "ygg: no command given\n"},
		{"unknown_command", []string{"frobnicate"}, `ygg: unknown command "frobnicate"`},
		{"unknown_flag", []string{"register", "--bogus"}, "ygg: register: -bogus"},
		{"extra_argument", []string{"status", "now"}, `ygg: status: unexpected argument "now"`},
		{"bad_format", []string{"facts", "-f", "xml"}, `ygg: --format: "xml" is not one of table, json`},
		{"key_without_org", []string{"register", "-a", "k"}, "--activation-key needs --organization"},
		{"key_and_password", []string{"register", "-o", "acme", "-a", "k", "-u", "x"}, "not both"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.stderr) || !strings.Contains(r.stderr, "Run 'ygg --help' for usage.") {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tt.stderr)
			}
		})
	}
}

func TestHelpEveryCommand(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.name, "--help")
			if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: ygg "+c.name) {
				t.Errorf("exit %d, stdout %q", r.code, r.stdout)
			}
			for _, f := range c.flags {
				if !f.hidden && !strings.Contains(r.stdout, "--"+f.long) {
					t.Errorf("help lacks --%s", f.long)
				}
			}
		})
	}
}

func TestManPageRenders(t *testing.T) {
	r := run(t, "--generate-man-page")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man is not installed")
	}
	page := filepath.Join(t.TempDir(), "ygg.1")
	os.WriteFile(page, []byte(r.stdout), 0o644)
	cmd := exec.Command("man", "-l", page)
	cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=80")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("man -l: %v\n%s", err, stderr.String())
	}
	text := string(out)
	for _, want := range []string{"NAME", "ygg - connect this host", "ygg register [--username USERNAME]", "--activation-key KEY", "EXIT STATUS", "DBUS_SYSTEM_BUS_ADDRESS"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered page lacks %q:\n%s", want, text)
		}
	}
}

func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	r := run(t, "--generate-bash-completion")
	script := filepath.Join(t.TempDir(), "ygg")
	os.WriteFile(script, []byte(r.stdout), 0o644)
	for _, tt := range []struct {
		words []string // the line; the last word is being completed
		want  string
	}{
		{[]string{"ygg", "re"}, "register"},
		{[]string{"ygg", "un"}, "unregister"},
		{[]string{"ygg", "register", "--us"}, "--username"},
		{[]string{"ygg", "connect", "--activation-k"}, "--activation-key"},
		{[]string{"ygg", "facts", "--format", ""}, "table json"},
		{[]string{"ygg", "status", "-f", "j"}, "json"},
		{[]string{"ygg", "help", "stat"}, "status"},
		{[]string{"ygg", "log-level", "d"}, "debug"},
		{[]string{"ygg", "log-level", "--c"}, "--config"},
		{[]string{"ygg", "--ver"}, "--version"},
	} {
		t.Run(strings.Join(tt.words, "_"), func(t *testing.T) {
			var quoted []string
			for _, w := range tt.words {
				quoted = append(quoted, "'"+w+"'")
			}
			prog := "source " + script + "; COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" +
				string(rune('0'+len(tt.words)-1)) + "; _ygg; echo \"${COMPREPLY[*]}\""
			out, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != tt.want {
				t.Errorf("completion = %q, %v; want %q", out, err, tt.want)
			}
		})
	}
}

func TestFacts(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte("0123456789abcdef0123456789abcdef\n"), 0o644)
	t.Setenv("YGG_FACTS_ROOT", root)
	r := run(t, "canonical-facts")
	if r.code != 0 || strings.HasSuffix(r.stdout, "\n") {
		t.Fatalf("exit %d, stdout %q: want 0 and no trailing newline", r.code, r.stdout)
	}
	var f map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &f); err != nil {
		t.Fatal(err)
	}
	if f["machine_id"] != "01234567-89ab-cdef-0123-456789abcdef" || len(f) != 7 {
		t.Errorf("facts %v", f)
	}
	if !strings.Contains(r.stderr, "ygg: warning: subscription_manager_id: open "+root) {
		t.Errorf("no warning about the missing consumer certificate: %q", r.stderr)
	}
	r = run(t, "facts", "--root", root)
	if !strings.Contains(r.stdout, "machine_id               01234567-89ab-cdef-0123-456789abcdef\n") {
		t.Errorf("table: %q", r.stdout)
	}
}
