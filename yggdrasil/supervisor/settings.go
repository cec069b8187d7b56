//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"
)

// Per-worker settings.
//
// A worker may have a settings file in Config.SettingsDir named after its
// worker file: <worker file name>.toml (echo-worker.toml for echo-worker).
// Without one, the worker runs with the defaults. The keys:
//
//	enabled = false     do not start it (default true)
//	proxy = true        pass yggd's own proxy variables (ProxyNames, from
//	                    Config.ProxyEnv) on to it (default false)
//	env = ["K=V", …]    add variables to its environment; a table works
//	[env]               too: K = "V"
//
// env cannot override what yggd sets itself: PATH and every name that
// starts with YGG_ (or that Config.Env sets) are ignored with a warning,
// and the worker starts without them. env wins over proxy for a name that
// both set.
//
// A settings file that cannot be used leaves its worker stopped, rather
// than started with settings its administrator did not write: one that
// another user could change (the trust rule, trust.go) is logged at warn,
// one that cannot be read or parsed, has an unknown key or a value of the
// wrong type at error; each once, naming the file, until it changes. A
// settings directory that breaks the trust rule stops every worker, as a
// refused worker directory does. A settings directory or file that does not
// exist is not an error.
//
// The directory is watched like the worker directory (looked for every
// Config.DirPoll while it does not exist). A settings file that appears,
// changes or goes away is read again once it has settled: a worker whose
// environment changed is restarted with the new one, a worker turned off
// is stopped and listed as disabled, and a worker turned back on starts.

// ProxyNames are the proxy variables that proxy = true passes on.
var ProxyNames = []string{"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}

// ProxyEnv returns the entries of environ ("KEY=value", as os.Environ
// gives them) that name a proxy variable (ProxyNames) with a value, for
// Config.ProxyEnv.
func ProxyEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && v != "" && slices.Contains(ProxyNames, k) {
			out = append(out, kv)
		}
	}
	return out
}

// settingsExt ends the name of a settings file.
const settingsExt = ".toml"

// settings is what a worker's settings file says, checked.
type settings struct {
	disabled bool
	proxy    bool
	env      []string // "KEY=value", in the file's order (a table's sorted by key)
}

// parseSettings parses the text of a settings file.
func parseSettings(text string) (settings, error) {
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		return settings{}, err
	}
	var st settings
	var unknown []string
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		v := raw[key]
		switch key {
		case "enabled":
			b, ok := v.(bool)
			if !ok {
				return settings{}, fmt.Errorf("enabled must be true or false, got %s", tomlValue(v))
			}
			st.disabled = !b
		case "proxy":
			b, ok := v.(bool)
			if !ok {
				return settings{}, fmt.Errorf("proxy must be true or false (to set a proxy of your own, use env), got %s", tomlValue(v))
			}
			st.proxy = b
		case "env":
			env, err := parseEnv(v)
			if err != nil {
				return settings{}, err
			}
			st.env = env
		default:
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		return settings{}, fmt.Errorf("unknown key %s (known: enabled, env, proxy)", strings.Join(unknown, ", "))
	}
	return st, nil
}

// parseEnv checks env's value: a list of "KEY=value" strings, or a table
// of string values.
func parseEnv(v any) ([]string, error) {
	var env []string
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf(`env must list "KEY=value" strings, got %s`, tomlValue(e))
			}
			k, _, found := strings.Cut(s, "=")
			if !found {
				return nil, fmt.Errorf("env entry %q is not KEY=value", s)
			}
			if err := checkEnvEntry(k, s); err != nil {
				return nil, err
			}
			env = append(env, s)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			s, ok := v[k].(string)
			if !ok {
				return nil, fmt.Errorf(`env.%s must be a string in quotes, got %s`, k, tomlValue(v[k]))
			}
			if err := checkEnvEntry(k, k+"="+s); err != nil {
				return nil, err
			}
			env = append(env, k+"="+s)
		}
	default:
		return nil, fmt.Errorf(`env must be a list like env = ["KEY=value"] or a table [env], got %s`, tomlValue(v))
	}
	return env, nil
}

// checkEnvEntry checks that kv, whose name is k, can be an environment
// entry.
func checkEnvEntry(k, kv string) error {
	switch {
	case k == "":
		return fmt.Errorf("env entry %q has no name", kv)
	case strings.ContainsAny(k, "= \t\n"):
		return fmt.Errorf("env name %q contains '=' or a space", k)
	case strings.ContainsRune(kv, 0):
		return fmt.Errorf("env entry %q contains NUL", k)
	}
	return nil
}

// tomlValue names a decoded TOML value for an error message.
func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool, int64, float64:
		return fmt.Sprintf("%v", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// workerEnv returns the environment of a worker with settings st: base,
// then proxy when st asks for it, then st's env, later entries replacing
// earlier ones of the same name. A name that base sets, PATH and every
// YGG_ name cannot be set by st: they are left out and returned as
// ignored, in order.
func workerEnv(base, proxy []string, st settings) (env, ignored []string) {
	env = slices.Clone(base)
	at := map[string]int{} // index in env, by name
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		at[k] = i
	}
	fixed := maps.Clone(at)
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := at[k]; ok {
			env[i] = kv
			return
		}
		at[k] = len(env)
		env = append(env, kv)
	}
	if st.proxy {
		for _, kv := range proxy {
			if k, _, _ := strings.Cut(kv, "="); !protected(k, fixed) {
				set(kv)
			}
		}
	}
	for _, kv := range st.env {
		k, _, _ := strings.Cut(kv, "=")
		if protected(k, fixed) {
			if !slices.Contains(ignored, k) {
				ignored = append(ignored, k)
			}
			continue
		}
		set(kv)
	}
	return env, ignored
}

// protected reports whether settings may not set the variable k: yggd
// sets it (base), or it is PATH or a YGG_ name.
func protected(k string, base map[string]int) bool {
	_, inBase := base[k]
	return inBase || k == "PATH" || strings.HasPrefix(k, "YGG_")
}

// settingsPath returns the settings file of worker name, "" when there is
// no settings directory.
func (s *Supervisor) settingsPath(name string) string {
	if s.cfg.SettingsDir == "" {
		return ""
	}
	return filepath.Join(s.cfg.SettingsDir, name+settingsExt)
}

// errNoSettings: the settings file does not exist.
var errNoSettings = errors.New("no settings file")

// readSettings reads and checks the settings file at path.
func readSettings(path string, euid int) (settings, error) {
	if _, err := os.Lstat(path); isMissing(err) {
		return settings{}, errNoSettings
	}
	if err := checkFile("settings file", path, euid); err != nil {
		return settings{}, err
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return settings{}, fmt.Errorf("read settings: %w", err)
	}
	return parseSettings(string(text))
}

// settingsOf returns the environment worker name is to run with and
// whether it is enabled; ok is false when its settings cannot be used (it
// must not run). What is wrong is logged once per worker until it changes.
func (s *Supervisor) settingsOf(name string) (env []string, enabled, ok bool) {
	path := s.settingsPath(name)
	if path == "" {
		return slices.Clone(s.cfg.Env), true, true
	}
	if s.settingsDirErr != nil && !isMissing(s.settingsDirErr) {
		s.log.Debug("skip worker: settings directory refused", "worker", name)
		return nil, false, false
	}
	st, err := readSettings(path, s.euid)
	switch {
	case errors.Is(err, errNoSettings):
		delete(s.settingsLogged, name)
		return slices.Clone(s.cfg.Env), true, true
	case isUntrusted(err):
		var ue *untrustedError
		errors.As(err, &ue)
		s.settingsOnce(name, "refused "+err.Error(), func() {
			s.log.Warn("worker settings refused: another user could change them; worker not started",
				"worker", name, "path", path, "reason", err.Error(), "fix", ue.Fix)
		})
		return nil, false, false
	case err != nil:
		s.settingsOnce(name, "invalid "+err.Error(), func() {
			s.log.Error("worker settings invalid; worker not started",
				"worker", name, "path", path, "err", err.Error())
		})
		return nil, false, false
	}
	env, ignored := workerEnv(s.cfg.Env, s.cfg.ProxyEnv, st)
	if len(ignored) == 0 {
		delete(s.settingsLogged, name)
	} else {
		s.settingsOnce(name, "ignored "+strings.Join(ignored, ","), func() {
			s.log.Warn("worker settings: env cannot override what yggd sets; ignored",
				"worker", name, "path", path, "names", strings.Join(ignored, ","),
				"fix", "remove them from env (PATH and YGG_ names are yggd's)")
		})
	}
	return env, !st.disabled, true
}

// settingsOnce runs log unless what was the last thing logged about the
// settings of worker name.
func (s *Supervisor) settingsOnce(name, what string, log func()) {
	if s.settingsLogged[name] == what {
		return
	}
	s.settingsLogged[name] = what
	log()
}

// checkSettingsDir checks the settings directory against the trust rule
// and logs a change of its state once. It reports whether workers may run:
// a directory that does not exist means default settings for all.
func (s *Supervisor) checkSettingsDir() bool {
	if s.cfg.SettingsDir == "" {
		return true
	}
	err := checkDir("settings directory", s.cfg.SettingsDir, s.euid)
	refused := err != nil && !isMissing(err)
	wasRefused := s.settingsDirErr != nil && !isMissing(s.settingsDirErr)
	switch {
	case refused && !wasRefused:
		attrs := []any{"path", s.cfg.SettingsDir, "reason", err.Error()}
		var ue *untrustedError
		if errors.As(err, &ue) {
			attrs = append(attrs, "fix", ue.Fix)
		}
		s.log.Warn("worker settings directory refused: no worker runs until it is fixed", attrs...)
	case !refused && wasRefused:
		s.log.Info("worker settings directory no longer refused; starting workers", "path", s.cfg.SettingsDir)
	}
	s.settingsDirErr = err
	return !refused
}

// handleSettings acts on one inotify event about the settings directory.
func (s *Supervisor) handleSettings(ev dirEvent) (rescan bool) {
	switch {
	case ev.mask&(unix.IN_Q_OVERFLOW|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0,
		ev.name == "" && ev.mask&unix.IN_ATTRIB != 0:
		// Overflowed, gone, or its own mode or owner changed: read
		// everything again.
		return true
	case ev.name == "":
		return false
	}
	name, ok := strings.CutSuffix(ev.name, settingsExt)
	if !ok || !isWorkerName(name) {
		return false
	}
	c := s.due[name]
	c.at = time.Now().Add(s.cfg.Settle)
	s.due[name] = c
	s.setPending()
	return false
}
