package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

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
	if _, err := ParseLevel(c.LogLevel); err != nil {
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
		if err := CheckTopicLevel(c.ClientID); err != nil {
			return fmt.Errorf("client-id: %w (it is a topic level: use letters, digits, '-', '_' or '.')", err)
		}
	}
	for _, level := range strings.Split(c.TopicPrefix, "/") {
		if err := CheckTopicLevel(level); err != nil {
			return fmt.Errorf("topic-prefix: %q: %w (it is one or more topic levels, like %q or \"redhat/insights\")", c.TopicPrefix, err, yggdrasil.DefaultTopicPrefix)
		}
	}
	return nil
}

// LevelTrace is below debug: 0.1.x's trace level.
const LevelTrace = slog.LevelDebug - 4

// ParseLevel returns the slog level a log-level names.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "error":
		return slog.LevelError, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "trace":
		return LevelTrace, nil
	}
	return 0, fmt.Errorf("%q is not one of error, warn, info, debug, trace", s)
}

// brokerSchemes are the broker URL schemes yggd connects with: the four of
// the documentation, and the aliases that 0.1.x accepted through paho
// (mqtt for tcp; mqtts, tls and tcps for ssl).
var brokerSchemes = map[string]bool{
	"tcp": true, "ssl": true, "ws": true, "wss": true,
	"mqtt": true, "mqtts": true, "tls": true, "tcps": true,
}

// IsTLSScheme reports whether a broker URL scheme yggd accepts means TLS.
func IsTLSScheme(scheme string) bool {
	switch scheme {
	case "ssl", "wss", "mqtts", "tls", "tcps":
		return true
	}
	return false
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

// CheckTopicLevel checks that s can be one level of an MQTT topic name:
// not empty, valid UTF-8, and free of the separator '/', the wildcards
// '+' and '#', and NUL. A client id (the certificate's CN) must pass it.
func CheckTopicLevel(s string) error {
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
