package bench

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ygglab/yggdrasil/sim"
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

// writeClientCert writes a client certificate whose CN is cn, and its
// key, as PEM files, issued by a throwaway CA of the sim's.
func writeClientCert(certFile, keyFile, cn string) error {
	ca, err := sim.OpenCA("")
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueClient(cn)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	return nil
}
