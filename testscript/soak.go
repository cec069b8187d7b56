package testscript

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// soakCommands returns the long-running load command of the soak test.
func soakCommands() map[string]command {
	return map[string]command{
		"soak": {
			usage: "soak [-duration d] [-rate n] [-restart-every d] [-outage d] [-drain d] host program",
			run:   cmdSoak,
		},
	}
}

// soakConfig is what cmdSoak runs.
type soakConfig struct {
	host         string
	duration     time.Duration // how long to publish
	rate         int           // data messages a second
	restartEvery time.Duration // stop and start the broker (sessions kept) this often; 0: never
	outage       time.Duration // how long the broker stays down at each restart
	drain        time.Duration // how long to wait for the last answers
}

// cmdSoak publishes echo data messages to host at a steady rate for a
// duration, restarting the broker (sessions kept) at intervals, then waits
// for the last answers. It prints how many messages were sent, answered,
// lost and duplicated, the answer latencies, and the resident memory,
// threads and open files of the background program (yggd) at start and
// end. It fails when a message was lost or answered twice.
func cmdSoak(ts *goscript.TestScript, args []string) error {
	cfg := soakConfig{}
	args, err := flags("soak", args, func(fs *flag.FlagSet) {
		fs.DurationVar(&cfg.duration, "duration", time.Minute, "")
		fs.IntVar(&cfg.rate, "rate", 20, "")
		fs.DurationVar(&cfg.restartEvery, "restart-every", 2*time.Minute, "")
		fs.DurationVar(&cfg.outage, "outage", 2*time.Second, "")
		fs.DurationVar(&cfg.drain, "drain", time.Minute, "")
	})
	if err != nil {
		return err
	}
	if len(args) != 2 || cfg.duration <= 0 || cfg.rate <= 0 || cfg.restartEvery < 0 || cfg.outage < 0 || cfg.drain <= 0 {
		return ErrUsage
	}
	cfg.host = args[0]
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	pid, err := backgroundPid(ts, args[1])
	if err != nil {
		return err
	}
	before, err := readStatus(pid)
	if err != nil {
		return err
	}
	cpuBefore, err := readCPU(pid)
	if err != nil {
		return err
	}

	run := newSoakRun(s)
	ctx, cancel := context.WithCancel(scriptContext(ts))
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { run.watch(ctx) })
	start := time.Now()
	restarts, rerr := run.load(ctx, cfg, ts.Logf)
	loadTime := time.Since(start)

	// Drain: wait for every sent message to be answered, or the drain
	// time to pass.
	dctx, dcancel := context.WithTimeout(ctx, cfg.drain)
	run.awaitAll(dctx)
	dcancel()
	cancel()
	wg.Wait()

	after, err := readStatus(pid)
	if err != nil {
		return err
	}
	cpuAfter, err := readCPU(pid)
	if err != nil {
		return err
	}
	st := run.stats()
	cpu := cpuAfter.cpu - cpuBefore.cpu
	w := ts.Stdout()
	fmt.Fprintf(w, "duration=%v rate=%d/s broker_restarts=%d\n", loadTime.Round(time.Second), cfg.rate, restarts)
	fmt.Fprintf(w, "sent=%d answered=%d lost=%d duplicated=%d\n", st.sent, st.answered, st.lost, st.duplicated)
	fmt.Fprintf(w, "nacked=%d redelivered=%d unsent=%d\n", st.nacked, st.redelivered, st.unsent)
	fmt.Fprintf(w, "latency p50=%v p99=%v max=%v\n", st.p50, st.p99, st.max)
	fmt.Fprintf(w, "%s start: %s\n", args[1], before)
	fmt.Fprintf(w, "%s end:   %s\n", args[1], after)
	fmt.Fprintf(w, "%s cpu=%v (%.1f%% of a core)\n", args[1], cpu.Round(time.Millisecond), 100*cpu.Seconds()/loadTime.Seconds())
	var problems []error
	if rerr != nil {
		problems = append(problems, rerr)
	}
	if st.lost > 0 {
		problems = append(problems, fmt.Errorf("%d of %d messages never answered", st.lost, st.sent))
	}
	if st.duplicated > 0 {
		problems = append(problems, fmt.Errorf("%d messages answered twice", st.duplicated))
	}
	return errors.Join(problems...)
}

// soakRun is the bookkeeping of one soak: what was sent when, and the
// answers seen.
type soakRun struct {
	s     *sim.Server
	since int64 // journal position at the start

	mu      sync.Mutex
	changed chan struct{}              // closed and replaced when an answer arrives
	sentAt  map[string]time.Time       // request id → when it was published
	answers map[string]map[string]bool // request id → answer ids
	latency []time.Duration            // of first answers
	nacked  int
	redeliv int
	dup     int
	dupIDs  []string // requests answered twice, for a report
	unsent  int
}

func newSoakRun(s *sim.Server) *soakRun {
	return &soakRun{s: s, since: s.LastSeq(), changed: make(chan struct{}),
		sentAt: map[string]time.Time{}, answers: map[string]map[string]bool{}}
}

// load publishes for cfg.duration and restarts the broker on schedule; it
// returns the number of restarts. The broker is running when it returns.
func (r *soakRun) load(ctx context.Context, cfg soakConfig, logf func(string, ...any)) (int, error) {
	tick := time.NewTicker(time.Second / time.Duration(cfg.rate))
	defer tick.Stop()
	end := time.NewTimer(cfg.duration)
	defer end.Stop()
	var restart <-chan time.Time
	if cfg.restartEvery > 0 {
		t := time.NewTicker(cfg.restartEvery)
		defer t.Stop()
		restart = t.C
	}
	var back <-chan time.Time // the outage ends
	restarts, n := 0, 0
	topic := yggdrasil.Topic(r.s.TopicPrefix(), cfg.host, yggdrasil.KindData, yggdrasil.DirIn)
	for {
		select {
		case <-ctx.Done():
			if back != nil {
				r.s.StartBroker()
			}
			return restarts, ctx.Err()
		case <-end.C:
			if back != nil {
				if err := r.s.StartBroker(); err != nil {
					return restarts, fmt.Errorf("start broker: %w", err)
				}
			}
			return restarts, nil
		case <-restart:
			if back != nil {
				continue
			}
			if err := r.s.StopBroker(false); err != nil {
				return restarts, fmt.Errorf("stop broker: %w", err)
			}
			restarts++
			logf("soak: broker stopped (restart %d), %d sent so far", restarts, n)
			back = time.After(cfg.outage)
		case <-back:
			back = nil
			if err := r.s.StartBroker(); err != nil {
				return restarts, fmt.Errorf("start broker: %w", err)
			}
		case <-tick.C:
			n++
			d := yggdrasil.Data{Type: yggdrasil.TypeData, MessageID: yggdrasil.NewMessageID(), Version: yggdrasil.Version,
				Sent: time.Now(), Directive: "echo", Content: json.RawMessage(strconv.Quote(fmt.Sprint("soak ", n)))}
			payload, err := json.Marshal(d)
			if err != nil {
				return restarts, err
			}
			// Noted before publishing: the answer may be recorded before
			// Publish returns.
			r.mu.Lock()
			r.sentAt[d.MessageID] = d.Sent
			r.mu.Unlock()
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			err = r.s.Publish(pctx, topic, payload, 1, false)
			pcancel()
			if err != nil {
				r.mu.Lock()
				delete(r.sentAt, d.MessageID)
				r.unsent++ // the broker is down: the cloud could not send it
				r.mu.Unlock()
			}
		}
	}
}

// watch counts the answers recorded by the sim until ctx ends.
func (r *soakRun) watch(ctx context.Context) {
	r.s.Watch(ctx, r.since, func(m sim.Message) bool {
		if m.Kind != yggdrasil.KindData || m.Dir != yggdrasil.DirOut || m.ResponseTo == "" {
			return true
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		sent, ok := r.sentAt[m.ResponseTo]
		if !ok {
			return true
		}
		seen := r.answers[m.ResponseTo]
		switch {
		case seen[m.MessageID]:
			r.redeliv++ // the same answer again (a QoS 1 redelivery)
			return true
		case seen == nil:
			seen = map[string]bool{}
			r.answers[m.ResponseTo] = seen
			r.latency = append(r.latency, m.Time.Sub(sent))
			var d yggdrasil.Data
			if json.Unmarshal(m.Payload, &d) == nil {
				if _, nack := d.Metadata[yggdrasil.MetadataError]; nack {
					r.nacked++
				}
			}
		default:
			r.dup++ // a second, different answer
			r.dupIDs = append(r.dupIDs, m.ResponseTo)
		}
		seen[m.MessageID] = true
		close(r.changed)
		r.changed = make(chan struct{})
		return true
	})
}

// awaitAll waits until every sent message has an answer, or ctx ends.
func (r *soakRun) awaitAll(ctx context.Context) {
	for {
		r.mu.Lock()
		done := len(r.answers) == len(r.sentAt)
		changed := r.changed
		r.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// unanswered returns up to n of the messages sent and not answered, the
// earliest first, each as its id and when it was sent after the first.
func (r *soakRun) unanswered(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var first time.Time
	type sent struct {
		id string
		at time.Time
	}
	var lost []sent
	for id, at := range r.sentAt {
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if _, ok := r.answers[id]; !ok {
			lost = append(lost, sent{id, at})
		}
	}
	slices.SortFunc(lost, func(a, b sent) int { return a.at.Compare(b.at) })
	var out []string
	for _, l := range lost[:min(n, len(lost))] {
		out = append(out, fmt.Sprintf("%s(+%v)", l.id, l.at.Sub(first).Round(time.Millisecond)))
	}
	return out
}

type soakStats struct {
	sent, answered, lost, duplicated, nacked, redelivered, unsent int
	p50, p99, max                                                 time.Duration
}

func (r *soakRun) stats() soakStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := soakStats{sent: len(r.sentAt), answered: len(r.answers), duplicated: r.dup,
		nacked: r.nacked, redelivered: r.redeliv, unsent: r.unsent}
	st.lost = st.sent - st.answered
	if n := len(r.latency); n > 0 {
		l := slices.Clone(r.latency)
		slices.Sort(l)
		round := func(d time.Duration) time.Duration { return d.Round(time.Millisecond / 10) }
		st.p50, st.p99, st.max = round(l[n/2]), round(l[n*99/100]), round(l[n-1])
	}
	return st
}
