package yggdcmd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
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
		{name: "no_identity", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1"}, wantErr: "client-id"},
		{name: "cert_without_key", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1", "--cert-file", "c.pem"}, wantErr: "cert-file and key-file"},
		{name: "broker_without_scheme", args: []string{"--config", os.DevNull, "--broker", "a:1", "--client-id", "h"}, wantErr: "has no scheme"},
		{name: "bad_log_level", args: []string{"--config", os.DevNull, "--broker", "tcp://a:1", "--client-id", "h", "--log-level", "loud"}, wantErr: "log-level"},
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
			id, tlsConfig, err := identity(Config{CertFile: cert, KeyFile: key}, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if id != "consumer-uuid" || len(tlsConfig.Certificates) != 1 {
				t.Errorf("client id %q with %d certificates, want the CN and one", id, len(tlsConfig.Certificates))
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
			_, _, err := identity(c, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), "gone.") {
				t.Errorf("identity(%+v) = %v, want an error naming the missing file", c, err)
			}
		}
	})
}
