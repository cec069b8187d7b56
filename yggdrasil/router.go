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
)

// Transport is the connection to the broker, as the router uses it.
type Transport interface {
	Publisher
	// Disconnect publishes nothing itself: it closes the connection cleanly
	// and stays disconnected until the process restarts.
	Disconnect()
	// Reconnect closes the connection cleanly, waits delay, and connects
	// again.
	Reconnect(delay time.Duration)
}

// Limits on what the router accepts.
const (
	DefaultMaxMessageSize  = 32 << 20
	DefaultDispatchTimeout = 60 * time.Second
	DefaultLateWorkerWait  = 30 * time.Second
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
	Outbox          OutboxLimits

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

	Log *slog.Logger
}

// Stats counts what the router did since it started.
type Stats struct {
	Received   uint64 // data messages received
	Delivered  uint64 // handed to a worker
	Duplicates uint64 // dropped as redelivered
	Rejected   uint64 // answered with a negative acknowledgement
	Answers    uint64 // worker answers queued for the cloud
	Dropped    uint64 // answers dropped past the outbox limits
}

// Router is the core of yggd: it answers control commands, routes data
// messages to workers, and queues their answers for the cloud. It
// implements the handler side of the MQTT transport and the reply side of
// the worker dispatcher.
type Router struct {
	cfg    RouterConfig
	log    *slog.Logger
	tr     Transport
	reg    *Registry
	out    *Outbox
	dedupe *Dedupe

	ctx    context.Context // ends when Run returns: cancels dispatches in flight
	cancel context.CancelFunc

	statusKick chan struct{} // capacity 1: publish the status again

	received, delivered, duplicates, rejected, answers atomic.Uint64
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
	r := &Router{
		cfg:        cfg,
		log:        orDiscard(cfg.Log),
		tr:         tr,
		dedupe:     NewDedupe(20_000, 10*time.Minute),
		statusKick: make(chan struct{}, 1),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.reg = NewRegistry(r.KickStatus)
	r.out = NewOutbox(cfg.Outbox, r.log)
	return r
}

// Registry returns the worker table.
func (r *Router) Registry() *Registry { return r.reg }

// Outbox returns the queue of messages for data/out.
func (r *Router) Outbox() *Outbox { return r.out }

// Stats returns the counters.
func (r *Router) Stats() Stats {
	return Stats{
		Received:   r.received.Load(),
		Delivered:  r.delivered.Load(),
		Duplicates: r.duplicates.Load(),
		Rejected:   r.rejected.Load(),
		Answers:    r.answers.Load(),
		Dropped:    r.out.Dropped(),
	}
}

// Run publishes queued answers and status updates until ctx ends, then
// cancels the dispatches still in flight.
func (r *Router) Run(ctx context.Context) error {
	defer r.cancel()
	var wg sync.WaitGroup
	wg.Go(func() { r.out.Run(ctx, r.tr) })
	wg.Go(func() { r.publishStatuses(ctx) })
	wg.Wait()
	return nil
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

func (r *Router) publishStatuses(ctx context.Context) {
	for {
		select {
		case <-r.statusKick:
		case <-ctx.Done():
			return
		}
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
			continue
		}
		r.log.Debug("published connection status", "state", StateOnline)
	}
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
		if err := r.tr.Publish(ctx, r.topic(KindControl), b, false); err != nil {
			log.Warn("publish pong", "error", err)
		}
	case CommandDisconnect:
		log.Info("disconnecting on request: staying offline until restarted")
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		defer cancel()
		r.out.Flush(ctx, r.tr)
		if err := r.tr.Publish(ctx, r.topic(KindControl), r.Will(), true); err != nil {
			log.Warn("publish offline status", "error", err)
		}
		r.tr.Disconnect()
	case CommandReconnect:
		delay, err := reconnectDelay(c.Content)
		if err != nil {
			log.Warn("reconnect: bad delay, reconnecting at once", "error", err)
		}
		log.Info("reconnecting on request", "delay", delay)
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		defer cancel()
		if err := r.tr.Publish(ctx, r.topic(KindControl), r.Will(), true); err != nil {
			log.Warn("publish offline status", "error", err)
		}
		r.tr.Reconnect(delay)
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

// HandleData handles a payload from data/in: it hands the message to its
// worker, or answers it with a negative acknowledgement. It returns once
// the worker has taken the message (or it was refused), so the transport
// acknowledges it to the broker only then; it returns false, and the
// message is not acknowledged, when yggd stopped before it was handled.
func (r *Router) HandleData(payload []byte) (handled bool) {
	r.received.Add(1)
	if len(payload) > r.cfg.MaxMessageSize {
		id, directive := peekIDs(payload)
		r.reject(&DeliveryError{Code: CodeTooLarge, MessageID: id, Directive: directive,
			Err: fmt.Errorf("payload is %d bytes, the limit is %d", len(payload), r.cfg.MaxMessageSize)})
		return true
	}
	d, ok := decodeDataFast(payload)
	if !ok {
		var err error
		if d, err = DecodeData(payload); err != nil {
			r.reject(err)
			return true
		}
	}
	if err := r.deliver(d); err != nil {
		if r.ctx.Err() != nil {
			// Stopping: leave the message to the broker, which delivers
			// it again to the next session, rather than refuse it.
			r.log.Info("stopping: message left to the broker", "message_id", d.MessageID, "directive", d.Directive)
			r.dedupe.Forget(d.MessageID)
			return false
		}
		// A refusal is not "done": the same id sent again is a new attempt.
		r.dedupe.Forget(d.MessageID)
		r.reject(err)
	}
	return true
}

func (r *Router) deliver(d *Data) error {
	fail := func(code ErrorCode, err error) error {
		return &DeliveryError{Code: code, MessageID: d.MessageID, Directive: d.Directive, Err: err}
	}
	if len(d.Metadata) > MaxMetadataKeys {
		return fail(CodeTooLarge, fmt.Errorf("metadata has %d keys, the limit is %d", len(d.Metadata), MaxMetadataKeys))
	}
	if r.dedupe.Seen(d.MessageID) {
		r.duplicates.Add(1)
		r.log.Info("duplicate message dropped", "message_id", d.MessageID, "directive", d.Directive)
		return nil
	}
	w, err := r.worker(d.Directive)
	if err != nil {
		return err.(*DeliveryError).with(d)
	}
	if w.Detached {
		if r.cfg.Fetch == nil {
			return fail(CodeContentFetchFailed, errors.New("detached content is not supported by this yggd"))
		}
		body, err := r.cfg.Fetch(r.ctx, d)
		var de *DeliveryError
		switch {
		case errors.As(err, &de):
			return de
		case err != nil:
			return fail(CodeContentFetchFailed, err)
		}
		d.Content = body
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.DispatchTimeout)
	err = w.Conn.Send(ctx, d)
	cancel()
	switch {
	case err == nil:
		r.delivered.Add(1)
		r.log.Debug("delivered", "message_id", d.MessageID, "directive", d.Directive, "pid", w.Pid)
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fail(CodeWorkerTimeout, fmt.Errorf("worker %q (pid %d) did not take the message within %s", w.Handler, w.Pid, r.cfg.DispatchTimeout))
	default:
		return fail(CodeWorkerUnavailable, fmt.Errorf("send to worker %q (pid %d): %w", w.Handler, w.Pid, err))
	}
}

// worker finds the worker for directive, waiting for one that is starting.
func (r *Router) worker(directive string) (*Worker, error) {
	if w, ok := r.reg.Lookup(directive); ok {
		return w, nil
	}
	starting := r.cfg.Starting != nil && r.cfg.Starting()
	if !starting && !r.reg.Known(directive) {
		return nil, &DeliveryError{Code: CodeUnknownDirective, Err: fmt.Errorf("no worker handles %q", directive)}
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.LateWorkerWait)
	defer cancel()
	w, err := r.reg.Wait(ctx, directive)
	if err == nil {
		return w, nil
	}
	if r.reg.Known(directive) {
		return nil, &DeliveryError{Code: CodeWorkerUnavailable, Err: fmt.Errorf("worker %q did not come back within %s", directive, r.cfg.LateWorkerWait)}
	}
	return nil, &DeliveryError{Code: CodeUnknownDirective, Err: fmt.Errorf("no worker registered for %q within %s", directive, r.cfg.LateWorkerWait)}
}

func (e *DeliveryError) with(d *Data) *DeliveryError {
	e.MessageID, e.Directive = d.MessageID, d.Directive
	return e
}

// reject logs a delivery failure and answers it on data/out.
func (r *Router) reject(err error) {
	var de *DeliveryError
	if !errors.As(err, &de) {
		de = &DeliveryError{Code: CodeMalformed, Err: err}
	}
	r.rejected.Add(1)
	r.log.Warn("message not delivered", "message_id", de.MessageID, "directive", de.Directive, "code", de.Code, "error", de.Err)
	content, _ := json.Marshal(struct {
		Error   ErrorCode `json:"error"`
		Message string    `json:"message"`
	}{de.Code, de.Err.Error()})
	nack := Data{Type: TypeData, MessageID: NewMessageID(), ResponseTo: de.MessageID, Version: Version, Sent: time.Now(),
		Directive: de.Directive, Metadata: map[string]string{MetadataError: string(de.Code)}, Content: content}
	b, _ := json.Marshal(nack)
	r.out.Put(r.topic(KindData), nack.MessageID, b)
}

// ErrInvalidAnswer is returned to a worker whose answer cannot be sent.
var ErrInvalidAnswer = errors.New("invalid answer")

// HandleAnswer takes a worker's answer (Dispatcher.Send) and queues it for
// the cloud. It never waits for the broker. It may run before the
// Worker.Send that caused it has returned.
func (r *Router) HandleAnswer(ctx context.Context, d *Data) error {
	switch {
	case d.MessageID == "":
		return fmt.Errorf("%w: message_id is empty", ErrInvalidAnswer)
	case d.Directive == "":
		return fmt.Errorf("%w: directive is empty", ErrInvalidAnswer)
	case len(d.Content) > r.cfg.MaxMessageSize:
		return fmt.Errorf("%w: content is %d bytes, the limit is %d", ErrInvalidAnswer, len(d.Content), r.cfg.MaxMessageSize)
	}
	if r.cfg.Post != nil && isURL(d.Directive) {
		if err := r.cfg.Post(ctx, d); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidAnswer, err)
		}
		r.answers.Add(1)
		return nil
	}
	if len(d.Content) == 0 {
		d.Content = json.RawMessage("null")
	} else if !validJSON(d.Content) {
		return fmt.Errorf("%w: content is not JSON (a string must be sent quoted)", ErrInvalidAnswer)
	}
	d.Type, d.Version, d.Sent = TypeData, Version, time.Now()
	b, err := encodeAnswer(d)
	if err != nil {
		return fmt.Errorf("%w: encode: %w", ErrInvalidAnswer, err)
	}
	r.answers.Add(1)
	r.out.Put(r.topic(KindData), d.MessageID, b)
	r.log.Debug("answer queued", "message_id", d.MessageID, "response_to", d.ResponseTo, "directive", d.Directive)
	return nil
}

func isURL(s string) bool {
	return len(s) > 7 && (s[:7] == "http://" || (len(s) > 8 && s[:8] == "https://"))
}
