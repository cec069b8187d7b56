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
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/build"
	"github.com/ygglab/yggdrasil/yggdrasil/content"
	"github.com/ygglab/yggdrasil/yggdrasil/facts"
	"github.com/ygglab/yggdrasil/yggdrasil/ipc"
	"github.com/ygglab/yggdrasil/yggdrasil/journal"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
	"github.com/ygglab/yggdrasil/yggdrasil/supervisor"
)

// Main runs yggd with os.Args and returns the exit code: 0 after a clean
// stop (SIGINT, SIGTERM), 1 when it cannot run, 2 for a usage error.
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
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg, log); err != nil {
		log.Error("yggd stopped", "error", err)
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

// Run runs yggd until ctx ends, then stops cleanly: deliveries in flight
// get a grace period, messages not yet handed to a worker stay in the
// journal for the next start, workers get SIGTERM while the dispatcher
// still takes their answers, answers still queued are sent (those left stay
// in the journal), a retained offline status is published, and the
// connection is closed.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	clientID, tlsConfig, err := identity(cfg, log)
	if err != nil {
		return err
	}
	log = log.With("client_id", clientID)
	warnLoosePermissions(cfg, log)
	log.Info("starting", "version", build.Version, "brokers", cfg.Brokers, "worker_dir", cfg.WorkerDir, "config", cfg.File)

	svc := newService(log, cfg.Brokers)
	tr := mqtt.New(mqtt.Config{
		OnState:     svc.transportState,
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
		Wedge:           WedgeRouter,
	}, tr)
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
		return err
	}
	sup = supervisor.New(supervisor.Config{
		Dir:     cfg.WorkerDir,
		WorkDir: srv.Dir(),
		Env: []string{
			"YGG_SOCKET_ADDR=" + srv.Addr(),
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"YGG_CLIENT_ID=" + clientID,
			"YGG_LOG_LEVEL=" + cfg.LogLevel,
		},
		OnExit:    func(name string, pid int) { router.Registry().RemoveOwner(name) },
		OnRemoved: func(name string) { router.Registry().Release(name) },
		Log:       log,
	})

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
	log.Info("ready", "dispatcher", srv.Addr(), "state_dir", cfg.StateDir)

	<-ctx.Done()
	svc.stopping()
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

// identity returns the MQTT client id (the certificate's CN, or client-id
// when there is no certificate) and the TLS configuration.
func identity(cfg Config, log *slog.Logger) (string, *tls.Config, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if cfg.CARoot != "" {
		pem, err := os.ReadFile(cfg.CARoot)
		if err != nil {
			return "", nil, fmt.Errorf("ca-root: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return "", nil, fmt.Errorf("ca-root: %s holds no PEM certificate", cfg.CARoot)
		}
	}
	tlsConfig := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cfg.CertFile == "" {
		return cfg.ClientID, tlsConfig, nil
	}
	cert, cn, err := loadKeyPair(cfg.CertFile, cfg.KeyFile, log)
	if err != nil {
		return "", nil, err
	}
	tlsConfig.Certificates = []tls.Certificate{cert}
	if cfg.ClientID != "" && cfg.ClientID != cn {
		log.Warn("client-id ignored: the certificate's CN is the client id", "client_id", cfg.ClientID, "cn", cn)
	}
	return cn, tlsConfig, nil
}

// loadKeyPair reads a certificate and key in PEM or DER (told apart by
// content, not by file name) and returns the certificate's CN.
func loadKeyPair(certFile, keyFile string, log *slog.Logger) (tls.Certificate, string, error) {
	certBytes, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("cert-file: %w", err)
	}
	info, err := os.Stat(keyFile)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("key-file: %w", err)
	}
	if mode := info.Mode().Perm(); mode&0o077 != 0 {
		log.Warn("key-file is readable by others: chmod 600 it", "key_file", keyFile, "mode", fmt.Sprintf("%#o", mode))
	}
	keyBytes, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("key-file: %w", err)
	}
	leaf, err := facts.ParseCert(certBytes)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("cert-file %s: %w", certFile, err)
	}
	if leaf.Subject.CommonName == "" {
		return tls.Certificate{}, "", fmt.Errorf("cert-file %s: the certificate has no CN (the client id)", certFile)
	}
	cert, err := tls.X509KeyPair(toPEM("CERTIFICATE", certBytes), toPEM("PRIVATE KEY", keyBytes))
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("cert-file %s and key-file %s: %w", certFile, keyFile, err)
	}
	return cert, leaf.Subject.CommonName, nil
}

// toPEM wraps DER bytes in PEM; PEM input is returned as it is.
func toPEM(kind string, b []byte) []byte {
	if strings.Contains(string(b[:min(len(b), 64)]), "-----BEGIN") {
		return b
	}
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: b})
}
