package yggdcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

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

// DefaultConfig returns the built-in defaults.
func DefaultConfig() Config {
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

// DefaultConfigFile is read when --config is not given and it exists.
func DefaultConfigFile() string {
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

// brokers is the repeatable --broker flag.
type brokers []string

func (b *brokers) String() string     { return strings.Join(*b, ",") }
func (b *brokers) Set(v string) error { *b = append(*b, v); return nil }

// errHelp asks for the usage and exit 0.
var errHelp = errors.New("help requested")

// options are the command line switches that are not configuration.
type options struct {
	version    bool
	manPage    bool
	completion bool
}

// ParseConfig builds the configuration from args (without the program name):
// defaults, then the TOML file (--config, or the default file if it
// exists), then the flags given. Every error names the key or flag.
func ParseConfig(args []string, stderr io.Writer) (Config, options, error) {
	cfg := DefaultConfig()
	var opt options
	var flagCfg Config
	var bs brokers
	var configFile string
	fs := flag.NewFlagSet("yggd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&configFile, "config", "", "")
	fs.Var(&bs, "broker", "")
	fs.StringVar(&flagCfg.LogLevel, "log-level", "", "")
	fs.StringVar(&flagCfg.CertFile, "cert-file", "", "")
	fs.StringVar(&flagCfg.KeyFile, "key-file", "", "")
	fs.StringVar(&flagCfg.CARoot, "ca-root", "", "")
	fs.StringVar(&flagCfg.TopicPrefix, "topic-prefix", "", "")
	fs.StringVar(&flagCfg.DataHost, "data-host", "", "")
	fs.StringVar(&flagCfg.WorkerDir, "worker-dir", "", "")
	fs.StringVar(&flagCfg.WorkerConfigDir, "worker-config-dir", "", "")
	fs.StringVar(&flagCfg.RuntimeDir, "runtime-dir", "", "")
	fs.StringVar(&flagCfg.StateDir, "state-dir", "", "")
	fs.StringVar(&flagCfg.ClientID, "client-id", "", "")
	fs.Var(&flagCfg.DispatchTimeout, "dispatch-timeout", "")
	fs.IntVar(&flagCfg.MaxMessageSize, "max-message-size", 0, "")
	fs.Var(&flagCfg.KeepAlive, "keepalive", "")
	fs.IntVar(&flagCfg.QueueCount, "queue-max-count", 0, "")
	fs.IntVar(&flagCfg.QueueBytes, "queue-max-bytes", 0, "")
	fs.Var(&flagCfg.FetchTimeout, "fetch-timeout", "")
	fs.StringVar(&flagCfg.ControlSocket, "control-socket", "", "")
	fs.StringVar(&flagCfg.ControlGroup, "control-group", "", "")
	fs.StringVar(&flagCfg.MetricsListen, "metrics-listen", "", "")
	fs.BoolVar(&opt.version, "version", false, "")
	fs.BoolVar(&opt.manPage, "generate-man-page", false, "")
	fs.BoolVar(&opt.completion, "generate-bash-completion", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, opt, errHelp
		}
		return cfg, opt, err
	}
	if fs.NArg() > 0 {
		return cfg, opt, fmt.Errorf("unexpected argument %q (yggd takes only flags)", fs.Arg(0))
	}
	if opt.version || opt.manPage || opt.completion {
		return cfg, opt, nil
	}
	if configFile == "" {
		if _, err := os.Stat(DefaultConfigFile()); err == nil {
			configFile = DefaultConfigFile()
		}
	}
	if configFile != "" {
		text, err := os.ReadFile(configFile)
		if err != nil {
			return cfg, opt, fmt.Errorf("read config %s: %w", configFile, err)
		}
		var generic map[string]any
		if _, err := toml.Decode(string(text), &generic); err != nil {
			return cfg, opt, fmt.Errorf("read config %s: %w", configFile, err)
		}
		if err := checkTypes(generic); err != nil {
			return cfg, opt, fmt.Errorf("read config %s: %w", configFile, err)
		}
		md, err := toml.Decode(string(text), &cfg)
		if err != nil {
			return cfg, opt, fmt.Errorf("read config %s: %w", configFile, err)
		}
		if undecoded := md.Undecoded(); len(undecoded) > 0 {
			keys := make([]string, len(undecoded))
			for i, k := range undecoded {
				keys[i] = k.String()
			}
			sort.Strings(keys)
			return cfg, opt, fmt.Errorf("read config %s: unknown key %s", configFile, strings.Join(keys, ", "))
		}
		cfg.File = configFile
	}
	// Flags given on the command line win over the file.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "broker":
			cfg.Brokers = bs
		case "log-level":
			cfg.LogLevel = flagCfg.LogLevel
		case "cert-file":
			cfg.CertFile = flagCfg.CertFile
		case "key-file":
			cfg.KeyFile = flagCfg.KeyFile
		case "ca-root":
			cfg.CARoot = flagCfg.CARoot
		case "topic-prefix":
			cfg.TopicPrefix = flagCfg.TopicPrefix
		case "data-host":
			cfg.DataHost = flagCfg.DataHost
		case "worker-dir":
			cfg.WorkerDir = flagCfg.WorkerDir
		case "worker-config-dir":
			cfg.WorkerConfigDir = flagCfg.WorkerConfigDir
		case "runtime-dir":
			cfg.RuntimeDir = flagCfg.RuntimeDir
		case "state-dir":
			cfg.StateDir = flagCfg.StateDir
		case "client-id":
			cfg.ClientID = flagCfg.ClientID
		case "dispatch-timeout":
			cfg.DispatchTimeout = flagCfg.DispatchTimeout
		case "max-message-size":
			cfg.MaxMessageSize = flagCfg.MaxMessageSize
		case "keepalive":
			cfg.KeepAlive = flagCfg.KeepAlive
		case "queue-max-count":
			cfg.QueueCount = flagCfg.QueueCount
		case "queue-max-bytes":
			cfg.QueueBytes = flagCfg.QueueBytes
		case "fetch-timeout":
			cfg.FetchTimeout = flagCfg.FetchTimeout
		case "control-socket":
			cfg.ControlSocket = flagCfg.ControlSocket
		case "control-group":
			cfg.ControlGroup = flagCfg.ControlGroup
		case "metrics-listen":
			cfg.MetricsListen = flagCfg.MetricsListen
		}
	})
	return cfg, opt, cfg.Validate()
}

// Validate checks the values that defaults cannot fix.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("broker: no broker configured (set broker in the config file or give --broker)")
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("cert-file and key-file: give both or neither")
	case c.CertFile == "" && c.ClientID == "":
		return errors.New("client-id: without a certificate (cert-file, key-file) a client id is required")
	case c.MaxMessageSize <= 0:
		return fmt.Errorf("max-message-size: must be positive, got %d", c.MaxMessageSize)
	case c.QueueCount <= 0 || c.QueueBytes <= 0:
		return errors.New("queue-max-count and queue-max-bytes: must be positive")
	case c.TopicPrefix == "":
		return errors.New("topic-prefix: must not be empty")
	case c.RuntimeDir == "":
		return errors.New("runtime-dir: must not be empty")
	case c.StateDir == "":
		return errors.New("state-dir: must not be empty")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log-level: %w", err)
	}
	for _, b := range c.Brokers {
		if err := checkBroker(b); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	if c.MetricsListen != "" {
		if _, port, err := net.SplitHostPort(c.MetricsListen); err != nil || port == "" {
			return fmt.Errorf("metrics-listen: %q is not HOST:PORT (such as 127.0.0.1:9464)", c.MetricsListen)
		}
	}
	if c.ClientID != "" {
		if err := checkTopicLevel(c.ClientID); err != nil {
			return fmt.Errorf("client-id: %w (it is a topic level: use letters, digits, '-', '_' or '.')", err)
		}
	}
	for _, level := range strings.Split(c.TopicPrefix, "/") {
		if err := checkTopicLevel(level); err != nil {
			return fmt.Errorf("topic-prefix: %q: %w (it is one or more topic levels, like %q or \"redhat/insights\")", c.TopicPrefix, err, yggdrasil.DefaultTopicPrefix)
		}
	}
	return nil
}

// brokerSchemes are the broker URL schemes yggd connects with: the four of
// the documentation, and the aliases that 0.1.x accepted through paho
// (mqtt for tcp; mqtts, tls and tcps for ssl).
var brokerSchemes = map[string]bool{
	"tcp": true, "ssl": true, "ws": true, "wss": true,
	"mqtt": true, "mqtts": true, "tls": true, "tcps": true,
}

// checkBroker checks that b is a broker URL yggd can connect to.
func checkBroker(b string) error {
	if !strings.Contains(b, "://") {
		return fmt.Errorf("%q has no scheme (use tcp://host:1883, ssl://host:8883, ws://host/path or wss://host/path)", b)
	}
	u, err := url.Parse(b)
	if err != nil {
		return fmt.Errorf("%q is not a URL (%w); use tcp://host:1883, ssl://host:8883, ws://host/path or wss://host/path", b, errors.Unwrap(err))
	}
	if !brokerSchemes[u.Scheme] {
		return fmt.Errorf("%q: scheme %s is not one of tcp, ssl, ws and wss (MQTT over TCP, over TLS, over WebSocket, over secure WebSocket)", b, u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%q has no host (use %s://host:port)", b, u.Scheme)
	}
	return nil
}

// checkTopicLevel checks that s can be one level of an MQTT topic name:
// not empty, valid UTF-8, and free of the separator '/', the wildcards
// '+' and '#', and NUL.
func checkTopicLevel(s string) error {
	switch {
	case s == "":
		return errors.New("an empty topic level")
	case !utf8.ValidString(s):
		return fmt.Errorf("%q is not valid UTF-8", s)
	case strings.ContainsAny(s, "/+#\x00"):
		return fmt.Errorf("%q contains '/', '+', '#' or NUL, which MQTT topics reserve", s)
	}
	return nil
}

// errConfig marks an error in yggd's configuration, found when parsing it
// or later at start (a file it names that cannot be used): restarting yggd
// cannot fix it, so yggd exits with status 2, and the unit's
// RestartPreventExitStatus=2 stops systemd from restarting it in a loop.
var errConfig = errors.New("configuration error")

// configError wraps a configuration error found at start; errors.Is
// matches it with errConfig.
type configError struct{ err error }

func (e configError) Error() string        { return e.err.Error() }
func (e configError) Unwrap() error        { return e.err }
func (e configError) Is(target error) bool { return target == errConfig }

// asConfigError marks err, if not nil, as a configuration error.
func asConfigError(err error) error {
	if err == nil {
		return nil
	}
	return configError{err}
}

// tomlKind is the TOML type a configuration key takes, in words, with an
// example.
type tomlKind struct {
	what    string // "a list of URLs"
	example string // `["tcp://host:1883"]`
	ok      func(v any) bool
}

var (
	kindStrings  = tomlKind{"a list of strings", `["…"]`, isStringList}
	kindString   = tomlKind{"a string in quotes", `"…"`, func(v any) bool { _, ok := v.(string); return ok }}
	kindInt      = tomlKind{"a whole number", "1000", func(v any) bool { _, ok := v.(int64); return ok }}
	kindDuration = tomlKind{"a duration", `"90s"`, func(v any) bool {
		switch v.(type) {
		case string, int64, float64:
			return true
		}
		return false
	}}
)

func isStringList(v any) bool {
	l, ok := v.([]any)
	if !ok {
		return false
	}
	for _, e := range l {
		if _, ok := e.(string); !ok {
			return false
		}
	}
	return true
}

// keyKinds gives the kind of the keys whose example says more than the
// kind's.
var keyKinds = map[string]tomlKind{
	"broker":    {"a list of URLs", `["tcp://host:1883"]`, isStringList},
	"log-level": {"a string in quotes", `"info"`, kindString.ok},
	"cert-file": {"a file name in quotes", `"/etc/pki/consumer/cert.pem"`, kindString.ok},
	"key-file":  {"a file name in quotes", `"/etc/pki/consumer/key.pem"`, kindString.ok},
}

// checkTypes checks the type of each known key of a decoded configuration
// file, so that a mistake is told in words ("broker must be a list of
// URLs, like broker = [...]") rather than in the decoder's terms. Unknown
// keys are left to the decoder's metadata.
func checkTypes(file map[string]any) error {
	kinds := map[string]tomlKind{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("toml")
		if key == "" || key == "-" {
			continue
		}
		switch {
		case f.Type == reflect.TypeFor[Duration]():
			kinds[key] = kindDuration
		case f.Type.Kind() == reflect.Slice:
			kinds[key] = kindStrings
		case f.Type.Kind() == reflect.String:
			kinds[key] = kindString
		case f.Type.Kind() == reflect.Int:
			kinds[key] = kindInt
		}
		if k, ok := keyKinds[key]; ok {
			kinds[key] = k
		}
	}
	keys := make([]string, 0, len(file))
	for k := range file {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		k, ok := kinds[key]
		if ok && !k.ok(file[key]) {
			return fmt.Errorf("%s must be %s, like %s = %s", key, k.what, key, k.example)
		}
	}
	return nil
}
