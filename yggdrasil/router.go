package yggdrasil

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
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

// reconnectDelay reads arguments.delay: seconds as a string or a number
// (clouds send both), or a Go duration such as "1.5s".
func reconnectDelay(c CommandContent) (time.Duration, error) {
	v, ok, err := c.Arg("delay")
	if err != nil || !ok {
		return 0, err
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs > 24*3600 {
			return 0, fmt.Errorf("delay %q out of range", v)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("delay %q is not a number of seconds", v)
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
			return false
		}
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

// encodeAnswer encodes d as json.Marshal does, except that the content,
// already checked to be JSON, is copied as it is instead of being
// validated and compacted a second time: for a 64 KiB answer those two
// passes were a quarter of yggd's CPU. The envelope's fields come in the
// order of Data's.
func encodeAnswer(d *Data) ([]byte, error) {
	meta, err := json.Marshal(d.Metadata)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 160+len(d.MessageID)+len(d.ResponseTo)+len(d.Directive)+len(meta)+len(d.Content))
	b = append(b, `{"type":`...)
	b = appendString(b, d.Type)
	b = append(b, `,"message_id":`...)
	b = appendString(b, d.MessageID)
	b = append(b, `,"response_to":`...)
	b = appendString(b, d.ResponseTo)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(d.Version), 10)
	b = append(b, `,"sent":"`...)
	b = d.Sent.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","directive":`...)
	b = appendString(b, d.Directive)
	b = append(b, `,"metadata":`...)
	b = append(b, meta...)
	b = append(b, `,"content":`...)
	b = append(b, d.Content...)
	return append(b, '}'), nil
}

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML characters and U+2028/U+2029 included; invalid UTF-8
// becomes U+FFFD).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// The data path's JSON fast paths. encoding/json validates a whole
// payload before decoding it (checkValid) and scans a RawMessage again to
// copy it; with json.Valid on every answer, that was 43% of yggd's CPU at
// 64 KiB. The scanner below is strict RFC 8259, reads strings eight bytes
// at a time, and is only ever trusted when it says yes: anything it does
// not accept, or does not know, goes to encoding/json for the verdict
// (and, for data messages, for the exact error). So it changes the cost
// of the common case and nothing else.

// validJSON reports whether b is one JSON value, as json.Valid does.
func validJSON(b []byte) bool {
	if i := skipValue(b, skipSpace(b, 0), 0); i >= 0 && skipSpace(b, i) == len(b) {
		return true
	}
	return json.Valid(b)
}

// decodeDataFast decodes a data/in payload of the common shape: valid
// UTF-8, the envelope's keys spelled exactly and once each, strings
// without escapes, a valid message. Anything else returns false and is
// left to DecodeData, which then decides (and explains) exactly as before.
// The content aliases payload.
func decodeDataFast(p []byte) (*Data, bool) {
	if !utf8.Valid(p) {
		return nil, false
	}
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return nil, false
	}
	var d Data
	var seen uint
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return nil, false // no directive: DecodeData explains
	}
	for {
		key, j, ok := plainString(p, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(p, j)
		if i >= len(p) || p[i] != ':' {
			return nil, false
		}
		i = skipSpace(p, i+1)
		var bit uint
		switch key {
		case "type":
			bit = 1 << 0
			d.Type, j, ok = plainString(p, i)
		case "message_id":
			bit = 1 << 1
			d.MessageID, j, ok = plainString(p, i)
		case "response_to":
			bit = 1 << 2
			d.ResponseTo, j, ok = plainString(p, i)
		case "directive":
			bit = 1 << 3
			d.Directive, j, ok = plainString(p, i)
		case "version":
			bit = 1 << 4
			d.Version, j, ok = smallInt(p, i)
		case "sent":
			bit = 1 << 5
			var s string
			if s, j, ok = plainString(p, i); ok && s != "" {
				ok = d.Sent.UnmarshalJSON(p[i:j]) == nil
			} else {
				ok = false
			}
		case "metadata":
			bit = 1 << 6
			d.Metadata, j, ok = plainMap(p, i)
		case "content":
			bit = 1 << 7
			j = skipValue(p, i, 0)
			ok = j >= 0
			if ok {
				d.Content = json.RawMessage(p[i:j:j])
			}
		default:
			return nil, false
		}
		if !ok || seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		i = skipSpace(p, j)
		if i >= len(p) {
			return nil, false
		}
		if p[i] == '}' {
			break
		}
		if p[i] != ',' {
			return nil, false
		}
		i = skipSpace(p, i+1)
	}
	if skipSpace(p, i+1) != len(p) ||
		d.Type != TypeData || d.Version != Version || d.MessageID == "" || d.Directive == "" {
		return nil, false
	}
	return &d, true
}

// plainString reads the JSON string at p[i] if it has no escapes, and
// returns it and the index after it.
func plainString(p []byte, i int) (string, int, bool) {
	if i >= len(p) || p[i] != '"' {
		return "", 0, false
	}
	j := scanSafe(p, i+1)
	if j >= len(p) || p[j] != '"' {
		return "", 0, false
	}
	return string(p[i+1 : j]), j + 1, true
}

// plainMap reads null or an object of plain strings.
func plainMap(p []byte, i int) (map[string]string, int, bool) {
	if i+4 <= len(p) && string(p[i:i+4]) == "null" {
		return nil, i + 4, true
	}
	if i >= len(p) || p[i] != '{' {
		return nil, 0, false
	}
	m := map[string]string{}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return m, i + 1, true
	}
	for {
		k, j, ok := plainString(p, i)
		if !ok {
			return nil, 0, false
		}
		i = skipSpace(p, j)
		if i >= len(p) || p[i] != ':' {
			return nil, 0, false
		}
		v, j, ok := plainString(p, skipSpace(p, i+1))
		if !ok {
			return nil, 0, false
		}
		m[k] = v
		i = skipSpace(p, j)
		if i >= len(p) {
			return nil, 0, false
		}
		if p[i] == '}' {
			return m, i + 1, true
		}
		if p[i] != ',' {
			return nil, 0, false
		}
		i = skipSpace(p, i+1)
	}
}

// smallInt reads a non-negative JSON integer of up to nine digits that is
// not followed by a fraction or an exponent.
func smallInt(p []byte, i int) (int, int, bool) {
	n, start := 0, i
	for i < len(p) && p[i] >= '0' && p[i] <= '9' && i-start < 9 {
		n = n*10 + int(p[i]-'0')
		i++
	}
	if i == start || (p[start] == '0' && i-start > 1) || (i < len(p) && (p[i] == '.' || p[i] == 'e' || p[i] == 'E' || (p[i] >= '0' && p[i] <= '9'))) {
		return 0, 0, false
	}
	return n, i, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// maxScanDepth bounds the scanner's nesting; deeper values go to
// encoding/json.
const maxScanDepth = 200

// skipValue returns the index after the JSON value at b[i], or -1 when it
// is not valid (or is nested deeper than maxScanDepth).
func skipValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; c {
	case '"':
		return skipString(b, i)
	case '{', '[':
		if depth >= maxScanDepth {
			return -1
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == end {
			return i + 1
		}
		for {
			if c == '{' {
				if i = skipString(b, i); i < 0 {
					return -1
				}
				if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
					return -1
				}
				i = skipSpace(b, i+1)
			}
			if i = skipValue(b, i, depth+1); i < 0 {
				return -1
			}
			if i = skipSpace(b, i); i >= len(b) {
				return -1
			}
			switch b[i] {
			case ',':
				i = skipSpace(b, i+1)
			case end:
				return i + 1
			default:
				return -1
			}
		}
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	}
	return skipNumber(b, i)
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

func skipNumber(b []byte, i int) int {
	digits := func(i int) (int, bool) {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i, i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i, _ = digits(i)
	default:
		return -1
	}
	var ok bool
	if i < len(b) && b[i] == '.' {
		if i, ok = digits(i + 1); !ok {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i, ok = digits(i); !ok {
			return -1
		}
	}
	return i
}

// skipString returns the index after the JSON string at b[i], or -1.
func skipString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	i++
	for {
		i = scanSafe(b, i)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return -1
				}
				for _, h := range b[i+2 : i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 6
			default:
				return -1
			}
		default:
			return -1 // a control character
		}
	}
}

// scanSafe returns the index of the first byte at or after i that is a
// quote, a backslash or a control character (len(b) if none), eight
// bytes at a time.
func scanSafe(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		q, s := x^(ones*'"'), x^(ones*'\\')
		if (x-ones*0x20)&^x&highs != 0 || (q-ones)&^q&highs != 0 || (s-ones)&^s&highs != 0 {
			break
		}
		i += 8
	}
	for i < len(b) {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' {
			return i
		}
		i++
	}
	return i
}
