package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/facts"
)

// The identity files: the certificate whose CN is yggd's client id, its
// key, and the rules yggd applies to them.

// LoadKeyPair reads a certificate and key in PEM or DER (told apart by
// content, not by file name) and returns the pair and its leaf, whose CN
// is the client id. It does not look at the key file's mode: see
// KeyExposed.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, *x509.Certificate, error) {
	certBytes, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("cert-file: %w", err)
	}
	keyBytes, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("key-file: %w", err)
	}
	leaf, err := facts.ParseCert(certBytes)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("cert-file %s: %w", certFile, err)
	}
	if leaf.Subject.CommonName == "" {
		return tls.Certificate{}, nil, fmt.Errorf("cert-file %s: the certificate has no CN (the client id)", certFile)
	}
	cert, err := tls.X509KeyPair(toPEM("CERTIFICATE", certBytes), toPEM("PRIVATE KEY", keyBytes))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("cert-file %s and key-file %s: %w", certFile, keyFile, err)
	}
	return cert, leaf, nil
}

// RootCAs returns the roots that verify the broker: the system's and the
// certificates of the PEM file caRoot; nil when caRoot is "", so that
// crypto/tls loads the system's roots at the first handshake (a tcp://
// broker never pays for them).
func RootCAs(caRoot string) (*x509.CertPool, error) {
	if caRoot == "" {
		return nil, nil
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	pem, err := os.ReadFile(caRoot)
	if err != nil {
		return nil, fmt.Errorf("ca-root: %w", err)
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca-root: %s holds no PEM certificate", caRoot)
	}
	return roots, nil
}

// toPEM wraps DER bytes in PEM; PEM input is returned as it is.
func toPEM(kind string, b []byte) []byte {
	if strings.Contains(string(b[:min(len(b), 64)]), "-----BEGIN") {
		return b
	}
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: b})
}

// KeyExposed reports whether a key file's mode lets anyone but its owner
// at it (any permission bit for group or others).
func KeyExposed(fi fs.FileInfo) bool { return fi.Mode().Perm()&0o077 != 0 }

// CertWarnBefore is how long before its expiry a certificate is warned
// about.
const CertWarnBefore = 30 * 24 * time.Hour

// Validity is where a time stands in a certificate's validity period.
type Validity int

const (
	Valid       Validity = iota // valid now and for CertWarnBefore more
	ExpiresSoon                 // valid now, but for less than CertWarnBefore
	Expired
	NotYetValid
)

// CheckDates says where now stands in c's validity period.
func CheckDates(c *x509.Certificate, now time.Time) Validity {
	switch {
	case now.Before(c.NotBefore):
		return NotYetValid
	case now.After(c.NotAfter):
		return Expired
	case c.NotAfter.Sub(now) < CertWarnBefore:
		return ExpiresSoon
	}
	return Valid
}
