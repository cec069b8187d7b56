package testscript

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/sim"
)

// tlsCommands returns the commands that write bad client certificates, for
// the scenarios where TLS must fail: an expired certificate, and one signed
// by a CA the broker does not trust.
func tlsCommands() map[string]command {
	return map[string]command{
		"cert-expired": {
			usage: "cert-expired host-id dir",
			run:   cmdCertExpired,
		},
		"cert-other-ca": {
			usage: "cert-other-ca host-id dir",
			run:   cmdCertOtherCA,
		},
	}
}

// cmdCertExpired writes into dir a certificate for host-id signed by the
// sim's CA that expired an hour ago (it was valid for the hour before),
// its key, and the sim's CA as ca.pem.
func cmdCertExpired(ts *goscript.TestScript, args []string) error {
	if len(args) != 2 {
		return ErrUsage
	}
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	ca := s.CertificateAuthority()
	now := time.Now()
	certPEM, keyPEM, err := ca.IssueClientValid(args[0], now.Add(-2*time.Hour), now.Add(-time.Hour))
	if err != nil {
		return err
	}
	return writeCertDir(ts.MkAbs(args[1]), certPEM, keyPEM, ca.CertPEM())
}

// cmdCertOtherCA writes into dir a valid certificate for host-id signed by
// a new CA that the sim does not know, its key, and that CA as ca.pem.
func cmdCertOtherCA(ts *goscript.TestScript, args []string) error {
	if len(args) != 2 {
		return ErrUsage
	}
	other, err := sim.OpenCA("")
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := other.IssueClient(args[0])
	if err != nil {
		return err
	}
	return writeCertDir(ts.MkAbs(args[1]), certPEM, keyPEM, other.CertPEM())
}

// writeCertDir writes cert.pem, key.pem and ca.pem into dir, mode 600.
func writeCertDir(dir string, certPEM, keyPEM, caPEM []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	for name, data := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "ca.pem": caPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
