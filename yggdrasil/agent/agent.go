// Package agent wires the core of a yggdrasil host agent: the MQTT
// transport, the router and its journal, the content client of detached
// workers, the workers' dispatcher and the supervisor of the worker
// executables, and runs them with the start and the stop that they need
// of each other. cmd/yggd is the reference daemon built on it: it adds the
// configuration file, reload, the control socket and systemd around an
// Agent. A customised daemon does the same with its own choices.
//
// What each piece owns:
//
//   - the transport (yggdrasil/mqtt): the connection to the broker, its
//     retries, the subscriptions, the will;
//   - the router (yggdrasil): control commands, data messages from their
//     arrival to their worker, the answers to the cloud, the connection
//     status; the journal (yggdrasil/journal) keeps what it must not lose;
//   - the content client (yggdrasil/content): fetching and posting the
//     content of detached workers;
//   - the dispatcher (yggdrasil/ipc): the gRPC socket the workers register
//     on and answer through, and the connections to each worker;
//   - the supervisor (yggdrasil/supervisor): the worker processes, their
//     restarts, and which process may register.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/content"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/ipc"
	"github.com/ygglab/yggdrasil/yggdrasil/journal"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
	"github.com/ygglab/yggdrasil/yggdrasil/supervisor"
)

// Config is what an Agent needs. Zero values take the defaults of the
// pieces.
type Config struct {
	ClientID    string   // required: the MQTT client id and topic level
	Brokers     []string // required: tcp://, ssl://, ws:// or wss:// URLs
	TLS         *tls.Config
	TopicPrefix string // default yggdrasil.DefaultTopicPrefix
	KeepAlive   time.Duration

	WorkerDir string // the worker executables; required
	// WorkerEnv is added to the environment of every worker, after
	// YGG_SOCKET_ADDR, PATH and YGG_CLIENT_ID, which it cannot replace.
	WorkerEnv []string
	// WorkerSettingsDir holds the per-worker settings, <name>.toml
	// (supervisor.Config.SettingsDir); "" for none.
	WorkerSettingsDir string
	// ProxyEnv is what a worker whose settings say proxy = true gets
	// (supervisor.ProxyEnv of the daemon's environment).
	ProxyEnv   []string
	RuntimeDir string // required: the dispatcher's sockets go in RuntimeDir/workers
	StateDir   string // required: the journal

	DispatchTimeout time.Duration
	MaxMessageSize  int
	QueueCount      int   // answers kept for the broker (journal bound)
	QueueBytes      int64 // bytes of answers kept for the broker
	DataHost        string
	FetchTimeout    time.Duration
	UserAgent       string // of the content client's requests

	// Facts returns the canonical facts of each connection status; nil
	// publishes none.
	Facts func() yggdrasil.CanonicalFacts
	// OnConnection, OnEvent and OnWorkerState, if set, are told what the
	// transport, the router and the supervisor do; they must not block.
	OnConnection  func(mqtt.State)
	OnEvent       func(control.Event)
	OnWorkerState func(supervisor.WorkerStatus)
	// OnStopping is called when Run's context has ended, before the
	// stop begins.
	OnStopping func()

	Log *slog.Logger
	// Wedge is the router's test hook (yggdrasil.RouterConfig.Wedge).
	Wedge <-chan struct{}
}

// Agent is the core of a host agent. Its pieces are exported for what is
// built around them (status, control); Run owns their lifetimes.
type Agent struct {
	Transport  *mqtt.Transport
	Router     *yggdrasil.Router
	Journal    *journal.Journal
	Dispatcher *ipc.Server
	Supervisor *supervisor.Supervisor

	cfg  Config
	log  *slog.Logger
	http *content.Client
}

// New opens the journal and the dispatcher's socket and builds the
// pieces; nothing runs until Run. Call Close instead of Run to let go of
// what New opened.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.ClientID == "":
		return nil, errors.New("agent: no client id")
	case len(cfg.Brokers) == 0:
		return nil, errors.New("agent: no broker")
	case cfg.WorkerDir == "" || cfg.RuntimeDir == "" || cfg.StateDir == "":
		return nil, errors.New("agent: WorkerDir, RuntimeDir and StateDir are required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log}
	j, err := journal.Open(cfg.StateDir, journal.Options{
		MaxCount: cfg.QueueCount,
		MaxBytes: cfg.QueueBytes,
		Log:      log.With("component", "journal"),
	})
	if err != nil {
		return nil, fmt.Errorf("state-dir: %w", err)
	}
	a.Journal = j
	a.Transport = mqtt.New(mqtt.Config{
		OnState:     cfg.OnConnection,
		Brokers:     cfg.Brokers,
		ClientID:    cfg.ClientID,
		TopicPrefix: cfg.TopicPrefix,
		TLS:         cfg.TLS,
		KeepAlive:   cfg.KeepAlive,
		Log:         log.With("component", "mqtt"),
	})
	a.http = content.New(content.Config{
		TLS:       cfg.TLS,
		DataHost:  cfg.DataHost,
		Timeout:   cfg.FetchTimeout,
		MaxSize:   cfg.MaxMessageSize,
		UserAgent: cfg.UserAgent,
		Log:       log.With("component", "http"),
	})
	a.Router = yggdrasil.NewRouter(yggdrasil.RouterConfig{
		ClientID:        cfg.ClientID,
		TopicPrefix:     cfg.TopicPrefix,
		DispatchTimeout: cfg.DispatchTimeout,
		MaxMessageSize:  cfg.MaxMessageSize,
		Journal:         j,
		Facts:           cfg.Facts,
		// The supervisor is set below, and the router asks only once Run
		// has started.
		Starting: func() bool { return a.Supervisor.Starting() },
		Fetch:    a.http.Fetch,
		Post:     a.http.Post,
		Release:  a.http.Release,
		Log:      log.With("component", "router"),
		OnEvent:  cfg.OnEvent,
		Wedge:    cfg.Wedge,
	}, a.Transport)
	a.Dispatcher, err = ipc.Listen(ipc.Config{
		RuntimeDir:     cfg.RuntimeDir,
		Registry:       a.Router.Registry(),
		Answer:         a.Router.HandleAnswer,
		Admit:          func(pid int) (string, bool) { return a.Supervisor.Owner(pid) },
		MainPID:        func(name string) int { return a.Supervisor.PID(name) },
		Registered:     func(name string) { a.Supervisor.Registered(name) },
		MaxMessageSize: cfg.MaxMessageSize,
		Log:            log.With("component", "dispatcher"),
	})
	if err != nil {
		j.Close()
		return nil, err
	}
	a.Supervisor = supervisor.New(supervisor.Config{
		Dir:         cfg.WorkerDir,
		SettingsDir: cfg.WorkerSettingsDir,
		ProxyEnv:    cfg.ProxyEnv,
		WorkDir:     a.Dispatcher.Dir(),
		Env: append([]string{
			"YGG_SOCKET_ADDR=" + a.Dispatcher.Addr(),
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"YGG_CLIENT_ID=" + cfg.ClientID,
		}, cfg.WorkerEnv...),
		OnExit:    func(name string, pid int) { a.Router.Registry().RemoveOwner(name) },
		OnRemoved: func(name string) { a.Router.Registry().Release(name) },
		OnState:   cfg.OnWorkerState,
		Log:       log,
	})
	return a, nil
}

// Close lets go of what New opened, for an Agent that will not Run.
func (a *Agent) Close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a.Dispatcher.Serve(ctx) // returns at once, its socket closed
	a.Journal.Close()
}

// Run runs the agent until ctx ends, then stops it in the order that
// loses nothing: deliveries in flight get a grace period while the
// workers still run (messages not yet handed stay in the journal for the
// next start), then the workers stop while the dispatcher still takes
// their answers, the answers still queued are sent (those left stay in
// the journal), a retained offline status is published, and the
// connection is closed. A failing piece stops the rest and its error is
// returned; so is ctx's cause, unless it is context.Canceled.
//
// ready, if not nil, is called once every piece runs.
func (a *Agent) Run(ctx context.Context, ready func()) error {
	defer a.Journal.Close()
	// The transport outlives ctx so that the agent can say goodbye.
	tctx, tcancel := context.WithCancel(context.Background())
	defer tcancel()
	var transport sync.WaitGroup
	transport.Go(func() {
		if err := a.Transport.Run(tctx, a.Router); err != nil {
			a.log.Error("mqtt transport stopped", "error", err)
		}
	})

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fail := func(err error) {
		if err != nil {
			cancel(err)
		}
	}
	sctx, stopServing := context.WithCancel(context.Background())
	wctx, stopWorkers := context.WithCancel(context.Background())
	var serving, supervising, routing sync.WaitGroup
	serving.Go(func() { fail(a.Dispatcher.Serve(sctx)) })
	supervising.Go(func() { fail(a.Supervisor.Run(wctx)) })
	routing.Go(func() { fail(a.Router.Run(ctx)) })
	if ready != nil {
		ready()
	}

	<-ctx.Done()
	if a.cfg.OnStopping != nil {
		a.cfg.OnStopping()
	}
	a.log.Info("stopping")
	routing.Wait() // messages not yet handed stay in the journal
	stopWorkers()
	supervising.Wait()
	stopServing()
	serving.Wait()
	a.Router.Registry().Close()
	dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
	a.Router.Shutdown(dctx)
	a.http.Close(dctx)
	dcancel()
	tcancel()
	transport.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
