// Package yggdcmd is the yggd program: the host agent that keeps the host
// connected to the cloud's MQTT broker, answers its control commands, and
// routes its data messages to the worker processes it supervises. It is an
// importable package so that the e2e suite runs the real program.
package yggdcmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/agent"
	"github.com/ygglab/yggdrasil/yggdrasil/build"
	"github.com/ygglab/yggdrasil/yggdrasil/config"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/facts"
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
const levelTrace = config.LevelTrace

func parseLevel(s string) (slog.Level, error) { return config.ParseLevel(s) }

// runCore runs yggd's core, an agent.Agent (see its Run for the orderly
// stop), as id until ctx ends. It makes the transport reconnect with each
// update received. When ctx ends with errRestart (serve runs the core
// again with a new configuration) it returns that.
//
// The control socket lives and dies with the core: it is created first
// (a second yggd stops there), and closed once the agent has stopped, so
// that it says "stopping" meanwhile.
func runCore(ctx context.Context, cfg Config, id *identity, updates <-chan connUpdate, level *slog.LevelVar, log *slog.Logger) error {
	clientID, tlsConfig := id.clientID, id.tls
	log = log.With("client_id", clientID)
	warnLoosePermissions(cfg, log)
	log.Info("starting", "version", build.Version, "brokers", cfg.Brokers, "worker_dir", cfg.WorkerDir, "config", cfg.File)

	svc := newService(log, cfg.Brokers)
	events := control.NewEvents()
	conn := newConnState(events)
	// The control socket comes first: it refuses to start a second yggd
	// before anything of the first one's is touched.
	var a *agent.Agent
	ctl, err := control.Listen(control.Config{
		Path:  cfg.ControlSocketPath(),
		Group: cfg.ControlGroup,
		// Served once ctl runs, after a is set.
		Status: func() control.Status { return controlStatus(id, conn, a.Router, a.Supervisor)() },
		Level:  level,
		Events: events,
		Dispatch: func(req control.DispatchRequest, answer func(json.RawMessage)) (string, func(), error) {
			return localDispatch(a.Router)(req, answer)
		},
		MaxBody: int64(cfg.MaxMessageSize) + 64<<10,
		Log:     log.With("component", "control"),
	})
	if err != nil {
		return err
	}
	var stopWatchdog func()
	a, err = agent.New(agent.Config{
		ClientID:          clientID,
		Brokers:           cfg.Brokers,
		TLS:               tlsConfig,
		TopicPrefix:       cfg.TopicPrefix,
		KeepAlive:         time.Duration(cfg.KeepAlive),
		WorkerDir:         cfg.WorkerDir,
		WorkerEnv:         []string{"YGG_LOG_LEVEL=" + cfg.LogLevel},
		WorkerSettingsDir: cfg.WorkerConfigDir,
		ProxyEnv:          supervisor.ProxyEnv(os.Environ()),
		RuntimeDir:        cfg.RuntimeDir,
		StateDir:          cfg.StateDir,
		DispatchTimeout:   time.Duration(cfg.DispatchTimeout),
		MaxMessageSize:    cfg.MaxMessageSize,
		QueueCount:        cfg.QueueCount,
		QueueBytes:        int64(cfg.QueueBytes),
		DataHost:          cfg.DataHost,
		FetchTimeout:      time.Duration(cfg.FetchTimeout),
		UserAgent:         build.LongName + "/" + build.Version,
		Facts:             factsFunc(cfg, log.With("component", "facts")),
		OnConnection: func(st mqtt.State) {
			conn.transportState(st)
			svc.transportState(st)
		},
		OnEvent:       events.Publish,
		OnWorkerState: workerEvent(events),
		OnStopping: func() {
			if !errors.Is(context.Cause(ctx), errRestart) {
				svc.stopping() // systemd then waits for the process to end
			}
			conn.stopping()
		},
		Log:   log,
		Wedge: WedgeRouter,
	})
	if err != nil {
		ctl.Close()
		return err
	}
	var metrics net.Listener
	if cfg.MetricsListen != "" {
		if metrics, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			ctl.Close()
			a.Close()
			return fmt.Errorf("metrics-listen: %w", err)
		}
	}
	// The control socket outlives the agent, so that it says "stopping"
	// meanwhile.
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

	// The configuration updates of a reload go to the transport while the
	// agent runs.
	uctx, stopUpdates := context.WithCancel(ctx)
	var updating sync.WaitGroup
	updating.Go(func() {
		for {
			select {
			case <-uctx.Done():
				return
			case u := <-updates:
				a.Transport.Update(u.brokers, u.tls)
			}
		}
	})
	err = a.Run(ctx, func() {
		stopWatchdog = svc.ready(ctx, loopProbe{"router", a.Router.Alive}, loopProbe{"mqtt transport", a.Transport.Alive})
		log.Info("ready", "dispatcher", a.Dispatcher.Addr(), "control_socket", ctl.Path(), "state_dir", cfg.StateDir)
	})
	stopUpdates()
	updating.Wait()
	if stopWatchdog != nil {
		stopWatchdog()
	}
	if err != nil {
		return err
	}
	js := a.Journal.Stats()
	log.Info("stopped", "received", a.Router.Stats().Received, "delivered", a.Router.Stats().Delivered,
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
	roots, err := config.RootCAs(cfg.CARoot)
	if err != nil {
		return nil, err
	}
	id.tls = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cfg.CertFile == "" {
		return id, nil
	}
	cert, leaf, err := loadKeyPair(cfg.CertFile, cfg.KeyFile, log)
	if err != nil {
		return nil, err
	}
	if err := config.CheckTopicLevel(leaf.Subject.CommonName); err != nil {
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

// loadKeyPair reads a certificate and key (config.LoadKeyPair), warning
// about a key file that others may read.
func loadKeyPair(certFile, keyFile string, log *slog.Logger) (tls.Certificate, *x509.Certificate, error) {
	info, err := os.Stat(keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("key-file: %w", err)
	}
	if config.KeyExposed(info) {
		log.Warn("key-file is readable by others: chmod 600 it", "key_file", keyFile, "mode", fmt.Sprintf("%#o", info.Mode().Perm()))
	}
	return config.LoadKeyPair(certFile, keyFile)
}
