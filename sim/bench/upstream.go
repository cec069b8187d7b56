package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// What the matrix needs to know to run yggdrasil 0.1.5 (SysUpstream), as
// built by mk/build-upstream.sh.

// upstreamSkip says why 0.1.5 cannot run case c, "" when it can.
func upstreamSkip(c Case) string {
	if c.Detached {
		return "0.1.5's echo worker has no detached directive (echo-detached)"
	}
	return ""
}

// upstreamArgs are 0.1.5's flags: it takes its client id from the CN of
// its certificate, and connects without TLS to a tcp:// broker even when
// it has one; its worker directory is set at link time.
func upstreamArgs(broker, certFile, keyFile string) []string {
	return []string{"--broker", broker, "--cert-file", certFile, "--key-file", keyFile, "--log-level", "info"}
}

// writeClientCert writes a self-signed certificate whose CN is cn, and
// its key, as PEM files.
func writeClientCert(certFile, keyFile, cn string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	return nil
}
