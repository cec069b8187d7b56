//go:build linux

package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSettings(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    settings
		wantErr string // substring; "" for none
	}{
		{name: "empty", text: "", want: settings{}},
		{name: "enabled", text: "enabled = true", want: settings{}},
		{name: "disabled", text: "enabled = false", want: settings{disabled: true}},
		{name: "proxy", text: "proxy = true", want: settings{proxy: true}},
		{name: "env_list", text: `env = ["B=2", "A=1=one", "E="]`, want: settings{env: []string{"B=2", "A=1=one", "E="}}},
		{name: "env_table", text: "[env]\nB = \"2\"\nA = \"x y\"\n", want: settings{env: []string{"A=x y", "B=2"}}},
		{name: "unknown_keys", text: "enable = false\nenviron = []\nproxy = true", wantErr: "unknown key enable, environ (known: enabled, env, proxy)"},
		{name: "enabled_string", text: `enabled = "no"`, wantErr: `enabled must be true or false, got the string "no"`},
		{name: "proxy_url", text: `proxy = "http://proxy:3128"`, wantErr: "proxy must be true or false (to set a proxy of your own, use env)"},
		{name: "env_string", text: `env = "A=1"`, wantErr: `env must be a list like env = ["KEY=value"] or a table [env], got the string "A=1"`},
		{name: "env_no_equals", text: `env = ["A"]`, wantErr: `env entry "A" is not KEY=value`},
		{name: "env_no_name", text: `env = ["=1"]`, wantErr: `env entry "=1" has no name`},
		{name: "env_number", text: `env = [1]`, wantErr: `env must list "KEY=value" strings, got 1`},
		{name: "env_table_number", text: "[env]\nA = 1\n", wantErr: "env.A must be a string in quotes, got 1"},
		{name: "env_table_bad_name", text: "[env]\n\"A B\" = \"1\"\n", wantErr: `env name "A B" contains '=' or a space`},
		{name: "not_toml", text: "enabled = ", wantErr: "expected value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSettings(tc.text)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseSettings error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSettings: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(settings{})); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWorkerEnv(t *testing.T) {
	base := []string{"YGG_SOCKET_ADDR=unix:/s", "PATH=/usr/bin:/bin", "YGG_CLIENT_ID=c", "LANG=C"}
	proxy := []string{"HTTPS_PROXY=http://proxy:3128", "no_proxy=localhost"}
	tests := []struct {
		name        string
		base        []string // nil for base
		st          settings
		want        []string
		wantIgnored []string
	}{
		{name: "defaults", st: settings{}, want: base},
		{name: "env_added", st: settings{env: []string{"FOO=bar", "BAZ=1"}},
			want: append(base[:4:4], "FOO=bar", "BAZ=1")},
		{name: "proxy", st: settings{proxy: true},
			want: append(base[:4:4], "HTTPS_PROXY=http://proxy:3128", "no_proxy=localhost")},
		{name: "proxy_off", st: settings{env: []string{"A=1"}}, want: append(base[:4:4], "A=1")},
		{name: "env_wins_over_proxy", st: settings{proxy: true, env: []string{"HTTPS_PROXY=http://other:8080"}},
			want: append(base[:4:4], "HTTPS_PROXY=http://other:8080", "no_proxy=localhost")},
		{name: "last_wins", st: settings{env: []string{"A=1", "A=2"}}, want: append(base[:4:4], "A=2")},
		{name: "protected_ignored",
			st:          settings{env: []string{"PATH=/evil", "YGG_SOCKET_ADDR=unix:/evil", "YGG_NEW=x", "LANG=fr", "OK=1", "PATH=/again"}},
			want:        append(base[:4:4], "OK=1"),
			wantIgnored: []string{"PATH", "YGG_SOCKET_ADDR", "YGG_NEW", "LANG"}},
		{name: "path_even_unset", base: []string{"YGG_SOCKET_ADDR=unix:/s"},
			st:          settings{env: []string{"PATH=/evil", "YGG_LOG_LEVEL=trace"}},
			want:        []string{"YGG_SOCKET_ADDR=unix:/s"},
			wantIgnored: []string{"PATH", "YGG_LOG_LEVEL"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := base
			if tc.base != nil {
				b = tc.base
			}
			env, ignored := workerEnv(b, proxy, tc.st)
			if diff := cmp.Diff(tc.want, env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantIgnored, ignored); diff != "" {
				t.Errorf("ignored (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProxyEnv(t *testing.T) {
	environ := []string{"HOME=/root", "HTTP_PROXY=http://p:1", "https_proxy=http://p:2", "NO_PROXY=", "no_proxy=.local", "ALL_PROXYISH=x"}
	want := []string{"HTTP_PROXY=http://p:1", "https_proxy=http://p:2", "no_proxy=.local"}
	if diff := cmp.Diff(want, ProxyEnv(environ)); diff != "" {
		t.Errorf("ProxyEnv (-want +got):\n%s", diff)
	}
}

// envScript prints the variables the settings tests look at, then idles.
const envScript = "echo \"FOO=$FOO PROXY=$HTTPS_PROXY PATH=$PATH\" >&2\nexec sleep 1000\n"

// writeSettings writes the settings file of worker name in dir with mode
// perm, atomically.
func writeSettings(t *testing.T, dir, name, text string, perm os.FileMode) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	mustChmod(t, tmp, perm)
	if err := os.Rename(tmp, filepath.Join(dir, name+".toml")); err != nil {
		t.Fatal(err)
	}
}

// TestRunSettings starts a worker under each kind of settings file and
// checks what runs and what is logged.
func TestRunSettings(t *testing.T) {
	const line = "FOO=bar PROXY=http://proxy:3128 PATH=/usr/bin:/bin"
	tests := []struct {
		name     string
		text     string // the settings file; "" for none
		perm     os.FileMode
		running  bool   // the worker runs
		state    State  // otherwise, its state ("" when forgotten: not listed)
		listed   bool   // it is listed
		wantLine string // its output, when it runs
		logMsg   string // a record that must be logged
		logAttrs []string
	}{
		{name: "no_file", running: true, wantLine: "FOO= PROXY= PATH=/usr/bin:/bin"},
		{name: "env_and_proxy", text: "proxy = true\n[env]\nFOO = \"bar\"\n", perm: 0o644, running: true, wantLine: line},
		{name: "path_ignored", text: "proxy = true\nenv = [\"FOO=bar\", \"PATH=/evil\"]\n", perm: 0o644, running: true, wantLine: line,
			logMsg: "worker settings: env cannot override what yggd sets; ignored", logAttrs: []string{"names", "PATH"}},
		{name: "disabled", text: "enabled = false\n", perm: 0o644, state: StateDisabled, listed: true,
			logMsg: "worker disabled by its settings: not started"},
		{name: "unknown_key", text: "enable = false\n", perm: 0o644,
			logMsg: "worker settings invalid; worker not started", logAttrs: []string{"err", "unknown key enable (known: enabled, env, proxy)"}},
		{name: "writable_by_others", text: "enabled = true\n", perm: 0o646,
			logMsg: "worker settings refused: another user could change them; worker not started"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, sets := t.TempDir(), t.TempDir()
			writeWorker(t, dir, "env-worker", envScript)
			if tc.text != "" {
				writeSettings(t, sets, "env-worker", tc.text, tc.perm)
			}
			s, rec, stop := mustRun(t, Config{Dir: dir, SettingsDir: sets, ProxyEnv: []string{"HTTPS_PROXY=http://proxy:3128"}})
			if tc.logMsg != "" {
				awaitLogged(t, rec, 1, tc.logMsg, append([]string{"worker", "env-worker"}, tc.logAttrs...)...)
			}
			if tc.running {
				awaitRunning(t, s, "env-worker")
				awaitLogged(t, rec, 1, "worker output", "worker", "env-worker", "line", tc.wantLine)
				return
			}
			stop() // Run has scanned: whatever was to start has started
			if n := len(rec.find("worker started")); n != 0 {
				t.Errorf("%d workers started, want none", n)
			}
			st, listed := statusOf(s, "env-worker")
			if listed != tc.listed || (listed && st.State != tc.state) {
				t.Errorf("status %+v (listed %v), want listed %v in state %v", st, listed, tc.listed, tc.state)
			}
		})
	}
}

// TestRunSettingsChanges follows one worker through changes to its
// settings file and directory.
func TestRunSettingsChanges(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	sets := filepath.Join(root, "workers") // created later
	writeWorker(t, dir, "env-worker", envScript)
	s, rec, _ := mustRun(t, Config{Dir: dir, SettingsDir: sets, DirPoll: 20 * time.Millisecond})
	first := awaitRunning(t, s, "env-worker")

	// The directory appears with a file that turns the worker off.
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	mustChmod(t, tmp, 0o755)
	writeSettings(t, tmp, "env-worker", "enabled = false\n", 0o644)
	if err := os.Rename(tmp, sets); err != nil {
		t.Fatal(err)
	}
	awaitState(t, s, "env-worker", StateDisabled)
	mustAwaitGone(t, first.PID)

	// Turned on again, with a variable: it starts with it.
	writeSettings(t, sets, "env-worker", "env = [\"FOO=one\"]\n", 0o644)
	second := awaitRunning(t, s, "env-worker")
	awaitLogged(t, rec, 1, "worker enabled by its settings; starting it", "worker", "env-worker")
	awaitLogged(t, rec, 1, "worker output", "worker", "env-worker", "line", "FOO=one PROXY= PATH=/usr/bin:/bin")

	// The variable changes: restarted with the new value.
	writeSettings(t, sets, "env-worker", "env = [\"FOO=two\"]\n", 0o644)
	awaitLogged(t, rec, 1, "worker output", "worker", "env-worker", "line", "FOO=two PROXY= PATH=/usr/bin:/bin")
	awaitLogged(t, rec, 1, "worker settings changed; restarting worker", "worker", "env-worker")
	mustAwaitGone(t, second.PID)
	third := awaitRunning(t, s, "env-worker")

	// Rewritten with the same content: not restarted.
	writeSettings(t, sets, "env-worker", "env = [\"FOO=two\"]\n", 0o644)
	// Events are handled in order and a file settles Settle after its
	// last one: once a worker added afterwards runs, the rewrite has been
	// looked at.
	writeWorker(t, dir, "mark-worker", sleeperScript)
	awaitRunning(t, s, "mark-worker")
	if st, _ := statusOf(s, "env-worker"); st.PID != third.PID {
		t.Errorf("env-worker restarted (pid %d, was %d) by a rewrite with the same content", st.PID, third.PID)
	}
	// The file removed: back to the defaults, restarted.
	if err := os.Remove(filepath.Join(sets, "env-worker.toml")); err != nil {
		t.Fatal(err)
	}
	awaitLogged(t, rec, 1, "worker output", "worker", "env-worker", "line", "FOO= PROXY= PATH=/usr/bin:/bin")
	mustAwaitGone(t, third.PID)
	if n := len(rec.find("worker settings changed; restarting worker")); n != 2 {
		t.Errorf("%d restarts for changed settings, want 2 (the identical rewrite must not restart)", n)
	}

	// The directory becomes writable by others: nothing runs until fixed.
	fourth := awaitRunning(t, s, "env-worker")
	mustChmod(t, sets, 0o757)
	awaitLogged(t, rec, 1, "worker settings directory refused: no worker runs until it is fixed", "fix", "chmod go-w "+sets)
	mustAwaitGone(t, fourth.PID)
	awaitForgotten(t, s, "env-worker")
	mustChmod(t, sets, 0o755)
	awaitRunning(t, s, "env-worker")
}

// awaitState waits until worker name is listed in state st.
func awaitState(t *testing.T, s *Supervisor, name string, st State) {
	t.Helper()
	mustAwait(t, fmt.Sprintf("%s %v", name, st), func() error {
		got, ok := statusOf(s, name)
		if !ok || got.State != st {
			return fmt.Errorf("status %+v (listed %v)", got, ok)
		}
		return nil
	})
}
