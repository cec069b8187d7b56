// Package fleet runs many simulated hosts in one process, so that a cloud
// side (yggsim serve, or a real broker and cloud-connector) can be loaded
// with the connections of a fleet. Each host is the real thing minus its
// worker processes: a yggdrasil.Router with its own MQTT connection
// (package yggdrasil/mqtt: persistent session, retained online status, a
// retained offline will), a journal, and an echo worker that runs in the
// process, registered in the router's worker table through the same
// WorkerConn seam that the gRPC dispatcher uses.
//
// The journals are kept in memory by default (journal.Options.Memory): on
// disk each host would need a descriptor for its segment beside the one of
// its connection, and 10,000 hosts would reach a 20,000-descriptor limit.
// Config.StateDir puts them on disk instead, a directory per host, without
// fsync.
package fleet

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/journal"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// Defaults of Config.
const (
	DefaultClientPrefix = "fleet-"
	DefaultConnectRate  = 500
	DefaultDirective    = "echo"
)

// Config is what a Fleet runs. Zero values mean the defaults.
type Config struct {
	Hosts  int    // how many hosts; required
	Broker string // tcp://host:port; required
	// ClientPrefix begins every client id; the host's number follows,
	// zero-padded to the width of Hosts-1 so that ids sort in order.
	// Default DefaultClientPrefix.
	ClientPrefix string
	TopicPrefix  string // default yggdrasil.DefaultTopicPrefix
	// ConnectRate is how many hosts start connecting per second, a ramp
	// that spares the broker a stampede; negative starts them all at
	// once. Default DefaultConnectRate.
	ConnectRate float64
	// Directives are answered by the in-process echo worker, which sends
	// back each message's content and metadata with response_to set.
	// Default DefaultDirective.
	Directives []string
	// StateDir, when set, keeps each host's journal on disk in
	// StateDir/<client id>, without fsync; "" keeps them in memory.
	StateDir  string
	KeepAlive time.Duration // of each MQTT connection; the transport's default when zero
	Log       *slog.Logger  // nil discards
}

// Stats is what the fleet does now.
type Stats struct {
	Hosts     int   // configured
	Started   int64 // hosts started so far
	Connected int64 // hosts connected to the broker now
	// Online counts the hosts whose latest connection status that the
	// broker acknowledged says online.
	Online int64
}

// Fleet is a set of simulated hosts.
type Fleet struct {
	cfg   Config
	log   *slog.Logger
	hosts []*host

	started, connected, online atomic.Int64
}

// New checks cfg and builds the hosts; Run starts them.
func New(cfg Config) (*Fleet, error) {
	switch {
	case cfg.Hosts < 1:
		return nil, errors.New("fleet: hosts must be at least 1")
	case cfg.Broker == "":
		return nil, errors.New("fleet: no broker")
	}
	if cfg.ClientPrefix == "" {
		cfg.ClientPrefix = DefaultClientPrefix
	}
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = yggdrasil.DefaultTopicPrefix
	}
	if cfg.ConnectRate == 0 {
		cfg.ConnectRate = DefaultConnectRate
	}
	// A ticker needs a positive interval: 2e9 hosts a second would be 0.
	if math.IsNaN(cfg.ConnectRate) || math.IsInf(cfg.ConnectRate, 0) ||
		cfg.ConnectRate > 0 && time.Duration(float64(time.Second)/cfg.ConnectRate) < time.Microsecond {
		return nil, fmt.Errorf("fleet: connect rate %g: want at most %d hosts a second (or negative: all at once)", cfg.ConnectRate, int(time.Second/time.Microsecond))
	}
	if len(cfg.Directives) == 0 {
		cfg.Directives = []string{DefaultDirective}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, log: log.With("component", "fleet")}
	width := len(fmt.Sprint(cfg.Hosts - 1))
	f.hosts = make([]*host, cfg.Hosts)
	for i := range f.hosts {
		f.hosts[i] = &host{fleet: f, id: fmt.Sprintf("%s%0*d", cfg.ClientPrefix, width, i)}
	}
	return f, nil
}

// ClientID returns the client id of host i (0 ≤ i < Hosts).
func (f *Fleet) ClientID(i int) string { return f.hosts[i].id }

// Stats returns what the fleet does now.
func (f *Fleet) Stats() Stats {
	return Stats{Hosts: len(f.hosts), Started: f.started.Load(), Connected: f.connected.Load(), Online: f.online.Load()}
}

// Run starts the hosts at the configured rate and runs them until ctx
// ends, then stops every host as yggd stops (its answers sent, a retained
// offline status published, the connection closed cleanly) and returns
// once all have stopped. It returns an error only when a host could not
// be built, after stopping those started.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // before the wait: on an error, stops the hosts started so far
	var tick <-chan time.Time
	if f.cfg.ConnectRate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / f.cfg.ConnectRate))
		defer t.Stop()
		tick = t.C
	}
	for i, h := range f.hosts {
		if tick != nil && i > 0 {
			select {
			case <-tick:
			case <-ctx.Done():
				return nil
			}
		}
		if err := h.open(); err != nil {
			return fmt.Errorf("fleet: host %s: %w", h.id, err)
		}
		f.started.Add(1)
		wg.Go(func() { h.run(ctx) })
	}
	f.log.Info("every host started", "hosts", len(f.hosts))
	<-ctx.Done()
	return nil
}

// host is one simulated host.
type host struct {
	fleet     *Fleet
	id        string
	journal   *journal.Journal
	transport *mqtt.Transport
	router    *yggdrasil.Router

	mu        sync.Mutex // serialises onState and onStatus
	connected bool       // guarded by mu
	acked     bool       // guarded by mu: the latest acknowledged status says online
	online    bool       // guarded by mu: counted in the fleet's online hosts
}

// open builds the host's pieces.
func (h *host) open() error {
	cfg := h.fleet.cfg
	log := h.fleet.log.With("host", h.id)
	opts := journal.Options{Memory: cfg.StateDir == "", NoSync: true, Log: log}
	j, err := journal.Open(filepath.Join(cfg.StateDir, h.id), opts)
	if err != nil {
		return err
	}
	h.journal = j
	h.transport = mqtt.New(mqtt.Config{
		Brokers:        []string{cfg.Broker},
		ClientID:       h.id,
		TopicPrefix:    cfg.TopicPrefix,
		KeepAlive:      cfg.KeepAlive,
		HandlerWorkers: 1,
		Log:            log,
		OnState:        h.onState,
	})
	facts := yggdrasil.CanonicalFacts{FQDN: h.id + ".fleet.example", MachineID: machineID(h.id),
		IPAddresses: []string{}, MACAddresses: []string{}}
	h.router = yggdrasil.NewRouter(yggdrasil.RouterConfig{
		ClientID:    h.id,
		TopicPrefix: cfg.TopicPrefix,
		Journal:     j,
		Facts:       func() yggdrasil.CanonicalFacts { return facts },
		Log:         log,
	}, &statusTransport{Transport: h.transport, status: h.onStatus,
		topic: yggdrasil.Topic(cfg.TopicPrefix, h.id, yggdrasil.KindControl, yggdrasil.DirOut)})
	for _, d := range cfg.Directives {
		w := &yggdrasil.Worker{Handler: d, Features: map[string]string{"worker": "fleet-echo"}, Conn: echoConn{h.router}}
		if err := h.router.Registry().Add(w); err != nil {
			j.Close()
			return err
		}
	}
	return nil
}

// onState counts the host in the fleet's connected hosts while it is
// connected, and no longer online once it is not.
func (h *host) onState(s mqtt.State) {
	h.mu.Lock()
	defer h.mu.Unlock()
	up := s.Broker != ""
	tally(&h.connected, up, &h.fleet.connected)
	if !up {
		h.acked = false // online again once the next connection's status is acknowledged
	}
	h.count()
}

// onStatus notes the latest acknowledged status. An acknowledgement can
// arrive after the connection that carried it dropped: the host is
// online only while it is connected too.
func (h *host) onStatus(up bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acked = up
	h.count()
}

// count counts the host in the fleet's online hosts while it is connected
// and its latest acknowledged status says online. Called with mu held.
func (h *host) count() {
	tally(&h.online, h.connected && h.acked, &h.fleet.online)
}

// tally sets *b to v and, when that changes it, moves the fleet's count n
// by one the same way.
func tally(b *bool, v bool, n *atomic.Int64) {
	if *b == v {
		return
	}
	*b = v
	if v {
		n.Add(1)
	} else {
		n.Add(-1)
	}
}

// run runs the host until ctx ends, then stops it in yggd's order: the
// router first (deliveries in flight finish), then what it still has to
// send and the offline status, then the connection.
func (h *host) run(ctx context.Context) {
	defer h.journal.Close()
	tctx, tcancel := context.WithCancel(context.Background())
	var transport sync.WaitGroup
	transport.Go(func() {
		if err := h.transport.Run(tctx, h.router); err != nil {
			h.fleet.log.Error("mqtt transport stopped", "host", h.id, "error", err)
		}
	})
	h.router.Run(ctx)
	h.router.Registry().Close()
	dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
	h.router.Shutdown(dctx)
	dcancel()
	tcancel()
	transport.Wait()
	h.onState(mqtt.State{})
	h.onStatus(false)
}

// machineID makes a stable machine id (a UUID's shape) from a client id.
func machineID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}
