package yggdcmd

// What yggd tells systemd through sd_notify (the unit is Type=notify):
// READY=1 once it serves, STOPPING=1 when it stops, STATUS= lines saying
// what the connection does, and, when the unit sets WatchdogSec=, the
// WATCHDOG=1 pings, sent only while the main loops answer their probes.

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// WedgeRouter is a test hook, nil in production: the e2e suite's
// yggd-wedge program sets it before calling Main, and closes it to wedge
// the router (yggdrasil.RouterConfig.Wedge), which must stop the watchdog
// pings.
var WedgeRouter <-chan struct{}

// loopProbe is a main loop the watchdog checks before each ping.
type loopProbe struct {
	name  string                      // for the log: "router", "mqtt transport"
	alive func(context.Context) error // answered by the loop itself
}

// service tells systemd what yggd does. Without NOTIFY_SOCKET (not run by
// systemd) it sends nothing.
type service struct {
	log     *slog.Logger
	brokers []string
	// notify sends one datagram of sd_notify assignments; a test replaces
	// it.
	notify func(state string) error
	// interval is the unit's WatchdogSec (WATCHDOG_USEC, for this process
	// when WATCHDOG_PID is set); 0 when systemd wants no pings.
	interval time.Duration

	stopped  atomic.Bool // STOPPING=1 was sent: the STATUS stays "stopping"
	warnOnce sync.Once
}

// newService reads what systemd asks of yggd from the environment.
func newService(log *slog.Logger, brokers []string) *service {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("watchdog off: WATCHDOG_USEC or WATCHDOG_PID is not a number", "error", err)
	}
	return &service{log: log, brokers: brokers, interval: interval,
		notify: func(state string) error {
			_, err := daemon.SdNotify(false, state)
			return err
		}}
}

// notify sends state to systemd between two runs of the core (a reload),
// when no service value lives; sd_notify errors are the next core's to
// report.
func notify(state string) { daemon.SdNotify(false, state) }

func (s *service) send(state string) {
	if err := s.notify(state); err != nil {
		s.warnOnce.Do(func() { s.log.Warn("cannot tell systemd the service state (sd_notify)", "error", err) })
	}
}

// transportState is the transport's Config.OnState: it tells systemd
// what the connection does, until yggd stops.
func (s *service) transportState(st mqtt.State) {
	if s.stopped.Load() {
		return
	}
	s.send("STATUS=" + statusText(st, s.brokers))
}

// statusText says in words what the transport does, on one line.
func statusText(st mqtt.State, brokers []string) string {
	var text string
	switch {
	case st.Broker != "":
		text = "connected to " + st.Broker
	case st.Offline:
		text = "staying offline after a disconnect command"
	case st.Retry > 0 && st.Err != nil:
		text = fmt.Sprintf("reconnecting in %s: %v", roundDelay(st.Retry), st.Err)
	case st.Retry > 0:
		text = fmt.Sprintf("reconnecting in %s, as a reconnect command asked", roundDelay(st.Retry))
	default:
		text = "connecting to " + strings.Join(brokers, ", ")
	}
	// A newline would start another assignment.
	return strings.ReplaceAll(text, "\n", " ")
}

// roundDelay rounds a backoff delay (which has jitter) for reading.
func roundDelay(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// ready tells systemd that yggd is ready and, when the unit asks for
// watchdog pings, sends them every interval/2, each after every probe has
// answered within interval/4. Once a probe fails, it logs which loop at
// error and never pings again, so that systemd restarts yggd when the
// interval has passed. After running ends (yggd stops, and its loops wind
// down on purpose) it pings without probing: TimeoutStopSec bounds the
// stop. The returned function ends the pings; call it before Run returns.
func (s *service) ready(running context.Context, probes ...loopProbe) (stop func()) {
	s.send(daemon.SdNotifyReady)
	if s.interval <= 0 {
		return func() {}
	}
	life, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.watchdog(life, running, probes) })
	return func() {
		cancel()
		wg.Wait()
	}
}

func (s *service) watchdog(life, running context.Context, probes []loopProbe) {
	tick := time.NewTicker(s.interval / 2)
	defer tick.Stop()
	for {
		select {
		case <-life.Done():
			return
		case <-tick.C:
		}
		if name, err := s.probe(running, probes); err != nil && running.Err() == nil {
			s.log.Error("watchdog: a main loop did not answer its probe; pings to systemd stopped, so that it restarts yggd",
				"loop", name, "error", err, "watchdog_interval", s.interval)
			s.send("STATUS=watchdog pings stopped: the " + name + " loop did not answer its probe")
			return
		}
		s.send(daemon.SdNotifyWatchdog)
	}
}

// probe asks each loop, within interval/4 for them all, while running
// lasts; it returns the name of the first loop that did not answer.
func (s *service) probe(running context.Context, probes []loopProbe) (string, error) {
	if running.Err() != nil {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(running, s.interval/4)
	defer cancel()
	for _, p := range probes {
		if err := p.alive(ctx); err != nil {
			return p.name, err
		}
	}
	return "", nil
}

// stopping tells systemd that yggd stops; later transport states are not
// reported.
func (s *service) stopping() {
	s.stopped.Store(true)
	s.send(daemon.SdNotifyStopping)
	s.send("STATUS=stopping")
}
