package bench

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatrixSystems(t *testing.T) {
	abY := []System{SysRelay, SysPipeline, SysYggd}
	tests := []struct {
		name    string
		m       Matrix
		systems []System
		want    []System
	}{
		{name: "alone", systems: abY, want: abY},
		{name: "baseline", m: Matrix{Baseline: "x"}, systems: abY, want: append(abY[:3:3], SysBase)},
		{name: "upstream", m: Matrix{Upstream: "x"}, systems: abY, want: append(abY[:3:3], SysUpstream)},
		{name: "both", m: Matrix{Baseline: "x", Upstream: "y"}, systems: []System{SysYggd}, want: []System{SysYggd, SysBase, SysUpstream}},
		{name: "no_yggd", m: Matrix{Baseline: "x", Upstream: "y"}, systems: []System{SysPipeline}, want: []System{SysPipeline}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]System(nil), tt.systems...)
			got := tt.m.systems(in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("systems (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.systems, in); diff != "" {
				t.Errorf("the case's systems changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpstreamSkip(t *testing.T) {
	for _, c := range DefaultCases() {
		got := upstreamSkip(c)
		if c.Detached != (got != "") {
			t.Errorf("%s: upstreamSkip = %q, want a reason only for detached cases", c.ID, got)
		}
	}
}

func TestUpstreamArgs(t *testing.T) {
	got := upstreamArgs("tcp://127.0.0.1:1883", "/d/cert.pem", "/d/key.pem")
	want := []string{"--broker", "tcp://127.0.0.1:1883", "--cert-file", "/d/cert.pem", "--key-file", "/d/key.pem", "--log-level", "info"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("upstreamArgs (-want +got):\n%s", diff)
	}
}

// 0.1.5 reads its client id from the certificate's CN (PEM, by the
// .pem extension) and loads the pair with tls.LoadX509KeyPair.
func TestWriteClientCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "consumer")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeClientCert(certFile, keyFile, "bench-1-thru-0.1.5-42"); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatalf("LoadX509KeyPair: %v", err)
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("cert.pem: no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cert.Subject.CommonName, "bench-1-thru-0.1.5-42"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
}
