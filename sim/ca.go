package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is the sim's certificate authority. It signs the broker's server
// certificate and client certificates whose CN is a host id (the MQTT client
// id the broker then requires). With a directory its key and certificate
// are kept there, so that certificates stay valid across restarts.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	dir     string // "" when in memory
}

// Files of a CA directory.
const (
	caCertFile     = "ca.pem"
	caKeyFile      = "ca-key.pem"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
)

// OpenCA loads the CA kept in dir, creating it on first use. With dir ""
// it returns a new CA that lives in memory only.
func OpenCA(dir string) (*CA, error) {
	if dir != "" {
		certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
		if err == nil {
			keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
			if err != nil {
				return nil, fmt.Errorf("open ca: %w", err)
			}
			ca, err := parseCA(certPEM, keyPEM)
			if err != nil {
				return nil, fmt.Errorf("open ca in %s: %w", dir, err)
			}
			ca.dir = dir
			return ca, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open ca: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "yggsim CA", Organization: []string{"yggsim"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	ca, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create ca: %w", err)
		}
		if err := writeFiles(dir, map[string][]byte{caCertFile: certPEM, caKeyFile: keyPEM}); err != nil {
			return nil, fmt.Errorf("create ca: %w", err)
		}
		ca.dir = dir
	}
	return ca, nil
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse ca key pair: %w", err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse ca key pair: key cannot sign")
	}
	return &CA{cert: pair.Leaf, certPEM: certPEM, key: signer}, nil
}

// CertPEM returns the CA certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// Pool returns a pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssueClient returns a new client certificate and its key, PEM-encoded,
// whose subject CN is cn. Its signature matches the func(cn) shape that
// the fake RHSM uses to sign consumer certificates.
func (ca *CA) IssueClient(cn string) (certPEM, keyPEM []byte, err error) {
	if cn == "" {
		return nil, nil, fmt.Errorf("issue client certificate: empty CN")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certPEM, keyPEM, err = ca.issue(tmpl)
	if err != nil {
		return nil, nil, fmt.Errorf("issue client certificate for %q: %w", cn, err)
	}
	if err := ca.recordIssued(cn); err != nil {
		return nil, nil, fmt.Errorf("issue client certificate for %q: %w", cn, err)
	}
	return certPEM, keyPEM, nil
}

// ServerCertificate returns the broker's certificate, valid for 127.0.0.1,
// ::1 and localhost. With a CA directory it is kept there and reused.
func (ca *CA) ServerCertificate() (tls.Certificate, error) {
	if ca.dir != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(ca.dir, serverCertFile), filepath.Join(ca.dir, serverKeyFile))
		if err == nil && pair.Leaf != nil && pair.Leaf.CheckSignatureFrom(ca.cert) == nil && time.Now().Before(pair.Leaf.NotAfter) {
			return pair, nil
		}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	certPEM, keyPEM, err := ca.issue(tmpl)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	if ca.dir != "" {
		if err := writeFiles(ca.dir, map[string][]byte{serverCertFile: certPEM, serverKeyFile: keyPEM}); err != nil {
			return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
		}
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// ServerTLSConfig returns the broker's TLS configuration: the server
// certificate, and client certificates required and verified against the CA.
func (ca *CA) ServerTLSConfig() (*tls.Config, error) {
	cert, err := ca.ServerCertificate()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// IssueClientValid is IssueClient with the given validity period, for
// certificates that are expired or not yet valid.
func (ca *CA) IssueClientValid(cn string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if cn == "" {
		return nil, nil, fmt.Errorf("issue client certificate: empty CN")
	}
	if !notAfter.After(notBefore) {
		return nil, nil, fmt.Errorf("issue client certificate for %q: not after %s is not after not before %s", cn, notAfter, notBefore)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certPEM, keyPEM, err = ca.issueValid(tmpl, notBefore, notAfter)
	if err != nil {
		return nil, nil, fmt.Errorf("issue client certificate for %q: %w", cn, err)
	}
	if err := ca.recordIssued(cn); err != nil {
		return nil, nil, fmt.Errorf("issue client certificate for %q: %w", cn, err)
	}
	return certPEM, keyPEM, nil
}

// recordIssued makes cn a TLS host in the CA's state directory, so that a
// sim using the directory refuses it on the plain listener (see acl).
func (ca *CA) recordIssued(cn string) error {
	if ca.dir == "" {
		return nil
	}
	return appendTLSHost(ca.dir, cn)
}

// issue signs tmpl with a new key, valid from an hour ago for ten years.
func (ca *CA) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	return ca.issueValid(tmpl, time.Now().Add(-time.Hour), time.Now().AddDate(10, 0, 0))
}

func (ca *CA) issueValid(tmpl *x509.Certificate, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notAfter
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// writeFiles writes each file atomically (temporary file, then rename);
// keys are readable by the owner only.
func writeFiles(dir string, files map[string][]byte) error {
	for name, data := range files {
		tmp, err := os.CreateTemp(dir, "."+name+".*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(data)
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("write %s: %w", name, err)
		}
		if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
