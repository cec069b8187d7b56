// Package config is yggd's configuration: the Config value, its defaults,
// the TOML file (which names no unknown key), the rules its values must
// follow, and the identity files it names (certificate and key). yggd
// reads it to run; ygg reads the same file, through the same code, to find
// yggd's control socket and to check the host (ygg check), so that the two
// never disagree on what the file means.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/build"
)

// Config is yggd's configuration: defaults, then the TOML file, then flags.
// The TOML keys are the flag names; those of 0.1.x keep their 0.1.x names.
type Config struct {
	Brokers         []string `toml:"broker"`
	LogLevel        string   `toml:"log-level"`
	CertFile        string   `toml:"cert-file"`
	KeyFile         string   `toml:"key-file"`
	CARoot          string   `toml:"ca-root"`
	TopicPrefix     string   `toml:"topic-prefix"`
	DataHost        string   `toml:"data-host"`
	WorkerDir       string   `toml:"worker-dir"`
	WorkerConfigDir string   `toml:"worker-config-dir"` // <name>.toml settings per worker; "" for none
	RuntimeDir      string   `toml:"runtime-dir"`
	StateDir        string   `toml:"state-dir"`
	ClientID        string   `toml:"client-id"`
	DispatchTimeout Duration `toml:"dispatch-timeout"`
	MaxMessageSize  int      `toml:"max-message-size"`
	KeepAlive       Duration `toml:"keepalive"`
	QueueCount      int      `toml:"queue-max-count"`
	QueueBytes      int      `toml:"queue-max-bytes"`
	FetchTimeout    Duration `toml:"fetch-timeout"`
	ControlSocket   string   `toml:"control-socket"` // "" for <runtime-dir>/control.sock
	ControlGroup    string   `toml:"control-group"`  // may use the control socket too
	MetricsListen   string   `toml:"metrics-listen"` // TCP host:port serving /metrics; "" for none
	// File is the configuration file read ("" when none).
	File string `toml:"-"`
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		LogLevel:        "info",
		TopicPrefix:     build.TopicPrefix,
		DataHost:        build.DataHost,
		WorkerDir:       filepath.Join(build.LibexecDir, build.LongName),
		WorkerConfigDir: filepath.Join(build.ConfigDir(), "workers"),
		RuntimeDir:      DefaultRuntimeDir(),
		StateDir:        DefaultStateDir(),
		DispatchTimeout: Duration(yggdrasil.DefaultDispatchTimeout),
		MaxMessageSize:  yggdrasil.DefaultMaxMessageSize,
		KeepAlive:       Duration(30 * time.Second),
		QueueCount:      10_000,
		QueueBytes:      256 << 20,
		FetchTimeout:    Duration(30 * time.Second),
	}
}

// ControlSocketPath returns the control socket's path: control-socket,
// else control.sock in the runtime directory.
func (c Config) ControlSocketPath() string {
	if c.ControlSocket != "" {
		return c.ControlSocket
	}
	return filepath.Join(c.RuntimeDir, "control.sock")
}

// DefaultFile is read when --config is not given and it exists.
func DefaultFile() string {
	return filepath.Join(build.SysconfDir, build.LongName, "config.toml")
}

// DefaultRuntimeDir is where the sockets go when runtime-dir is not set:
// the first of systemd's $RUNTIME_DIRECTORY (the unit's RuntimeDirectory),
// else /run/<longname>.
func DefaultRuntimeDir() string {
	if dir, _, _ := strings.Cut(os.Getenv("RUNTIME_DIRECTORY"), ":"); dir != "" {
		return dir
	}
	return filepath.Join("/run", build.LongName)
}

// DefaultStateDir is where the journal goes when state-dir is not set: the
// first of systemd's $STATE_DIRECTORY (the unit's StateDirectory), else
// <localstatedir>/lib/<longname>.
func DefaultStateDir() string {
	if dir, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); dir != "" {
		return dir
	}
	return filepath.Join(build.LocalstateDir, "lib", build.LongName)
}

// Duration is a TOML or flag duration: a Go duration ("90s", "1m30s") or
// a number of seconds.
type Duration time.Duration

func (d *Duration) Set(s string) error {
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(secs * float64(time.Second))
		return d.check()
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (use 90s, 1m30s, or a number of seconds)", s)
	}
	*d = Duration(v)
	return d.check()
}

func (d *Duration) check() error {
	if *d <= 0 {
		return fmt.Errorf("duration must be positive, got %s", time.Duration(*d))
	}
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalTOML accepts a string or a number of seconds.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		return d.Set(v)
	case int64:
		return d.Set(strconv.FormatInt(v, 10))
	case float64:
		return d.Set(strconv.FormatFloat(v, 'f', -1, 64))
	}
	return fmt.Errorf("want a duration string or a number of seconds, got %T", v)
}
