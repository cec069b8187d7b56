package check

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/config"
	"github.com/ygglab/yggdrasil/yggdrasil/fileperm"
)

// The names of the checks, as the report lists them.
const (
	NameConfig      = "config"
	NameCertificate = "certificate"
	NameKeyFile     = "key-file"
	NameValidity    = "validity"
	NameClientID    = "client-id"
	NameBroker      = "broker"
	NameTopics      = "topics"
	NameWorkerDir   = "worker-dir"
	NameWorkerFiles = "worker-files"
	NameYggd        = "yggd"
	NameYggdWorkers = "yggd-workers"
	NameRHSM        = "rhsm"
)

// Config reads yggd's configuration file as yggd does (file "" means
// yggd's default file when it exists, else the built-in defaults) and
// checks that it parses, names no unknown key and holds values yggd
// accepts.
func Config(file string) (config.Config, Result) {
	cfg := config.Default()
	if file == "" {
		if _, err := os.Stat(config.DefaultFile()); err == nil {
			file = config.DefaultFile()
		}
	}
	if file != "" {
		if err := config.ReadFile(file, &cfg); err != nil {
			var uk *config.UnknownKeyError
			if errors.As(err, &uk) {
				return cfg, failed(NameConfig, "remove or correct the key (see man yggd for the keys)", "%v", err)
			}
			return cfg, failed(NameConfig, "correct the file (see man yggd for the keys and their types)", "%v", err)
		}
	}
	where := "no configuration file (" + config.DefaultFile() + "), built-in defaults"
	if file != "" {
		where = file
	}
	if err := cfg.Validate(); err != nil {
		return cfg, failed(NameConfig, "set it in "+orDefault(file, config.DefaultFile()), "%s: %v", where, err)
	}
	return cfg, ok(NameConfig, "%s parses, names no unknown key, and yggd accepts its values", where)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Ident is the identity the configuration gives yggd.
type Ident struct {
	ClientID string            // the certificate's CN, else client-id
	Leaf     *x509.Certificate // nil without cert-file, or when it does not load
	TLS      *tls.Config       // nil when the identity files do not load
}

// Identity checks the certificate and key (they exist and match), the key
// file's mode and owner (only its owner may read it, and that is root or
// yggdUID), the certificate's dates at now (an error when not valid, a
// warning within config.CertWarnBefore of its expiry), and that the client
// id is a valid topic level. It returns the identity for the checks that
// connect.
func Identity(cfg config.Config, now time.Time, yggdUID int) (Ident, []Result) {
	id := Ident{ClientID: cfg.ClientID}
	roots, rootsErr := config.RootCAs(cfg.CARoot)
	if cfg.CertFile == "" {
		res := []Result{
			skipped(NameCertificate, "no cert-file: yggd connects without a client certificate"),
			skipped(NameKeyFile, "no key-file"),
			skipped(NameValidity, "no cert-file"),
			clientID(cfg.ClientID, "client-id"),
		}
		if rootsErr == nil {
			id.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		} else {
			res[0] = failed(NameCertificate, "set ca-root to a PEM file of the CA that signed the broker's certificate", "%v", rootsErr)
		}
		return id, res
	}

	var res []Result
	pair, leaf, err := config.LoadKeyPair(cfg.CertFile, cfg.KeyFile)
	switch {
	case err != nil:
		res = append(res, failed(NameCertificate, certAdvice(err), "%v", err))
	case rootsErr != nil:
		res = append(res, failed(NameCertificate, "set ca-root to a PEM file of the CA that signed the broker's certificate", "%v", rootsErr))
	default:
		res = append(res, ok(NameCertificate, "%s and %s load and match (CN %s, issued by %s)",
			cfg.CertFile, cfg.KeyFile, leaf.Subject.CommonName, leaf.Issuer.CommonName))
		id.Leaf, id.ClientID = leaf, leaf.Subject.CommonName
		id.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	}
	res = append(res, KeyFile(cfg.KeyFile, yggdUID))
	if leaf == nil {
		res = append(res, skipped(NameValidity, "needs a certificate that loads"), skipped(NameClientID, "needs a certificate that loads"))
		return id, res
	}
	res = append(res, Validity(cfg.CertFile, leaf, now), clientID(leaf.Subject.CommonName, "the certificate's CN"))
	return id, res
}

// certAdvice says what to do about a certificate or key that does not load.
func certAdvice(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "register the host (ygg register), or set cert-file and key-file to the certificate and key"
	}
	return "make key-file the key of cert-file: register again (ygg register) or install the matching pair"
}

// KeyFile checks that only the key's owner may read it, and that the owner
// is root or yggd's user.
func KeyFile(path string, yggdUID int) Result {
	fi, err := os.Stat(path)
	if err != nil {
		return failed(NameKeyFile, "register the host (ygg register), or set key-file", "%v", err)
	}
	if config.KeyExposed(fi) {
		return failed(NameKeyFile, "chmod 600 "+path, "%s is mode %s: users other than its owner may read the key", path, fileperm.Mode(fi))
	}
	if uid, known := fileperm.Owner(fi); known && uid != 0 && uid != yggdUID {
		return failed(NameKeyFile, "chown root "+path, "%s is owned by uid %d, not root or yggd's user (uid %d)", path, uid, yggdUID)
	}
	return ok(NameKeyFile, "%s is mode %s, readable by its owner only", path, fileperm.Mode(fi))
}

// Validity checks the certificate's dates at now.
func Validity(certFile string, c *x509.Certificate, now time.Time) Result {
	until := c.NotAfter.UTC().Format(time.RFC3339)
	switch config.CheckDates(c, now) {
	case config.NotYetValid:
		return failed(NameValidity, "check the system clock, or register again (ygg register)",
			"%s is not valid before %s", certFile, c.NotBefore.UTC().Format(time.RFC3339))
	case config.Expired:
		return failed(NameValidity, "renew it: register again (ygg register)", "%s expired on %s", certFile, until)
	case config.ExpiresSoon:
		return warning(NameValidity, "renew it soon: register again (ygg register)",
			"%s expires on %s, in less than %d days", certFile, until, int(config.CertWarnBefore.Hours()/24))
	}
	return ok(NameValidity, "%s is valid until %s", certFile, until)
}

// clientID checks that id, taken from what, is a valid client id.
func clientID(id, what string) Result {
	if err := config.CheckTopicLevel(id); err != nil {
		return failed(NameClientID, "use a certificate whose CN has letters, digits, '-', '_' or '.' only",
			"%s is not a valid client id: %v", what, err)
	}
	return ok(NameClientID, "%s is a valid client id (%s)", id, what)
}

// errNoIdentity is why a connecting check is skipped.
var errNoIdentity = fmt.Errorf("needs a certificate, key and ca-root that load")
