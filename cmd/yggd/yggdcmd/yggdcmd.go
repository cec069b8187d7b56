// Package yggdcmd is the yggd program: the host agent that keeps the host
// connected to the cloud's MQTT broker, answers its control commands, and
// routes its data messages to the worker processes it supervises. It is an
// importable package so that the e2e suite runs the real program.
package yggdcmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/build"
	"github.com/ygglab/yggdrasil/yggdrasil/content"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/facts"
	"github.com/ygglab/yggdrasil/yggdrasil/ipc"
	"github.com/ygglab/yggdrasil/yggdrasil/journal"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
	"github.com/ygglab/yggdrasil/yggdrasil/supervisor"
)

// Main runs yggd with os.Args and returns the exit code: 0 after a clean
// stop (SIGINT, SIGTERM), 1 when it cannot run, 2 for a usage or
// configuration error (one that a restart cannot fix). SIGHUP reloads the
// configuration (see serve).
func Main() int {
	cfg, opt, err := ParseConfig(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, errHelp):
		fmt.Fprint(os.Stdout, usage())
		return 0
	case err != nil:
		fmt.Fprintf(os.Stderr, "yggd: %v\nRun 'yggd --help' for usage.\n", err)
		return 2
	case opt.version:
		fmt.Printf("yggd version %s\n", build.Version)
		return 0
	case opt.manPage:
		fmt.Print(manPage())
		return 0
	case opt.completion:
		fmt.Print(bashCompletion())
		return 0
	}
	level := new(slog.LevelVar)
	l, _ := parseLevel(cfg.LogLevel)
	level.Set(l)
	log := newLogger(os.Stderr, stderrIsJournal(), level)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, os.Args[1:], cfg, level, log); err != nil {
		log.Error("yggd stopped", "error", err)
		if errors.Is(err, errConfig) {
			return 2 // systemd does not restart it (RestartPreventExitStatus=2)
		}
		return 1
	}
	return 0
}

// levelTrace is below debug: 0.1.x's trace level.
const levelTrace = slog.LevelDebug - 4

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "error":
		return slog.LevelError, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "trace":
		return levelTrace, nil
	}
	return 0, fmt.Errorf("%q is not one of error, warn, info, debug, trace", s)
}

// runCore runs yggd's core as id until ctx ends, then stops cleanly:
// deliveries in flight get a grace period, messages not yet handed to a
// worker stay in the journal for the next start, workers get SIGTERM while
// the dispatcher still takes their answers, answers still queued are sent
// (those left stay in the journal), a retained offline status is
// published, and the connection is closed. It makes the transport
// reconnect with each update received. When ctx ends with errRestart
// (serve runs the core again with a new configuration) it returns that.
//
// The control socket lives and dies with the core: it is created before
// the workers start, and closed once the transport has stopped, so that
// it says "stopping" meanwhile.
func runCore(ctx context.Context, cfg Config, id *identity, updates <-chan connUpdate, level *slog.LevelVar, log *slog.Logger) error {
	clientID, tlsConfig := id.clientID, id.tls
	log = log.With("client_id", clientID)
	warnLoosePermissions(cfg, log)
	log.Info("starting", "version", build.Version, "brokers", cfg.Brokers, "worker_dir", cfg.WorkerDir, "config", cfg.File)

	svc := newService(log, cfg.Brokers)
	events := control.NewEvents()
	conn := newConnState(events)
	tr := mqtt.New(mqtt.Config{
		OnState: func(st mqtt.State) {
			conn.transportState(st)
			svc.transportState(st)
		},
		Brokers:     cfg.Brokers,
		ClientID:    clientID,
		TopicPrefix: cfg.TopicPrefix,
		TLS:         tlsConfig,
		KeepAlive:   time.Duration(cfg.KeepAlive),
		Log:         log.With("component", "mqtt"),
	})
	httpc := content.New(content.Config{
		TLS:       tlsConfig,
		DataHost:  cfg.DataHost,
		Timeout:   time.Duration(cfg.FetchTimeout),
		MaxSize:   cfg.MaxMessageSize,
		UserAgent: build.LongName + "/" + build.Version,
		Log:       log.With("component", "http"),
	})
	j, err := journal.Open(cfg.StateDir, journal.Options{
		MaxCount: cfg.QueueCount,
		MaxBytes: int64(cfg.QueueBytes),
		Log:      log.With("component", "journal"),
	})
	if err != nil {
		return fmt.Errorf("state-dir: %w", err)
	}
	defer j.Close()
	var sup *supervisor.Supervisor // set below; the router only calls it once running
	router := yggdrasil.NewRouter(yggdrasil.RouterConfig{
		ClientID:        clientID,
		TopicPrefix:     cfg.TopicPrefix,
		DispatchTimeout: time.Duration(cfg.DispatchTimeout),
		MaxMessageSize:  cfg.MaxMessageSize,
		Journal:         j,
		Facts:           factsFunc(cfg, log.With("component", "facts")),
		Starting:        func() bool { return sup.Starting() },
		Fetch:           httpc.Fetch,
		Post:            httpc.Post,
		Log:             log.With("component", "router"),
		OnEvent:         events.Publish,
		Wedge:           WedgeRouter,
	}, tr)
	ctl, err := control.Listen(control.Config{
		Path:     cfg.ControlSocketPath(),
		Group:    cfg.ControlGroup,
		Status:   func() control.Status { return controlStatus(id, conn, router, sup)() }, // served once sup is set
		Level:    level,
		Events:   events,
		Dispatch: localDispatch(router),
		MaxBody:  int64(cfg.MaxMessageSize) + 64<<10,
		Log:      log.With("component", "control"),
	})
	if err != nil {
		return err
	}
	var metrics net.Listener
	if cfg.MetricsListen != "" {
		if metrics, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			ctl.Close()
			return fmt.Errorf("metrics-listen: %w", err)
		}
	}
	srv, err := ipc.Listen(ipc.Config{
		RuntimeDir:     cfg.RuntimeDir,
		Registry:       router.Registry(),
		Answer:         router.HandleAnswer,
		Admit:          func(pid int) (string, bool) { return sup.Owner(pid) },
		MainPID:        func(name string) int { return sup.PID(name) },
		Registered:     func(name string) { sup.Registered(name) },
		MaxMessageSize: cfg.MaxMessageSize,
		Log:            log.With("component", "dispatcher"),
	})
	if err != nil {
		ctl.Close()
		if metrics != nil {
			metrics.Close()
		}
		return err
	}
	sup = supervisor.New(supervisor.Config{
		Dir:         cfg.WorkerDir,
		SettingsDir: cfg.WorkerConfigDir,
		ProxyEnv:    supervisor.ProxyEnv(os.Environ()),
		WorkDir:     srv.Dir(),
		Env: []string{
			"YGG_SOCKET_ADDR=" + srv.Addr(),
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"YGG_CLIENT_ID=" + clientID,
			"YGG_LOG_LEVEL=" + cfg.LogLevel,
		},
		OnExit:    func(name string, pid int) { router.Registry().RemoveOwner(name) },
		OnRemoved: func(name string) { router.Registry().Release(name) },
		OnState:   workerEvent(events),
		Log:       log,
	})
	cctx, stopControl := context.WithCancel(context.Background())
	var controlling sync.WaitGroup
	controlling.Go(func() {
		if err := ctl.Run(cctx); err != nil {
			log.Error("control socket stopped", "error", err)
		}
	})
	defer func() {
		stopControl()
		controlling.Wait()
	}()
	if metrics != nil {
		log.Info("serving metrics over TCP", "address", metrics.Addr().String())
		controlling.Go(func() {
			if err := ctl.ServeMetrics(cctx, metrics); err != nil {
				log.Error("metrics listener stopped", "error", err)
			}
		})
	}

	// The transport outlives ctx so that yggd can say goodbye.
	tctx, tcancel := context.WithCancel(context.Background())
	defer tcancel()
	var transport sync.WaitGroup
	transport.Go(func() {
		if err := tr.Run(tctx, router); err != nil {
			log.Error("mqtt transport stopped", "error", err)
		}
	})

	ctx, cancel := context.WithCancelCause(ctx)
	fail := func(err error) {
		if err != nil {
			cancel(err)
		}
	}
	// On stop, the router first lets the deliveries in flight finish
	// while the workers still run; then the workers stop while the
	// dispatcher still takes their answers (and queues them for the cloud).
	sctx, stopServing := context.WithCancel(context.Background())
	wctx, stopWorkers := context.WithCancel(context.Background())
	var serving, supervising, routing sync.WaitGroup
	serving.Go(func() { fail(srv.Serve(sctx)) })
	supervising.Go(func() { fail(sup.Run(wctx)) })
	routing.Go(func() { fail(router.Run(ctx)) })
	stopWatchdog := svc.ready(ctx, loopProbe{"router", router.Alive}, loopProbe{"mqtt transport", tr.Alive})
	defer stopWatchdog()
	log.Info("ready", "dispatcher", srv.Addr(), "control_socket", ctl.Path(), "state_dir", cfg.StateDir)

	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case u := <-updates:
			tr.Update(u.brokers, u.tls)
		}
	}
	if !errors.Is(context.Cause(ctx), errRestart) {
		svc.stopping() // systemd then waits for the process to end
	}
	conn.stopping()
	log.Info("stopping")
	routing.Wait() // messages not yet handed stay in the journal
	stopWorkers()
	supervising.Wait()
	stopServing()
	serving.Wait()
	router.Registry().Close()
	dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
	router.Shutdown(dctx)
	httpc.Close(dctx)
	dcancel()
	tcancel()
	transport.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	js := j.Stats()
	log.Info("stopped", "received", router.Stats().Received, "delivered", router.Stats().Delivered,
		"journal_records", js.Records, "journal_syncs", js.Syncs)
	return nil
}

// factsFunc returns the collector of canonical facts for connection
// statuses. A fact that cannot be read is left empty and logged once.
func factsFunc(cfg Config, log *slog.Logger) func() yggdrasil.CanonicalFacts {
	var once sync.Once
	return func() yggdrasil.CanonicalFacts {
		f, errs := facts.Collect(facts.Sources{ConsumerCert: cfg.CertFile})
		once.Do(func() {
			for _, err := range errs {
				log.Info("canonical fact left out", "error", err)
			}
		})
		return f
	}
}

// identity is who yggd is to the broker and to the cloud's HTTP servers:
// the MQTT client id and the TLS configuration both use. The key pair sits
// behind GetClientCertificate rather than in Certificates, so that a
// renewed pair (same CN, same CA) serves every connection made after it is
// stored, the transport's and the HTTP client's alike, without building
// them again.
type identity struct {
	clientID string
	tls      *tls.Config
	cert     atomic.Pointer[tls.Certificate] // nil without cert-file
	leaf     *x509.Certificate               // cert's leaf; nil without cert-file
	files    fileStamps                      // cert-file, key-file and ca-root as they were before being read
}

// loadIdentity reads the identity cfg names: the client id (the
// certificate's CN, or client-id when there is no certificate), the key
// pair and the roots.
func loadIdentity(cfg Config, log *slog.Logger) (*identity, error) {
	id := &identity{clientID: cfg.ClientID, files: stampFiles(cfg)}
	// Without ca-root, RootCAs stays nil: crypto/tls then loads the
	// system's roots at the first TLS handshake, so a tcp:// broker never
	// pays for them (about 30 ms of start-up on some hosts).
	var roots *x509.CertPool
	if cfg.CARoot != "" {
		var err error
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		pem, err := os.ReadFile(cfg.CARoot)
		if err != nil {
			return nil, fmt.Errorf("ca-root: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca-root: %s holds no PEM certificate", cfg.CARoot)
		}
	}
	id.tls = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cfg.CertFile == "" {
		return id, nil
	}
	cert, leaf, err := loadKeyPair(cfg.CertFile, cfg.KeyFile, log)
	if err != nil {
		return nil, err
	}
	if err := checkTopicLevel(leaf.Subject.CommonName); err != nil {
		return nil, fmt.Errorf("cert-file %s: the certificate's CN is the client id, a topic level: %w", cfg.CertFile, err)
	}
	id.cert.Store(&cert)
	id.leaf = leaf
	id.clientID = leaf.Subject.CommonName
	id.tls.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return id.cert.Load(), nil
	}
	if cfg.ClientID != "" && cfg.ClientID != id.clientID {
		log.Warn("client-id ignored: the certificate's CN is the client id", "client_id", cfg.ClientID, "cn", id.clientID)
	}
	return id, nil
}

// loadKeyPair reads a certificate and key in PEM or DER (told apart by
// content, not by file name) and returns the pair and its leaf, whose CN
// is the client id.
func loadKeyPair(certFile, keyFile string, log *slog.Logger) (tls.Certificate, *x509.Certificate, error) {
	certBytes, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("cert-file: %w", err)
	}
	info, err := os.Stat(keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("key-file: %w", err)
	}
	if mode := info.Mode().Perm(); mode&0o077 != 0 {
		log.Warn("key-file is readable by others: chmod 600 it", "key_file", keyFile, "mode", fmt.Sprintf("%#o", mode))
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

// toPEM wraps DER bytes in PEM; PEM input is returned as it is.
func toPEM(kind string, b []byte) []byte {
	if strings.Contains(string(b[:min(len(b), 64)]), "-----BEGIN") {
		return b
	}
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: b})
}
