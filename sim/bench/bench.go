// Package bench is the load generator behind "yggsim bench": it plays the
// cloud side against one host (a yggd, or anything wire-compatible with it,
// such as the reference ceilings of package ceiling), publishes data
// messages at QoS 1 with a fixed number in flight, matches the answers by
// response_to, and measures throughput, round-trip times, losses,
// duplicates, and the daemon's CPU, memory, threads and log volume from
// /proc. It also pings the host while the load runs, to show that control
// messages are not stuck behind data.
//
// It needs only an MQTT broker that lets its client publish to the host's
// data/in and control/in topics and read its data/out and control/out
// topics (the sim's broker with --open-acl, mosquitto, ...).
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// Config is one benchmark run. Zero values mean the defaults.
type Config struct {
	Broker     string   // tcp://host:port; required
	Host       string   // client id of the host under test; required
	Prefix     string   // topic prefix; default yggdrasil
	Directives []string // round-robin; default ["echo"]
	Window     int      // messages in flight; default 64
	Size       int      // bytes of content (a JSON string, quotes included); default 100
	Count      int      // measured messages; default 20 000
	Warmup     int      // messages sent before measuring; default min(Count, max(500, 4×Window))

	// Stall ends the run when no answer has arrived for this long while
	// messages are in flight; the rest count as lost. Default 10 s.
	Stall time.Duration
	// Ready bounds the wait for the host's online status listing every
	// directive. Default 30 s.
	Ready time.Duration
	// Listed are handlers the online status must list too, beyond
	// Directives, before the load starts: the other handlers of a worker
	// that registers several, whose registration the host logs.
	Listed []string
	// Settle is a pause between that status and the first message: 0.1.5
	// lists its echo worker once it has registered, before the worker
	// listens, and loses a message sent in between. 0: none.
	Settle time.Duration
	// PingEvery sends a ping command this often during the measured
	// phase; default 1 s; negative: never.
	PingEvery time.Duration
	// Verify compares the echoed content with what was sent for one answer
	// in Verify; default 100; negative: never.
	Verify int

	// Pid is the daemon's process id: its CPU time, memory, threads and
	// children (the workers) are read from /proc. 0: not measured.
	Pid int
	// LogFile is the daemon's log: its growth during the measured phase
	// is reported. "": not measured.
	LogFile string
	// Start, when set, starts the daemon once the generator is connected
	// and subscribed, and returns its process id (which replaces Pid):
	// for a host that does not retain its status (0.1.5), whose one
	// status listing every directive must not be missed. Not for
	// Detached runs.
	Start func() (pid int, err error)

	// Detached runs detached round trips instead: see DetachedConfig.
	Detached *DetachedConfig

	// Progress, when set, is called about once a second with the number
	// of answers so far, and once more when every message is answered.
	Progress func(answered, total int)

	// Idle, after the last answer, leaves the daemon alone this long
	// (send no pings: PingEvery < 0) and then takes its figures, which
	// then describe the idle daemon (see IdleStats). 0: none.
	Idle time.Duration
}

// Result is what a run measured. Durations are in nanoseconds in JSON.
type Result struct {
	Host      string   `json:"host"`
	Window    int      `json:"window"`
	Size      int      `json:"size"`
	Count     int      `json:"count"`
	Warmup    int      `json:"warmup"`
	Directive []string `json:"directives"`

	Elapsed    time.Duration `json:"elapsed_ns"`
	MsgsPerSec float64       `json:"msgs_per_sec"`
	P50        time.Duration `json:"p50_ns"`
	P90        time.Duration `json:"p90_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`

	Answered   int  `json:"answered"`   // measured messages answered (once)
	Lost       int  `json:"lost"`       // sent, never answered (warm-up included)
	Duplicated int  `json:"duplicated"` // answers beyond the first for one message
	Nacked     int  `json:"nacked"`     // negative acknowledgements
	Unexpected int  `json:"unexpected"` // answers to messages this run did not send
	BadContent int  `json:"bad_content"`
	Verified   int  `json:"verified"`
	Stalled    bool `json:"stalled"`

	PingsSent     int           `json:"pings_sent"`
	PingsAnswered int           `json:"pings_answered"`
	PingMax       time.Duration `json:"ping_max_ns"`

	Proc *ProcStats `json:"proc,omitempty"`
}

// ProcStats is what /proc says about the daemon over the measured phase.
type ProcStats struct {
	Pid          int           `json:"pid"`
	CPU          time.Duration `json:"cpu_ns"`         // daemon's user+system time
	CPUSys       time.Duration `json:"cpu_sys_ns"`     // of which system time
	CPUPerMsg    time.Duration `json:"cpu_per_msg_ns"` // CPU / answered
	SysPerMsg    time.Duration `json:"sys_per_msg_ns"` // CPUSys / answered
	WorkerCPU    time.Duration `json:"worker_cpu_ns"`  // its children's, separately
	WorkerPerMsg time.Duration `json:"worker_per_msg_ns"`
	Workers      []int         `json:"worker_pids"` // children at the end
	RSSStart     int64         `json:"rss_start"`   // bytes, after warm-up
	RSSTenth     int64         `json:"rss_tenth"`   // bytes, after a tenth of the measured messages
	RSSEnd       int64         `json:"rss_end"`     // bytes, at the end
	PeakRSS      int64         `json:"peak_rss"`    // VmHWM, bytes
	// WorkerPeakRSS is the largest VmHWM among its children (the workers)
	// at the end, bytes.
	WorkerPeakRSS int64   `json:"worker_peak_rss"`
	Threads       int     `json:"threads"`     // at the end
	LogBytes      int64   `json:"log_bytes"`   // growth of LogFile
	LogPerMsg     float64 `json:"log_per_msg"` // LogBytes / answered
	// Idle is what the daemon and its workers used while idle (Config.Idle).
	Idle *IdleStats `json:"idle,omitempty"`
}

// String is the matrix's line for an idle run.
func (s *IdleStats) String() string {
	return fmt.Sprintf("idle %s: rss %.1f MiB (anon %.1f) + workers %.1f MiB = %.1f MiB, threads %d + %d, cpu %s + %s, ctx switches %d + %d",
		s.For, mib(s.RSS), mib(s.RSSAnon), mib(s.WorkerRSS), mib(s.RSS+s.WorkerRSS), s.Threads, s.WorkerThreads,
		s.CPU, s.WorkerCPU, s.CtxSwitches, s.WorkerCtxSwitches)
}

// IdleStats describe a daemon and its workers left idle after a round trip.
type IdleStats struct {
	For               time.Duration `json:"for_ns"`
	RSS               int64         `json:"rss"`                 // daemon's VmRSS at the end, bytes
	RSSAnon           int64         `json:"rss_anon"`            // of which anonymous
	WorkerRSS         int64         `json:"worker_rss"`          // the workers' VmRSS, summed
	Threads           int           `json:"threads"`             // daemon's
	WorkerThreads     int           `json:"worker_threads"`      // summed
	CPU               time.Duration `json:"cpu_ns"`              // daemon's, while idle
	WorkerCPU         time.Duration `json:"worker_cpu_ns"`       // the workers', while idle
	CtxSwitches       int64         `json:"ctx_switches"`        // daemon's, voluntary and not, while idle
	WorkerCtxSwitches int64         `json:"worker_ctx_switches"` // the workers', while idle
}

// OK reports whether the run met the robustness goals: everything
// answered once, nothing refused, no stall, every ping answered.
func (r *Result) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.Nacked == 0 && r.Unexpected == 0 && r.BadContent == 0 &&
		!r.Stalled && r.PingsAnswered == r.PingsSent
}

// Problems lists what OK found wrong, for a report.
func (r *Result) Problems() []string {
	var p []string
	add := func(n int, what string) {
		if n != 0 {
			p = append(p, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Lost, "lost")
	add(r.Duplicated, "duplicated")
	add(r.Nacked, "nacked")
	add(r.Unexpected, "unexpected")
	add(r.BadContent, "with bad content")
	add(r.PingsSent-r.PingsAnswered, "pings unanswered")
	if r.Stalled {
		p = append(p, "stalled")
	}
	return p
}

func (c *Config) defaults() error {
	if c.Broker == "" || c.Host == "" {
		return errors.New("bench: a broker and a host are required")
	}
	if c.Prefix == "" {
		c.Prefix = yggdrasil.DefaultTopicPrefix
	}
	if len(c.Directives) == 0 {
		c.Directives = []string{"echo"}
	}
	if c.Window <= 0 {
		c.Window = 64
	}
	if c.Size <= 0 {
		c.Size = 100
	}
	if c.Size < 2 {
		c.Size = 2
	}
	if c.Count <= 0 {
		c.Count = 20_000
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	} else if c.Warmup == 0 {
		c.Warmup = min(c.Count, max(500, 4*c.Window))
	}
	if c.Stall <= 0 {
		c.Stall = 10 * time.Second
	}
	if c.Ready <= 0 {
		c.Ready = 30 * time.Second
	}
	if c.PingEvery == 0 {
		c.PingEvery = time.Second
	}
	if c.Verify == 0 {
		c.Verify = 100
	}
	return nil
}

// run is the state of one run.
type run struct {
	cfg    Config
	prefix string // of every message id: "xxxxxxxx-xxxx-4xxx-8000-"
	total  int

	dataIn, controlIn, dataOut, controlOut string

	mu       sync.Mutex
	sentAt   []int64 // unix ns by sequence number; 0: not sent
	answered []bool
	lat      []time.Duration // measured messages only
	nAnswer  int             // messages answered (once), warm-up included
	res      Result
	last     time.Time // of the latest answer
	measure  time.Time // first measured send
	done     chan struct{}
	tenth    chan struct{} // closed when a tenth of the measured messages are answered
	pings    map[string]time.Time

	window  chan struct{}
	content []byte // the content of every message
	verifyN atomic.Int64
}

// Run connects to the broker, waits for the host to be online with every
// directive, sends the warm-up and measured messages, and returns what it
// measured. A run that loses messages or stalls still returns its Result,
// with the error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.Detached != nil {
		return runDetached(ctx, cfg)
	}
	r := &run{cfg: cfg, total: cfg.Warmup + cfg.Count, done: make(chan struct{}), tenth: make(chan struct{}),
		pings: map[string]time.Time{}}
	r.prefix = yggdrasil.NewMessageID()[:19] + "8000-"
	r.dataIn = yggdrasil.Topic(cfg.Prefix, cfg.Host, yggdrasil.KindData, yggdrasil.DirIn)
	r.controlIn = yggdrasil.Topic(cfg.Prefix, cfg.Host, yggdrasil.KindControl, yggdrasil.DirIn)
	r.dataOut = yggdrasil.Topic(cfg.Prefix, cfg.Host, yggdrasil.KindData, yggdrasil.DirOut)
	r.controlOut = yggdrasil.Topic(cfg.Prefix, cfg.Host, yggdrasil.KindControl, yggdrasil.DirOut)
	r.sentAt = make([]int64, r.total)
	r.answered = make([]bool, r.total)
	r.lat = make([]time.Duration, 0, cfg.Count)
	r.window = make(chan struct{}, cfg.Window)
	r.content = makeContent(cfg.Size)
	r.res = Result{Host: cfg.Host, Window: cfg.Window, Size: cfg.Size, Count: cfg.Count, Warmup: cfg.Warmup,
		Directive: cfg.Directives}

	online := make(chan struct{})
	var onlineOnce sync.Once
	c, err := connect(ctx, cfg.Broker, func(_ paho.Client, m paho.Message) {
		switch m.Topic() {
		case r.dataOut:
			r.answer(m.Payload())
		case r.controlOut:
			if r.control(m.Payload()) {
				onlineOnce.Do(func() { close(online) })
			}
		}
	}, r.dataOut, r.controlOut)
	if err != nil {
		return nil, err
	}
	defer c.Disconnect(100)
	if cfg.Start != nil {
		pid, err := cfg.Start()
		if err != nil {
			return nil, fmt.Errorf("bench: start %s: %w", cfg.Host, err)
		}
		cfg.Pid, r.cfg.Pid = pid, pid
	}

	rctx, cancel := context.WithTimeout(ctx, cfg.Ready)
	select {
	case <-online:
	case <-rctx.Done():
		cancel()
		return nil, fmt.Errorf("bench: wait for %s to be online with %v: %w", cfg.Host, cfg.Directives, rctx.Err())
	}
	cancel()
	if cfg.Settle > 0 {
		select {
		case <-time.After(cfg.Settle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	var proc *procWatch
	if cfg.Pid > 0 {
		proc = &procWatch{pid: cfg.Pid, logFile: cfg.LogFile}
	}
	errs := make(chan error, 1)
	wg.Go(func() {
		if err := r.send(ctx, c, proc); err != nil {
			select {
			case errs <- err:
			default:
			}
			stop()
		}
	})
	if cfg.PingEvery > 0 {
		wg.Go(func() { r.pingLoop(ctx, c) })
	}
	if proc != nil {
		wg.Go(func() {
			select {
			case <-r.tenth:
				proc.sampleTenth()
			case <-ctx.Done():
			}
		})
	}
	if cfg.Progress != nil {
		wg.Go(func() { r.progress(ctx) })
	}

	// Wait for the end, or a stall.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var runErr error
wait:
	for {
		select {
		case <-r.done:
			break wait
		case err := <-errs:
			runErr = err
			break wait
		case <-ctx.Done():
			runErr = ctx.Err()
			break wait
		case <-tick.C:
			r.mu.Lock()
			last := r.last
			if last.IsZero() {
				last = r.measureOrNow()
			}
			r.mu.Unlock()
			if time.Since(last) > cfg.Stall {
				r.mu.Lock()
				r.res.Stalled = true
				r.mu.Unlock()
				runErr = fmt.Errorf("bench: stalled: no answer for %s", cfg.Stall)
				break wait
			}
		}
	}
	end := time.Now()
	var ps *ProcStats
	if proc != nil {
		ps = proc.finish()
		if cfg.Idle > 0 && runErr == nil {
			ps.Idle, runErr = proc.idle(ctx, cfg.Idle)
		}
	}
	// Give the last pings a moment.
	r.awaitPings(ctx, 5*time.Second)
	stop()
	wg.Wait()

	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.res
	res.Answered = len(r.lat)
	for i := range r.total {
		if !r.answered[i] {
			res.Lost++
		}
	}
	if !r.last.IsZero() && !r.measure.IsZero() {
		end = r.last
	}
	if !r.measure.IsZero() {
		res.Elapsed = end.Sub(r.measure)
	}
	if res.Elapsed > 0 {
		res.MsgsPerSec = float64(res.Answered) / res.Elapsed.Seconds()
	}
	lat := slices.Clone(r.lat)
	slices.Sort(lat)
	res.P50, res.P90, res.P99 = percentile(lat, 0.50), percentile(lat, 0.90), percentile(lat, 0.99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	res.Verified = int(r.verifyN.Load())
	if ps != nil {
		if res.Answered > 0 {
			ps.CPUPerMsg = ps.CPU / time.Duration(res.Answered)
			ps.SysPerMsg = ps.CPUSys / time.Duration(res.Answered)
			ps.WorkerPerMsg = ps.WorkerCPU / time.Duration(res.Answered)
			ps.LogPerMsg = float64(ps.LogBytes) / float64(res.Answered)
		}
		res.Proc = ps
	}
	if runErr == nil && !res.OK() {
		runErr = fmt.Errorf("bench: %s", strings.Join(res.Problems(), ", "))
	}
	return &res, runErr
}

// measureOrNow is when the stall clock starts while nothing is answered:
// the first measured send, or the first send (a host that answers
// nothing from the start stalls too), or now.
func (r *run) measureOrNow() time.Time {
	switch {
	case !r.measure.IsZero():
		return r.measure
	case r.sentAt[0] != 0:
		return time.Unix(0, r.sentAt[0])
	}
	return time.Now()
}

// send publishes every message, keeping Window in flight.
func (r *run) send(ctx context.Context, c paho.Client, proc *procWatch) error {
	// Publish tokens are checked in order by one goroutine, so that a
	// refused publish is not silent.
	toks := make(chan paho.Token, 1024)
	var failed atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		for t := range toks {
			t.Wait()
			if err := t.Error(); err != nil {
				failed.CompareAndSwap(nil, err)
			}
		}
	})
	defer func() { close(toks); wg.Wait() }()
	ndir := len(r.cfg.Directives)
	for i := range r.total {
		select {
		case r.window <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		if err, _ := failed.Load().(error); err != nil {
			return fmt.Errorf("bench: publish: %w", err)
		}
		if i == r.cfg.Warmup {
			if proc != nil {
				proc.start()
			}
			r.mu.Lock()
			r.measure = time.Now()
			r.mu.Unlock()
		}
		payload := r.payload(i, r.cfg.Directives[i%ndir])
		r.mu.Lock()
		r.sentAt[i] = time.Now().UnixNano()
		r.mu.Unlock()
		toks <- c.Publish(r.dataIn, 1, false, payload)
	}
	return nil
}

// payload builds message i.
func (r *run) payload(i int, directive string) []byte {
	b := make([]byte, 0, len(r.content)+200)
	b = append(b, `{"type":"data","message_id":"`...)
	b = r.appendID(b, i)
	b = append(b, `","response_to":"","version":1,"sent":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","directive":`...)
	b = strconv.AppendQuote(b, directive)
	b = append(b, `,"metadata":{},"content":`...)
	b = append(b, r.content...)
	return append(b, '}')
}

func (r *run) appendID(b []byte, i int) []byte {
	b = append(b, r.prefix...)
	const hex = "0123456789abcdef"
	for shift := 44; shift >= 0; shift -= 4 {
		b = append(b, hex[(i>>shift)&0xf])
	}
	return b
}

// seq returns the sequence number of one of this run's message ids.
func (r *run) seq(id []byte) (int, bool) {
	if len(id) != len(r.prefix)+12 || string(id[:len(r.prefix)]) != r.prefix {
		return 0, false
	}
	n, err := strconv.ParseUint(string(id[len(r.prefix):]), 16, 64)
	if err != nil || n >= uint64(r.total) {
		return 0, false
	}
	return int(n), true
}

// answer takes a payload from data/out.
func (r *run) answer(p []byte) {
	if len(p) == 0 {
		return // 0.1.x publishes an empty message on connect
	}
	now := time.Now()
	id := field(p, "response_to")
	if len(id) == 0 {
		id = field(p, "message_id") // a relay echoes the message itself
	}
	nack := bytes.Contains(p, []byte(`"`+yggdrasil.MetadataError+`"`))
	i, ok := r.seq(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !ok:
		r.res.Unexpected++
		return
	case nack:
		r.res.Nacked++
	case r.answered[i]:
		r.res.Duplicated++
		return
	}
	r.answered[i] = true
	r.nAnswer++
	r.last = now
	if i >= r.cfg.Warmup && !nack {
		r.lat = append(r.lat, now.Sub(time.Unix(0, r.sentAt[i])))
		if len(r.lat) == max(1, r.cfg.Count/10) {
			close(r.tenth)
		}
	}
	if r.cfg.Verify > 0 && i%r.cfg.Verify == 0 && !nack {
		if r.verify(p) {
			r.verifyN.Add(1)
		} else {
			r.res.BadContent++
		}
	}
	<-r.window
	if r.nAnswer == r.total {
		close(r.done)
	}
}

// verify checks that an answer carries the content that was sent.
func (r *run) verify(p []byte) bool {
	var d struct {
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(p, &d) != nil {
		return false
	}
	return bytes.Equal(d.Content, r.content)
}

// control takes a payload from control/out: a pong, or a connection
// status. It reports whether the host is online with every directive.
func (r *run) control(p []byte) bool {
	var m struct {
		Type       string `json:"type"`
		ResponseTo string `json:"response_to"`
		Content    json.RawMessage
	}
	if json.Unmarshal(p, &m) != nil {
		return false
	}
	switch m.Type {
	case yggdrasil.TypeEvent:
		r.mu.Lock()
		if at, ok := r.pings[m.ResponseTo]; ok {
			delete(r.pings, m.ResponseTo)
			r.res.PingsAnswered++
			r.res.PingMax = max(r.res.PingMax, time.Since(at))
		}
		r.mu.Unlock()
	case yggdrasil.TypeConnectionStatus:
		var s yggdrasil.StatusContent
		if json.Unmarshal(m.Content, &s) != nil || s.State != yggdrasil.StateOnline {
			return false
		}
		for _, d := range slices.Concat(r.cfg.Directives, r.cfg.Listed) {
			if _, ok := s.Dispatchers[d]; !ok {
				return false
			}
		}
		return true
	}
	return false
}

func (r *run) pingLoop(ctx context.Context, c paho.Client) {
	t := time.NewTicker(r.cfg.PingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			return
		case <-t.C:
		}
		cmd := yggdrasil.NewCommand(yggdrasil.CommandPing, nil)
		b, _ := json.Marshal(cmd)
		r.mu.Lock()
		r.pings[cmd.MessageID] = time.Now()
		r.res.PingsSent++
		r.mu.Unlock()
		c.Publish(r.controlIn, 1, false, b)
	}
}

func (r *run) awaitPings(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r.mu.Lock()
		n := len(r.pings)
		r.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *run) progress(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			r.cfg.Progress(r.total, r.total)
			return
		case <-t.C:
			r.mu.Lock()
			n := r.nAnswer
			r.mu.Unlock()
			r.cfg.Progress(n, r.total)
		}
	}
}

// connect connects a cloud-side client and subscribes to topics at QoS 1.
func connect(ctx context.Context, broker string, h paho.MessageHandler, topics ...string) (paho.Client, error) {
	opts := paho.NewClientOptions().
		AddBroker(broker).
		SetClientID("yggsim-bench-" + yggdrasil.NewMessageID()[:8]).
		SetCleanSession(true).
		SetOrderMatters(true). // answers are handled in arrival order on one goroutine
		SetAutoReconnect(false).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(30 * time.Second).
		SetDefaultPublishHandler(h)
	c := paho.NewClient(opts)
	if err := waitToken(ctx, c.Connect()); err != nil {
		return nil, fmt.Errorf("bench: connect %s: %w", broker, err)
	}
	subs := map[string]byte{}
	for _, t := range topics {
		subs[t] = 1
	}
	if err := waitToken(ctx, c.SubscribeMultiple(subs, h)); err != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("bench: subscribe: %w", err)
	}
	return c, nil
}

func waitToken(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return errors.New("no answer from the broker within 15s")
	}
}

// field returns the value of the first "name":"value" string field in a
// JSON object, unescaped only as far as ids need (no escapes). It is what
// lets the generator keep up with 64 KiB answers: the content is never
// decoded. The generator's own content (letters) cannot contain a match.
func field(p []byte, name string) []byte {
	key := `"` + name + `"`
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return nil
	}
	rest := bytes.TrimLeft(p[i+len(key):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return nil
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return nil
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 {
		return nil
	}
	return rest[1 : 1+end]
}

// makeContent returns a JSON string of size bytes, quotes included.
func makeContent(size int) []byte {
	b := make([]byte, size)
	b[0], b[size-1] = '"', '"'
	const letters = "abcdefghijklmnopqrstuvwxyz"
	for i := 1; i < size-1; i++ {
		b[i] = letters[i%len(letters)]
	}
	return b
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
