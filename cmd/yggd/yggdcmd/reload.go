package yggdcmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"
)

// Reloading. serve runs yggd's core (runCore: journal, router, dispatcher,
// workers, transport) and alone owns the configuration once yggd has
// started. SIGHUP makes it read the configuration again with the original
// arguments (flags still win over the file), and a poll of the certificate
// files (certwatch.go) makes it load the identity again. A new
// configuration that does not parse, validate, or whose identity does not
// load is refused as a whole: logged at error, the current one stays. One
// that does is applied in the cheapest of three ways:
//
//   - live: log-level, through the logger's LevelVar;
//   - reconnect: broker, and a new key pair for the same client id and the
//     same roots (cert-file, key-file, or the files' content): the pair is
//     stored behind the TLS configuration's GetClientCertificate, which the
//     transport and the HTTP client share, and the transport closes its
//     connection cleanly and connects with the new settings;
//   - restart of the core, in-process: every other key, and a new client id
//     (the certificate's CN) or new roots (ca-root). Their values are copied
//     into the router's topics, the dispatcher, the journal, the supervisor
//     and the HTTP client when these are built; making each of them
//     changeable would spread locking through the core for a rare admin
//     action, while a restart of the core is the clean stop and the start
//     yggd already has and tests: messages not yet handed to a worker and
//     the answers not yet sent stay in the journal, the broker keeps the
//     persistent session, the workers get SIGTERM and are started again.
//     Unlike a restart of the process it keeps yggd's pid (systemd sees a
//     reload, not a stop) and the configuration in force if the new one
//     turns out to be unusable.

// errRestart is the cause with which serve stops the core to run it again
// with a new configuration.
var errRestart = errors.New("restart with the new configuration")

// connUpdate is new settings for the running core's transport.
type connUpdate struct {
	brokers []string
	tls     *tls.Config
}

// serve runs yggd's core with cfg until ctx ends, reloading the
// configuration on SIGHUP and the identity when its files change. args are
// the command line arguments cfg was parsed from; level is the logger's.
func serve(ctx context.Context, args []string, cfg Config, level *slog.LevelVar, log *slog.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	id, err := loadIdentity(cfg, log)
	if err != nil {
		return asConfigError(err) // a file named by the configuration is unusable
	}
	r := &reloader{args: args, level: level, log: log, cfg: cfg, id: id}
	r.logCertificate("client certificate")
	r.checkValidity(time.Now())
	poll := time.NewTicker(certPollInterval)
	defer poll.Stop()
	for {
		err := r.runOnce(ctx, hup, poll.C)
		switch {
		case !errors.Is(err, errRestart):
			return err
		case ctx.Err() != nil:
			return nil // told to stop while restarting the core
		}
	}
}

// reloader holds the configuration and the identity in force, and applies
// new ones. Only serve's goroutine uses it.
type reloader struct {
	args  []string
	level *slog.LevelVar
	log   *slog.Logger
	cfg   Config
	id    *identity
	// refused are the identity files as they were when they last failed
	// to load; they are not tried again until they change.
	refused fileStamps
	// nextValidity is when the certificate's dates are checked again.
	nextValidity time.Time
}

// plan is what a new configuration or identity asks of the running core.
type plan struct {
	restart   []string // the changes that need a restart of the core
	reconnect bool     // the transport must reconnect
}

// runOnce runs the core once, applying reloads, until ctx ends, the core
// fails, or a reload needs a restart of the core (errRestart).
func (r *reloader) runOnce(ctx context.Context, hup <-chan os.Signal, poll <-chan time.Time) error {
	cctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	updates := make(chan connUpdate)
	done := make(chan error, 1)
	go func() { done <- runCore(cctx, r.cfg, r.id, updates, r.level, r.log) }()
	for {
		var p plan
		reloading := false
		select {
		case err := <-done:
			return err
		case <-hup:
			notify("RELOADING=1")
			reloading = true
			p = r.reload()
		case now := <-poll:
			p = r.poll(now)
		}
		if len(p.restart) > 0 {
			r.log.Info("restarting the core in-process to apply the new configuration", "changes", strings.Join(p.restart, ", "))
			if !reloading {
				notify("RELOADING=1")
			}
			stop(errRestart)
			return <-done // the new core says READY=1
		}
		if p.reconnect {
			select {
			case updates <- connUpdate{brokers: r.cfg.Brokers, tls: r.id.tls}:
			case err := <-done:
				return err
			}
		}
		if reloading {
			notify("READY=1")
		}
	}
}

// reload reads the configuration again and applies it, or logs why not.
func (r *reloader) reload() plan {
	next, _, err := ParseConfig(r.args, io.Discard)
	var id *identity
	if err == nil {
		id, err = r.identityFor(next)
	}
	if err != nil {
		r.log.Error("configuration refused: yggd keeps running on the current one", "error", err)
		return plan{}
	}
	p := r.apply(next, id)
	r.log.Info("configuration reloaded", "config", next.File)
	return p
}

// identityFor returns the identity next names: the current one when
// neither the names of its files nor their content changed, else a new
// one.
func (r *reloader) identityFor(next Config) (*identity, error) {
	same := next.CertFile == r.cfg.CertFile && next.KeyFile == r.cfg.KeyFile &&
		next.CARoot == r.cfg.CARoot && next.ClientID == r.cfg.ClientID
	if same && stampFiles(next) == r.id.files {
		return r.id, nil
	}
	return loadIdentity(next, r.log)
}

// apply makes next and id the configuration and identity in force: it
// logs each key that changed, changes the log level at once, and says
// what else the core must do.
func (r *reloader) apply(next Config, id *identity) plan {
	var p plan
	prev := r.cfg
	for _, c := range diffConfig(prev, next) {
		r.log.Info("configuration changed", "key", c.key, "old", c.old, "new", c.new)
		switch c.key {
		case "log-level":
			l, _ := parseLevel(next.LogLevel) // validated by ParseConfig
			r.level.Set(l)
		case "broker":
			p.reconnect = true
		case "cert-file", "key-file", "ca-root", "client-id":
			// Through the identity, below.
		default:
			p.restart = append(p.restart, c.key)
		}
	}
	r.cfg = next
	if id == r.id {
		return p
	}
	old := r.id
	switch {
	case id.clientID != old.clientID:
		p.restart = append(p.restart, fmt.Sprintf("client id %s → %s", old.clientID, id.clientID))
	case id.files.ca != old.files.ca || next.CARoot != prev.CARoot:
		p.restart = append(p.restart, "ca-root")
	case (id.leaf == nil) != (old.leaf == nil):
		p.restart = append(p.restart, "cert-file")
	}
	renewed := id.leaf != nil && (old.leaf == nil || !bytes.Equal(id.leaf.Raw, old.leaf.Raw))
	switch {
	case len(p.restart) > 0:
		r.id = id
	case renewed:
		// The same client id and roots: only the key pair is new, and
		// the connections made from now on use it.
		old.cert.Store(id.cert.Load())
		old.leaf = id.leaf
		old.files = id.files
		p.reconnect = true
	default:
		// The same certificate (a file touched, or written again).
		old.files = id.files
	}
	r.refused = fileStamps{}
	if renewed {
		r.logCertificate("new client certificate loaded")
		r.checkValidity(time.Now())
	}
	return p
}

// configChange is a key whose value changed, both values printed.
type configChange struct{ key, old, new string }

// diffConfig lists the keys whose values differ between a and b, in the
// order of Config's fields.
func diffConfig(a, b Config) []configChange {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var changes []configChange
	for i, f := range reflect.VisibleFields(va.Type()) {
		key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if key == "" || key == "-" {
			continue
		}
		x, y := va.Field(i).Interface(), vb.Field(i).Interface()
		if !reflect.DeepEqual(x, y) {
			changes = append(changes, configChange{key: key, old: fmt.Sprint(x), new: fmt.Sprint(y)})
		}
	}
	return changes
}
