package yggdcmd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "config.toml", `
broker = ["tcp://file:1883"]
client-id = "fromfile"
log-level = "debug"
dispatch-timeout = "90s"
fetch-timeout = 5
`)
	unknown := writeFile(t, dir, "unknown.toml", "broker = [\"tcp://x:1\"]\nclient-id = \"a\"\nbrokers = [\"typo\"]\n")
	badValue := writeFile(t, dir, "bad.toml", "broker = [\"tcp://x:1\"]\nclient-id = \"a\"\ndispatch-timeout = \"soon\"\n")
	tests := []struct {
		name    string
		args    []string
		want    func(*Config)
		wantErr string
	}{
		{name: "file", args: []string{"--config", file}, want: func(c *Config) {
			c.Brokers, c.ClientID, c.LogLevel = []string{"tcp://file:1883"}, "fromfile", "debug"
			c.DispatchTimeout, c.FetchTimeout = Duration(90*time.Second), Duration(5*time.Second)
		}},
		{name: "flags_win_over_file", args: []string{"--config", file, "--client-id", "fromflag", "--broker", "tcp://a:1", "--broker", "tcp://b:2"}, want: func(c *Config) {
			c.Brokers, c.ClientID, c.LogLevel = []string{"tcp://a:1", "tcp://b:2"}, "fromflag", "debug"
			c.DispatchTimeout, c.FetchTimeout = Duration(90*time.Second), Duration(5*time.Second)
		}},
		{name: "flags_only", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1", "--client-id", "h", "--dispatch-timeout", "2.5"}, want: func(c *Config) {
			c.Brokers, c.ClientID, c.DispatchTimeout = []string{"tcp://a:1"}, "h", Duration(2500*time.Millisecond)
		}},
		{name: "unknown_key", args: []string{"--config", unknown}, wantErr: "unknown key brokers"},
		{name: "bad_value", args: []string{"--config", badValue}, wantErr: "dispatch-timeout"},
		{name: "bad_flag_value", args: []string{"--config", os.DevNull, "--dispatch-timeout", "soon"}, wantErr: "dispatch-timeout"},
		{name: "missing_file", args: []string{"--config", filepath.Join(dir, "nope.toml")}, wantErr: "nope.toml"},
		{name: "no_broker", args: []string{"--config", os.DevNull, "--client-id", "h"}, wantErr: "broker: no broker configured"},
		{name: "control_socket", args: flags("--control-socket", "/run/x/ctl.sock", "--control-group", "wheel"), want: func(c *Config) {
			c.Brokers, c.ClientID, c.ControlSocket, c.ControlGroup = []string{"tcp://a:1"}, "h", "/run/x/ctl.sock", "wheel"
		}},
		{name: "metrics_listen", args: flags("--metrics-listen", "127.0.0.1:9464"), want: func(c *Config) {
			c.Brokers, c.ClientID, c.MetricsListen = []string{"tcp://a:1"}, "h", "127.0.0.1:9464"
		}},
		{name: "metrics_listen_no_port", args: flags("--metrics-listen", "localhost"), wantErr: `metrics-listen: "localhost" is not HOST:PORT`},
		{name: "no_identity", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1"}, wantErr: "client-id"},
		{name: "cert_without_key", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1", "--cert-file", "c.pem"}, wantErr: "cert-file and key-file"},
		{name: "broker_without_scheme", args: []string{"--config", os.DevNull, "--broker", "a:1", "--client-id", "h"}, wantErr: "has no scheme"},
		{name: "bad_log_level", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1", "--client-id", "h", "--log-level", "loud"}, wantErr: "log-level"},
		{name: "broker_http", args: flags("--broker", "http://a:80"), wantErr: `broker: "http://a:80": scheme http is not one of tcp, ssl, ws and wss`},
		{name: "broker_no_host", args: flags("--broker", "tcp://:1883"), wantErr: `broker: "tcp://:1883" has no host (use tcp://host:port)`},
		{name: "broker_bad_url", args: flags("--broker", "tcp://a b:1"), wantErr: `broker: "tcp://a b:1" is not a URL`},
		{name: "broker_second_bad", args: flags("--broker", "ssl://a:8883", "--broker", "https://b"), wantErr: `broker: "https://b": scheme https`},
		{name: "broker_schemes", args: flags("--broker", "ssl://a:2", "--broker", "ws://a/mqtt", "--broker", "wss://a/mqtt", "--broker", "mqtts://a:2"), want: func(c *Config) {
			c.Brokers, c.ClientID = []string{"tcp://a:1", "ssl://a:2", "ws://a/mqtt", "wss://a/mqtt", "mqtts://a:2"}, "h"
		}},
		{name: "client_id_slash", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1", "--client-id", "a/b"}, wantErr: `client-id: "a/b" contains '/', '+', '#' or NUL`},
		{name: "client_id_plus", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1", "--client-id", "a+"}, wantErr: `client-id: "a+" contains`},
		{name: "client_id_hash", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1", "--client-id", "#"}, wantErr: `client-id: "#" contains`},
		{name: "client_id_nul", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1", "--client-id", "a\x00"}, wantErr: `client-id: "a\x00" contains`},
		{name: "topic_prefix_wildcard", args: flags("--topic-prefix", "ygg/+"), wantErr: `topic-prefix: "ygg/+": "+" contains`},
		{name: "topic_prefix_empty_level", args: flags("--topic-prefix", "redhat//insights"), wantErr: `topic-prefix: "redhat//insights": an empty topic level`},
		{name: "topic_prefix_trailing_slash", args: flags("--topic-prefix", "ygg/"), wantErr: `topic-prefix: "ygg/": an empty topic level`},
		{name: "topic_prefix_levels", args: flags("--topic-prefix", "redhat/insights"), want: func(c *Config) {
			c.Brokers, c.ClientID, c.TopicPrefix = []string{"tcp://a:1"}, "h", "redhat/insights"
		}},
		{name: "type_broker_string", args: []string{"--config", writeFile(t, dir, "b.toml", "broker = \"tcp://a:1\"\n")},
			wantErr: `b.toml: broker must be a list of URLs, like broker = ["tcp://host:1883"]`},
		{name: "type_broker_numbers", args: []string{"--config", writeFile(t, dir, "bn.toml", "broker = [1883]\n")},
			wantErr: `bn.toml: broker must be a list of URLs, like broker = ["tcp://host:1883"]`},
		{name: "type_log_level", args: []string{"--config", writeFile(t, dir, "l.toml", "log-level = 3\n")},
			wantErr: `l.toml: log-level must be a string in quotes, like log-level = "info"`},
		{name: "type_duration", args: []string{"--config", writeFile(t, dir, "d.toml", "dispatch-timeout = true\n")},
			wantErr: `d.toml: dispatch-timeout must be a duration, like dispatch-timeout = "90s"`},
		{name: "type_int", args: []string{"--config", writeFile(t, dir, "i.toml", "max-message-size = \"big\"\n")},
			wantErr: `i.toml: max-message-size must be a whole number, like max-message-size = 1000`},
		{name: "type_cert_file", args: []string{"--config", writeFile(t, dir, "c.toml", "cert-file = [\"/a\"]\n")},
			wantErr: `c.toml: cert-file must be a file name in quotes, like cert-file = "/etc/pki/consumer/cert.pem"`},
		{name: "toml_syntax", args: []string{"--config", writeFile(t, dir, "s.toml", "broker = [\n")}, wantErr: "s.toml: toml: line"},
		{name: "argument", args: []string{"--config", os.DevNull, "extra"}, wantErr: "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := ParseConfig(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one that says %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultConfig()
			tc.want(&want)
			want.File = got.File
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

// flags returns the arguments of a valid configuration with no file,
// followed by more.
func flags(more ...string) []string {
	return append([]string{"--config", os.DevNull, "--broker", "tcp://a:1", "--client-id", "h"}, more...)
}

func TestConfigErrorsAtStart(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "a/b", false, 0o600)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"cert_file_missing", Config{CertFile: filepath.Join(dir, "gone.pem"), KeyFile: key}, "cert-file: open " + filepath.Join(dir, "gone.pem")},
		{"ca_root_missing", Config{ClientID: "h", CARoot: filepath.Join(dir, "gone-ca.pem")}, "ca-root: open"},
		{"cn_not_a_topic_level", Config{CertFile: cert, KeyFile: key}, "the certificate's CN is the client id, a topic level: \"a/b\" contains '/'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Brokers = []string{"tcp://127.0.0.1:1"}
			cfg.StateDir, cfg.RuntimeDir, cfg.WorkerDir = t.TempDir(), t.TempDir(), t.TempDir()
			cfg.ClientID, cfg.CertFile, cfg.KeyFile, cfg.CARoot = tc.cfg.ClientID, tc.cfg.CertFile, tc.cfg.KeyFile, tc.cfg.CARoot
			err := serve(t.Context(), nil, cfg, new(slog.LevelVar), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("serve() = %v, want an error that says %q", err, tc.wantErr)
			}
			if !errors.Is(err, errConfig) {
				t.Errorf("serve() = %v: not a configuration error (exit status 2)", err)
			}
		})
	}
	if errors.Is(errors.New("other"), errConfig) || asConfigError(nil) != nil {
		t.Errorf("errConfig matches what it should not")
	}
}

// selfSigned writes a certificate with the given CN and its key, PEM or DER.
func selfSigned(t *testing.T, dir, cn string, der bool, keyMode os.FileMode) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certBytes, keyBytes := certDER, keyDER
	if !der {
		certBytes = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
		keyBytes = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	}
	certFile, keyFile = filepath.Join(dir, "cert.crt"), filepath.Join(dir, "key.key")
	os.WriteFile(certFile, certBytes, 0o644)
	os.WriteFile(keyFile, keyBytes, keyMode)
	os.Chmod(keyFile, keyMode)
	return certFile, keyFile
}

func TestIdentity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		der     bool
		mode    os.FileMode
		warning bool
	}{
		{"pem_with_any_extension", false, 0o600, false},
		{"der", true, 0o600, false},
		{"key_readable_by_others", false, 0o644, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, key := selfSigned(t, t.TempDir(), "consumer-uuid", tc.der, tc.mode)
			var logs bytes.Buffer
			id, err := loadIdentity(Config{CertFile: cert, KeyFile: key}, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			c, err := id.tls.GetClientCertificate(nil)
			if err != nil || id.clientID != "consumer-uuid" || len(c.Certificate) != 1 {
				t.Errorf("client id %q with a chain of %d (%v), want the CN and one certificate", id.clientID, len(c.Certificate), err)
			}
			warned := strings.Contains(logs.String(), "key-file is readable by others") && strings.Contains(logs.String(), "mode=0644")
			if warned != tc.warning {
				t.Errorf("warning = %v, want %v; log: %s", warned, tc.warning, logs.String())
			}
		})
	}
	t.Run("missing_files_are_named", func(t *testing.T) {
		dir := t.TempDir()
		cert, key := selfSigned(t, dir, "x", false, 0o600)
		for _, c := range []Config{{CertFile: filepath.Join(dir, "gone.pem"), KeyFile: key}, {CertFile: cert, KeyFile: filepath.Join(dir, "gone.key")}} {
			_, err := loadIdentity(c, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), "gone.") {
				t.Errorf("identity(%+v) = %v, want an error naming the missing file", c, err)
			}
		}
	})
}

func TestControlSocketPath(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "default_in_runtime_dir", cfg: Config{RuntimeDir: "/run/ygg"}, want: "/run/ygg/control.sock"},
		{name: "configured", cfg: Config{RuntimeDir: "/run/ygg", ControlSocket: "/tmp/c.sock"}, want: "/tmp/c.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.ControlSocketPath(); got != tt.want {
				t.Errorf("ControlSocketPath() = %q, want %q", got, tt.want)
			}
		})
	}
}
