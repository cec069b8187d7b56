package yggdrasil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/internal/gopool"
	"github.com/ygglab/yggdrasil/yggdrasil/journal"
)

// Transport is the connection to the broker, as the router uses it.
type Transport interface {
	Publisher
	// Disconnect publishes the retained offline status (Will) and waits for
	// the broker's acknowledgement, closes the connection cleanly and stays
	// disconnected until the process restarts.
	Disconnect()
	// Reconnect publishes the offline status as Disconnect does, closes the
	// connection cleanly, waits delay, and connects again.
	Reconnect(delay time.Duration)
}

// Limits on what the router accepts.
const (
	DefaultMaxMessageSize  = 32 << 20
	DefaultDispatchTimeout = 60 * time.Second
	DefaultLateWorkerWait  = 30 * time.Second
	DefaultStopGrace       = 5 * time.Second
	// MaxMetadataKeys bounds the metadata of a data message: each key
	// becomes a gRPC map entry and, for detached workers, an HTTP header.
	MaxMetadataKeys = 1000
)

// RouterConfig configures a Router. Zero values mean the defaults.
type RouterConfig struct {
	ClientID        string
	TopicPrefix     string        // default DefaultTopicPrefix
	DispatchTimeout time.Duration // Worker.Send deadline; default 60 s
	LateWorkerWait  time.Duration // how long a message waits for a starting worker; default 30 s
	MaxMessageSize  int           // bytes of a data payload; default 32 MiB
	StopGrace       time.Duration // how long deliveries in flight may finish on stop; default 5 s

	// Journal keeps the messages, the dedupe window and the answers across
	// restarts; required.
	Journal *journal.Journal

	// Facts returns the canonical facts for each connection status; nil
	// publishes empty facts.
	Facts func() CanonicalFacts
	// Starting reports whether some worker is expected to register soon
	// (the supervisor knows); nil means never.
	Starting func() bool
	// Fetch replaces the content of a message for a detached worker by the
	// body found at the URL it holds; nil refuses detached messages.
	Fetch func(ctx context.Context, d *Data) ([]byte, error)
	// Post sends a worker's answer whose directive is a URL by HTTP; nil
	// publishes it on data/out like any other answer.
	Post func(ctx context.Context, d *Data) error
	// Release, if set, takes back a body Fetch returned once the worker
	// has it (its Send returned without error), so that its memory serves
	// again.
	Release func(body []byte)

	Log *slog.Logger
	// OnEvent, if set, is told what happens to each data message and
	// answer, for the control socket's event stream. It must not block.
	OnEvent func(control.Event)

	// Wedge is a test hook, nil in production: once it is closed, the
	// router holds its lock until Run's context ends, as a deadlock
	// would, so that Alive fails. yggd's e2e scenario of the watchdog
	// uses it.
	Wedge <-chan struct{}
}

// Stats counts what the router did since it started.
type Stats struct {
	Received   uint64 // data messages received
	Delivered  uint64 // handed to a worker
	Duplicates uint64 // dropped as redelivered
	Rejected   uint64 // answered with a negative acknowledgement
	// RejectedByCode splits Rejected by the negative acknowledgement's
	// code; codes never used are absent.
	RejectedByCode map[ErrorCode]uint64
	Answers        uint64 // worker answers queued for the cloud
	Dropped        uint64 // answers dropped past the outbox limits
}

// Router is the core of yggd: it answers control commands, routes data
// messages to workers, and queues their answers for the cloud. It
// implements the handler side of the MQTT transport and the reply side of
// the worker dispatcher.
type Router struct {
	cfg RouterConfig
	log *slog.Logger
	tr  Transport
	reg *Registry
	out *Outbox
	j   *journal.Journal

	ctx        context.Context // ends when Run's context ends: no new delivery starts
	cancel     context.CancelFunc
	sendCtx    context.Context // ends StopGrace later: cuts the deliveries in flight
	cancelSend context.CancelFunc

	local localCalls // local dispatches waiting for answers

	lanesMu    sync.Mutex
	lanes      map[string]*lane // by directive
	delivering sync.WaitGroup   // the lanes' deliveries
	lanePool   *gopool.Pool     // their goroutines, kept for the next delivery

	statusKick chan struct{}      // capacity 1: publish the status again
	probes     chan chan struct{} // Alive's probes, answered by the status loop

	received, delivered, duplicates, rejected, answers atomic.Uint64
	rejectedMu                                         sync.Mutex
	rejectedBy                                         map[ErrorCode]uint64
}

// NewRouter returns a router that publishes through tr.
func NewRouter(cfg RouterConfig, tr Transport) *Router {
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = DefaultTopicPrefix
	}
	if cfg.DispatchTimeout <= 0 {
		cfg.DispatchTimeout = DefaultDispatchTimeout
	}
	if cfg.LateWorkerWait <= 0 {
		cfg.LateWorkerWait = DefaultLateWorkerWait
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	r := &Router{
		cfg:        cfg,
		log:        orDiscard(cfg.Log),
		tr:         tr,
		j:          cfg.Journal,
		lanes:      map[string]*lane{},
		lanePool:   gopool.New(lanePoolSize, lanePoolIdle),
		statusKick: make(chan struct{}, 1),
		probes:     make(chan chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.sendCtx, r.cancelSend = context.WithCancel(context.Background())
	r.reg = NewRegistry(r.KickStatus)
	r.out = NewOutbox(cfg.Journal, r.log)
	return r
}

// Registry returns the worker table.
func (r *Router) Registry() *Registry { return r.reg }

// Outbox returns the queue of messages for data/out.
func (r *Router) Outbox() *Outbox { return r.out }

// Stats returns the counters.
func (r *Router) Stats() Stats {
	return Stats{
		Received:       r.received.Load(),
		Delivered:      r.delivered.Load(),
		Duplicates:     r.duplicates.Load(),
		Rejected:       r.rejected.Load(),
		RejectedByCode: r.rejectedByCode(),
		Answers:        r.answers.Load(),
		Dropped:        r.out.Dropped(),
	}
}

// Run first takes up what the journal held at start (answers the messages
// that were being handed as interrupted, delivers those that were
// waiting), then publishes answers and status updates until ctx ends. It
// then starts no new delivery, gives those in flight StopGrace to finish,
// cuts the rest short (they are answered as interrupted at the next
// start), and returns once every delivery goroutine has ended.
func (r *Router) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { r.out.Run(ctx, r.tr) })
	wg.Go(func() { r.publishStatuses(ctx) })
	if r.cfg.Wedge != nil {
		wg.Go(func() { r.wedge(ctx) })
	}
	r.recover()
	<-ctx.Done()
	// Under lanesMu: an enqueue either saw the cancellation or has added
	// its goroutine to delivering before Wait starts.
	r.lanesMu.Lock()
	r.cancel()
	r.lanesMu.Unlock()
	done := make(chan struct{})
	go func() { r.delivering.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.cfg.StopGrace):
		r.cancelSend()
		<-done
	}
	r.cancelSend()
	r.lanePool.Stop()
	wg.Wait()
	return nil
}

// recover takes up what the journal held when yggd started.
func (r *Router) recover() {
	rec := r.j.Recovered()
	for _, id := range rec.Handing {
		d := r.load(id)
		if d == nil {
			continue
		}
		r.refuse(&DeliveryError{Code: CodeInterrupted, MessageID: d.MessageID, Directive: d.Directive,
			Err: errors.New("yggd stopped while handing the message to its worker: it may or may not have run, and is not run again")},
			journal.Finish)
	}
	for _, id := range rec.Pending {
		if d := r.load(id); d != nil {
			r.enqueue(d, false)
		}
	}
	if n := len(rec.Handing) + len(rec.Pending) + rec.Outbound; n > 0 {
		r.log.Info("journal taken up", "interrupted", len(rec.Handing), "to_deliver", len(rec.Pending), "answers_to_send", rec.Outbound)
	}
}

// Shutdown sends what the outbox still holds, then publishes the retained
// offline status, within ctx. Call it after Run has returned and before
// closing the transport.
func (r *Router) Shutdown(ctx context.Context) {
	r.out.Flush(ctx, r.tr)
	if err := r.tr.Publish(ctx, r.topic(KindControl), r.Will(), true); err != nil {
		r.log.Warn("shutdown: publish offline status", "error", err)
	}
}

func (r *Router) topic(kind string) string {
	return Topic(r.cfg.TopicPrefix, r.cfg.ClientID, kind, DirOut)
}

// KickStatus asks for the connection status to be published again (after a
// worker came or went). Calls coalesce.
func (r *Router) KickStatus() {
	select {
	case r.statusKick <- struct{}{}:
	default:
	}
}

// Connected is called by the transport after each (re)connection, once
// subscribed: it publishes the online status.
func (r *Router) Connected() { r.KickStatus() }

// publishStatuses publishes the online status at each kick, one publish
// at a time, and answers Alive's probes meanwhile: the publish, which
// waits for a connection, runs on a goroutine of the loop's own.
func (r *Router) publishStatuses(ctx context.Context) {
	kick := r.statusKick // nil while a publish runs: kicks wait for it
	var done chan struct{}
	for {
		select {
		case <-kick:
			kick, done = nil, make(chan struct{})
			go func() {
				defer close(done)
				r.publishStatus(ctx)
			}()
		case <-done:
			kick, done = r.statusKick, nil
		case reply := <-r.probes:
			r.lanesMu.Lock()
			reply <- struct{}{}
			r.lanesMu.Unlock()
		case <-ctx.Done():
			if done != nil {
				<-done
			}
			return
		}
	}
}

// publishStatus publishes the online status once connected.
func (r *Router) publishStatus(ctx context.Context) {
	if err := r.tr.WaitConnected(ctx); err != nil {
		return
	}
	payload := r.status(StateOnline)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := r.tr.Publish(pctx, r.topic(KindControl), payload, true)
	cancel()
	if err != nil && ctx.Err() == nil {
		// The next connection publishes it again (Connected kicks).
		r.log.Warn("publish connection status", "error", err)
		return
	}
	r.log.Debug("published connection status", "state", StateOnline)
}

// Alive returns nil once the router's status loop has answered a probe,
// or an error when it has not by the time ctx ends. The loop answers
// whatever the connection does, after taking the router's lock: a loop
// that is stuck, or a lock that is never released, fails the probe.
// yggd's watchdog asks it while Run runs.
func (r *Router) Alive(ctx context.Context) error { return Probe(ctx, r.probes, "router status loop") }

// Probe sends a probe to a loop that serves probes (it answers each on
// the channel it receives, after checking what it must) and waits for the
// answer; it fails, naming the loop, when ctx ends first.
func Probe(ctx context.Context, probes chan<- chan struct{}, loop string) error {
	reply := make(chan struct{}, 1) // the loop never waits for us
	select {
	case probes <- reply:
	case <-ctx.Done():
		return fmt.Errorf("%s did not take the probe: %w", loop, context.Cause(ctx))
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s took the probe but did not answer: %w", loop, context.Cause(ctx))
	}
}

// wedge is the test hook of RouterConfig.Wedge: it holds the router's lock
// from the moment Wedge is closed until ctx ends.
func (r *Router) wedge(ctx context.Context) {
	select {
	case <-r.cfg.Wedge:
	case <-ctx.Done():
		return
	}
	r.lanesMu.Lock()
	defer r.lanesMu.Unlock()
	r.log.Warn("router wedged by the test hook: its lock is held until yggd stops")
	<-ctx.Done()
}

// Will returns the retained offline status that the broker publishes if
// the connection ends without a clean disconnect. It is made fresh for
// every connection.
func (r *Router) Will() []byte { return r.status(StateOffline) }

// WillTopic returns the topic of the will.
func (r *Router) WillTopic() string { return r.topic(KindControl) }

func (r *Router) status(state string) []byte {
	s := ConnectionStatus{Type: TypeConnectionStatus, MessageID: NewMessageID(), Version: Version, Sent: time.Now(),
		Content: StatusContent{State: state, Dispatchers: map[string]map[string]string{}}}
	if r.cfg.Facts != nil {
		s.Content.CanonicalFacts = r.cfg.Facts()
	}
	if s.Content.CanonicalFacts.IPAddresses == nil {
		s.Content.CanonicalFacts.IPAddresses = []string{}
	}
	if s.Content.CanonicalFacts.MACAddresses == nil {
		s.Content.CanonicalFacts.MACAddresses = []string{}
	}
	if state == StateOnline {
		s.Content.Dispatchers = r.reg.Dispatchers()
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("encode connection status: %v", err)) // plain data: cannot fail
	}
	return b
}

// HandleControl handles a payload from control/in.
func (r *Router) HandleControl(payload []byte) {
	c, err := DecodeCommand(payload)
	if err != nil {
		r.log.Warn("control message dropped", "error", err)
		return
	}
	log := r.log.With("message_id", c.MessageID, "command", c.Content.Command)
	switch c.Content.Command {
	case CommandPing:
		ev := Event{Type: TypeEvent, MessageID: NewMessageID(), ResponseTo: c.MessageID, Version: Version, Sent: time.Now(), Content: EventPong}
		b, _ := json.Marshal(ev)
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		defer cancel()
		// A ping the broker kept for us arrives as soon as the session
		// resumes, before the transport has finished connecting.
		err := r.tr.WaitConnected(ctx)
		if err == nil {
			err = r.tr.Publish(ctx, r.topic(KindControl), b, false)
		}
		if err != nil {
			log.Warn("publish pong", "error", err)
		}
	case CommandDisconnect:
		log.Info("disconnecting on request: staying offline until restarted")
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		defer cancel()
		r.out.Flush(ctx, r.tr)
		r.tr.Disconnect()
	case CommandReconnect:
		delay, err := reconnectDelay(c.Content)
		if err != nil {
			log.Warn("reconnect: bad delay, reconnecting at once", "error", err)
		}
		log.Info("reconnecting on request", "delay", delay)
		r.tr.Reconnect(delay)
	case CommandCancel:
		r.handleCancel(c)
	default:
		log.Info("unknown command ignored")
	}
}

// maxReconnectDelay bounds the delay a reconnect command may ask for,
// however it is written.
const maxReconnectDelay = 24 * time.Hour

// reconnectDelay reads arguments.delay: seconds as a string or a number
// (clouds send both), or a Go duration such as "1.5s"; at most a day.
func reconnectDelay(c CommandContent) (time.Duration, error) {
	v, ok, err := c.Arg("delay")
	if err != nil || !ok {
		return 0, err
	}
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs > maxReconnectDelay.Seconds() {
			return 0, fmt.Errorf("delay %q out of range (0 to %s)", v, maxReconnectDelay)
		}
		d = time.Duration(secs * float64(time.Second))
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, fmt.Errorf("delay %q is not a number of seconds", v)
	}
	if d < 0 || d > maxReconnectDelay {
		return 0, fmt.Errorf("delay %q out of range (0 to %s)", v, maxReconnectDelay)
	}
	return d, nil
}

// HandleData handles a payload from data/in. It writes the message to the
// journal and returns true once it is there, so that the transport
// acknowledges it to the broker: from then on the message is yggd's to
// deliver, across restarts too, and it waits in its directive's lane, not
// in the broker's window of unacknowledged messages. A message that cannot
// be read is answered with a negative acknowledgement; a redelivery of a
// message already journalled (waiting, being handed, or done within the
// dedupe window) is dropped. It returns false, and the message is not
// acknowledged, only when the journal cannot take it (full, or failing):
// the broker keeps it.
func (r *Router) HandleData(payload []byte) (handled bool) {
	r.received.Add(1)
	if len(payload) > r.cfg.MaxMessageSize {
		id, directive := peekIDs(payload)
		r.event(control.Event{Kind: control.EventReceived, MessageID: id, Directive: directive})
		r.reject(&DeliveryError{Code: CodeTooLarge, MessageID: id, Directive: directive,
			Err: fmt.Errorf("payload is %d bytes, the limit is %d", len(payload), r.cfg.MaxMessageSize)})
		return true
	}
	d, err := decodeInbound(payload)
	if err != nil {
		var de *DeliveryError
		if errors.As(err, &de) {
			r.event(control.Event{Kind: control.EventReceived, MessageID: de.MessageID, Directive: de.Directive})
		}
		r.reject(err)
		return true
	}
	r.event(control.Event{Kind: control.EventReceived, MessageID: d.MessageID, Directive: d.Directive})
	if len(d.Metadata) > MaxMetadataKeys {
		r.reject(&DeliveryError{Code: CodeTooLarge, MessageID: d.MessageID, Directive: d.Directive,
			Err: fmt.Errorf("metadata has %d keys, the limit is %d", len(d.Metadata), MaxMetadataKeys)})
		return true
	}
	// A message whose worker is there and has room is handed at once: its
	// arrival and the start of its handing go to disk in one write.
	add := r.j.AddInbound
	handing := r.canHandNow(d.Directive)
	if handing {
		add = r.j.AddHanding
	}
	dup, err := add(context.Background(), d.MessageID, payload)
	switch {
	case err != nil:
		r.log.Warn("message left to the broker: cannot journal it", "message_id", d.MessageID, "directive", d.Directive, "error", err)
		return false
	case dup:
		r.duplicates.Add(1)
		r.event(control.Event{Kind: control.EventDuplicate, MessageID: d.MessageID, Directive: d.Directive})
		r.log.Info("duplicate message dropped", "message_id", d.MessageID, "directive", d.Directive)
		return true
	}
	r.enqueue(d, handing)
	return true
}

// canHandNow reports whether a message for directive would be handed to
// its worker at once: the worker is registered, gets its content inline,
// and its lane has room.
func (r *Router) canHandNow(directive string) bool {
	w, ok := r.reg.Lookup(directive)
	if !ok || w.Detached {
		return false
	}
	r.lanesMu.Lock()
	defer r.lanesMu.Unlock()
	l := r.lanes[directive]
	return l == nil || l.running < laneWidth
}

// decodeInbound decodes a data/in payload: the fast path for the common
// shape, encoding/json for the rest and for the exact error.
func decodeInbound(payload []byte) (*Data, error) {
	if d, ok := decodeDataFast(payload); ok {
		return d, nil
	}
	return DecodeData(payload)
}

// laneWidth is how many messages of one directive are being handed to its
// worker at the same time. Each directive has its own lane, so a slow or
// hung worker delays only its own messages.
const laneWidth = 128

// At most lanePoolSize goroutines that delivered a message wait, up to
// lanePoolIdle, to deliver the next, so that their stacks, grown through
// gRPC's call path, are not grown again for every message.
const (
	lanePoolSize = 64
	lanePoolIdle = 30 * time.Second
)

// lane is the queue of one directive's messages that wait for a free
// place among its laneWidth deliveries. Only their ids are kept: a
// message is read back from the journal when its turn comes, so yggd's
// memory follows what is in flight, not the backlog.
type lane struct {
	running int
	waiting []string // message ids, oldest first
}

// enqueue starts the delivery of d in its lane, or queues it there;
// handing says that the journal has d as being handed already.
func (r *Router) enqueue(d *Data, handing bool) {
	r.lanesMu.Lock()
	defer r.lanesMu.Unlock()
	if r.ctx.Err() != nil {
		return // stopping: it stays in the journal for the next start
	}
	l := r.lanes[d.Directive]
	if l == nil {
		l = &lane{}
		r.lanes[d.Directive] = l
	}
	if l.running >= laneWidth {
		l.waiting = append(l.waiting, d.MessageID)
		return
	}
	l.running++
	r.delivering.Add(1)
	r.lanePool.Go(func() {
		defer r.delivering.Done()
		r.runLane(d.Directive, d, handing)
	})
}

// runLane delivers d, then the lane's waiting messages, until there is
// none left or yggd is stopping.
func (r *Router) runLane(directive string, d *Data, handing bool) {
	for {
		if d != nil {
			r.deliver(d, handing)
		}
		id, ok := r.nextInLane(directive)
		if !ok {
			return
		}
		d, handing = r.load(id), false
	}
}

// nextInLane takes the next waiting message of directive, or gives up the
// caller's place in the lane.
func (r *Router) nextInLane(directive string) (string, bool) {
	r.lanesMu.Lock()
	defer r.lanesMu.Unlock()
	l := r.lanes[directive]
	if len(l.waiting) == 0 || r.ctx.Err() != nil {
		l.running--
		if l.running == 0 && len(l.waiting) == 0 {
			delete(r.lanes, directive)
		}
		return "", false
	}
	id := l.waiting[0]
	l.waiting[0] = ""
	l.waiting = l.waiting[1:]
	return id, true
}

// load reads a journalled message back; nil when it cannot be (logged, and
// forgotten so that a resend is taken).
func (r *Router) load(id string) *Data {
	payload, err := r.j.ReadInbound(id)
	if err == nil {
		var d *Data
		if d, err = decodeInbound(payload); err == nil {
			return d
		}
	}
	// Acknowledged to the broker already: answer it rather than drop it.
	r.refuse(&DeliveryError{Code: CodeMalformed, MessageID: id,
		Err: fmt.Errorf("read the message back from the journal: %w", err)}, journal.Refuse)
	return nil
}

// deliver hands d to its worker, waiting for one that is starting, and
// marks it done in the journal; or answers it with a negative
// acknowledgement. When yggd stops before d is handed, d stays in the
// journal: delivered after the restart if it was waiting, answered as
// interrupted if the journal already had it as being handed (a message
// journalled for handing at once, see HandleData).
func (r *Router) deliver(d *Data, handing bool) {
	err := r.hand(d, handing)
	switch {
	case err != nil && !errors.Is(err, errStopping) && !r.j.Waiting(d.MessageID):
		// The worker answered inside its Send, then the Send failed (a
		// deadline): it ran, and its answer is out. No refusal on top.
		r.delivered.Add(1)
		r.log.Info("worker answered, then its receipt failed", "message_id", d.MessageID, "directive", d.Directive, "error", err)
	case err == nil:
		r.j.Done(d.MessageID)
	case errors.Is(err, errStopping):
		r.log.Info("stopping: message left in the journal for the next start", "message_id", d.MessageID, "directive", d.Directive)
	default:
		// A refusal is not "done": the same id sent again is a new attempt.
		r.refuse(err, journal.Refuse)
	}
}

// markHanding records, durably, that id is being handed, unless the
// journal has it so already.
func (r *Router) markHanding(id string, already bool) error {
	if already {
		return nil
	}
	return r.j.Handing(r.ctx, id)
}

// errStopping says that yggd stopped before a message was handed.
var errStopping = errors.New("stopping")

func (r *Router) hand(d *Data, handing bool) error {
	return r.handTo(d, func() error { return r.markHanding(d.MessageID, handing) })
}

// handTo finds d's worker, waiting for one that is starting, fetches the
// content of a detached worker, and sends d to the worker. taking, when
// set, is called just before the send: the journal's "handing" mark of a
// message from the cloud; it is nil for a local dispatch.
func (r *Router) handTo(d *Data, taking func() error) error {
	fail := func(code ErrorCode, err error) error {
		return &DeliveryError{Code: code, MessageID: d.MessageID, Directive: d.Directive, Err: err}
	}
	w, err := r.worker(d.Directive)
	switch {
	case errors.Is(err, errStopping) || r.ctx.Err() != nil:
		return errStopping
	case err != nil:
		return err.(*DeliveryError).with(d)
	}
	if w.Detached {
		if r.cfg.Fetch == nil {
			return fail(CodeContentFetchFailed, errors.New("detached content is not supported by this yggd"))
		}
		body, err := r.cfg.Fetch(r.ctx, d)
		var de *DeliveryError
		switch {
		case r.ctx.Err() != nil:
			return errStopping
		case errors.As(err, &de):
			return de
		case err != nil:
			return fail(CodeContentFetchFailed, err)
		}
		d.Content = body
	}
	// From here the worker may take the message: if yggd dies before it
	// knows, the next start answers it as interrupted rather than run it
	// again.
	if taking != nil {
		if err := taking(); err != nil {
			if r.ctx.Err() != nil {
				return errStopping
			}
			return fail(CodeWorkerUnavailable, fmt.Errorf("journal: %w", err))
		}
	}
	ctx, cancel := context.WithTimeout(r.sendCtx, r.cfg.DispatchTimeout)
	err = w.Conn.Send(ctx, d)
	cancel()
	if err == nil && w.Detached && r.cfg.Release != nil {
		r.cfg.Release(d.Content)
		d.Content = nil
	}
	switch {
	case err != nil && r.sendCtx.Err() != nil:
		return errStopping // cut short on stop: answered as interrupted at the next start
	case err == nil:
		local := taking == nil
		if !local {
			r.delivered.Add(1)
		}
		r.event(control.Event{Kind: control.EventDelivered, MessageID: d.MessageID, Directive: d.Directive, Local: local, PID: w.Pid})
		r.log.Debug("delivered", "message_id", d.MessageID, "directive", d.Directive, "pid", w.Pid, "local", local)
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fail(CodeWorkerTimeout, fmt.Errorf("worker %q (pid %d) did not take the message within %s", w.Handler, w.Pid, r.cfg.DispatchTimeout))
	default:
		return fail(CodeWorkerUnavailable, fmt.Errorf("send to worker %q (pid %d): %w", w.Handler, w.Pid, err))
	}
}

// recheckWait is how often a message waiting for a late worker asks again
// whether any worker is still expected (a worker may finish registering
// without ever registering this directive).
const recheckWait = 250 * time.Millisecond

// worker finds the worker for directive, waiting for one that is starting:
// up to LateWorkerWait, and only while one is expected.
func (r *Router) worker(directive string) (*Worker, error) {
	deadline := time.Now().Add(r.cfg.LateWorkerWait)
	for {
		if w, ok := r.reg.Lookup(directive); ok {
			return w, nil
		}
		if r.reg.Orphaned(directive) {
			return nil, &DeliveryError{Code: CodeUnknownDirective, Err: fmt.Errorf("the process that served %q has exited, and its worker has not registered it again", directive)}
		}
		starting := r.cfg.Starting != nil && r.cfg.Starting()
		if !starting && !r.reg.Known(directive) {
			return nil, &DeliveryError{Code: CodeUnknownDirective, Err: fmt.Errorf("no worker handles %q", directive)}
		}
		left := time.Until(deadline)
		if left <= 0 {
			if r.reg.Known(directive) {
				return nil, &DeliveryError{Code: CodeWorkerUnavailable, Err: fmt.Errorf("worker %q did not come back within %s", directive, r.cfg.LateWorkerWait)}
			}
			return nil, &DeliveryError{Code: CodeUnknownDirective, Err: fmt.Errorf("no worker registered for %q within %s", directive, r.cfg.LateWorkerWait)}
		}
		ctx, cancel := context.WithTimeout(r.ctx, min(left, recheckWait))
		w, err := r.reg.Wait(ctx, directive)
		cancel()
		if err == nil {
			return w, nil
		}
		if r.ctx.Err() != nil {
			return nil, errStopping
		}
	}
}

func (e *DeliveryError) with(d *Data) *DeliveryError {
	e.MessageID, e.Directive = d.MessageID, d.Directive
	return e
}

// rejectedByCode returns a copy of the refusals counted by code.
func (r *Router) rejectedByCode() map[ErrorCode]uint64 {
	r.rejectedMu.Lock()
	defer r.rejectedMu.Unlock()
	out := make(map[ErrorCode]uint64, len(r.rejectedBy))
	for c, n := range r.rejectedBy {
		out[c] = n
	}
	return out
}

// reject logs the failure of a message the journal never took and
// answers it on data/out.
func (r *Router) reject(err error) { r.nack(err, false, journal.IfHanding) }

// refuse logs the failure of a journalled message and answers it on
// data/out; the same write settles the message as effect says, so that
// a crash can neither leave it unanswered nor answer it twice.
func (r *Router) refuse(err error, effect journal.Effect) { r.nack(err, true, effect) }

func (r *Router) nack(err error, settle bool, effect journal.Effect) {
	var de *DeliveryError
	if !errors.As(err, &de) {
		de = &DeliveryError{Code: CodeMalformed, Err: err}
	}
	r.rejected.Add(1)
	r.rejectedMu.Lock()
	if r.rejectedBy == nil {
		r.rejectedBy = map[ErrorCode]uint64{}
	}
	r.rejectedBy[de.Code]++
	r.rejectedMu.Unlock()
	r.event(control.Event{Kind: control.EventRejected, MessageID: de.MessageID, Directive: de.Directive, Code: string(de.Code), Error: de.Err.Error()})
	r.log.Warn("message not delivered", "message_id", de.MessageID, "directive", de.Directive, "code", de.Code, "error", de.Err)
	content, _ := json.Marshal(struct {
		Error   ErrorCode `json:"error"`
		Message string    `json:"message"`
	}{de.Code, de.Err.Error()})
	nack := Data{Type: TypeData, MessageID: NewMessageID(), ResponseTo: de.MessageID, Version: Version, Sent: time.Now(),
		Directive: de.Directive, Metadata: map[string]string{MetadataError: string(de.Code)}, Content: content}
	b, _ := json.Marshal(nack)
	settles := ""
	if settle {
		settles = de.MessageID
	}
	if err := r.out.Put(context.Background(), r.topic(KindData), nack.MessageID, settles, effect, b); err != nil {
		r.log.Error("negative acknowledgement lost", "response_to", de.MessageID, "error", err)
	}
}

// ErrInvalidAnswer is returned to a worker whose answer cannot be sent.
var ErrInvalidAnswer = errors.New("invalid answer")

// HandleAnswer takes a worker's answer (Dispatcher.Send) and queues it for
// the cloud. It never waits for the broker. It may run before the
// Worker.Send that caused it has returned.
func (r *Router) HandleAnswer(ctx context.Context, d *Data) error {
	switch {
	case d.MessageID == "":
		return r.invalidAnswer(d, errors.New("message_id is empty"))
	case d.Directive == "":
		return r.invalidAnswer(d, errors.New("directive is empty"))
	case len(d.Content) > r.cfg.MaxMessageSize:
		return r.invalidAnswer(d, fmt.Errorf("content is %d bytes, the limit is %d", len(d.Content), r.cfg.MaxMessageSize))
	}
	if local, err := r.answerLocal(d); local {
		return err
	}
	if r.cfg.Post != nil && isURL(d.Directive) {
		if err := r.cfg.Post(ctx, d); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidAnswer, err)
		}
		r.answers.Add(1)
		r.event(control.Event{Kind: control.EventAnswered, MessageID: d.MessageID, ResponseTo: d.ResponseTo, Directive: d.Directive})
		return nil
	}
	if len(d.Content) == 0 {
		d.Content = json.RawMessage("null")
	} else if !validJSON(d.Content) {
		return r.invalidAnswer(d, errors.New("content is not JSON (a string must be sent quoted)"))
	}
	d.Type, d.Version, d.Sent = TypeData, Version, time.Now()
	b, err := encodeAnswer(d)
	if err != nil {
		return r.invalidAnswer(d, fmt.Errorf("encode: %w", err))
	}
	if err := r.out.Put(ctx, r.topic(KindData), d.MessageID, d.ResponseTo, journal.IfHanding, b); err != nil {
		return err // not ErrInvalidAnswer: the worker may send it again
	}
	r.answers.Add(1)
	r.event(control.Event{Kind: control.EventAnswered, MessageID: d.MessageID, ResponseTo: d.ResponseTo, Directive: d.Directive})
	return nil
}

// invalidAnswer returns the error that refuses d to its worker. When d
// answers a message from the cloud, the cloud is told too, with a
// negative acknowledgement invalid-answer to that message, so that it does
// not wait for an answer that will not come (the worker may still send a
// valid one). An answer to a local dispatch is only refused: the cloud
// never heard of that message.
func (r *Router) invalidAnswer(d *Data, cause error) error {
	if _, local := r.local.lookup(d.ResponseTo); d.ResponseTo != "" && !local {
		r.refuse(&DeliveryError{Code: CodeInvalidAnswer, MessageID: d.ResponseTo, Directive: d.Directive,
			Err: fmt.Errorf("answer %q refused: %w", d.MessageID, cause)}, journal.IfHanding)
	}
	return fmt.Errorf("%w: %w", ErrInvalidAnswer, cause)
}

// event passes ev to OnEvent, if set.
func (r *Router) event(ev control.Event) {
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(ev)
	}
}

func isURL(s string) bool {
	return len(s) > 7 && (s[:7] == "http://" || (len(s) > 8 && s[:8] == "https://"))
}
