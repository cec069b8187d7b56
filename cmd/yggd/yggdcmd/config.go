package yggdcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ygglab/yggdrasil/yggdrasil/config"
)

// Config is yggd's configuration (yggdrasil/config, which ygg reads too).
type Config = config.Config

// Duration is a TOML or flag duration.
type Duration = config.Duration

// DefaultConfig returns the built-in defaults.
func DefaultConfig() Config { return config.Default() }

// DefaultConfigFile is read when --config is not given and it exists.
func DefaultConfigFile() string { return config.DefaultFile() }

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
		if err := config.ReadFile(configFile, &cfg); err != nil {
			return cfg, opt, err
		}
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
