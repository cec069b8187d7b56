package yggdrasil

// Local dispatch: a data message that comes from the host (ygg dispatch,
// through the control socket) rather than from the cloud. It is handed to
// its worker like any other, but it is not journalled, and its worker's
// answers go back to the caller, never to data/out.

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

// leftCalls is how many local messages whose caller has gone are
// remembered, so that their late answers are dropped rather than sent to
// the cloud, which never heard of them.
const leftCalls = 1024

// localCalls are the local messages whose answers someone waits for.
type localCalls struct {
	mu      sync.Mutex
	waiting map[string]func(*Data) // by message id
	left    map[string]bool        // callers gone
	order   []string               // of left, oldest first
}

func (c *localCalls) add(id string, answer func(*Data)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting == nil {
		c.waiting, c.left = map[string]func(*Data){}, map[string]bool{}
	}
	c.waiting[id] = answer
}

// leave forgets the caller of id; later answers to id are dropped.
func (c *localCalls) leave(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.waiting[id]; !ok {
		return
	}
	delete(c.waiting, id)
	c.left[id] = true
	c.order = append(c.order, id)
	if len(c.order) > leftCalls {
		delete(c.left, c.order[0])
		c.order = c.order[1:]
	}
}

// lookup says whether id is a local message, and returns the function
// that takes its answers (nil once its caller has gone).
func (c *localCalls) lookup(id string) (answer func(*Data), local bool) {
	if id == "" {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.waiting[id]; ok {
		return a, true
	}
	return nil, c.left[id]
}

// ErrStopping is returned by DispatchLocal when yggd stops before the
// message was handed.
var ErrStopping = errors.New("yggd is stopping")

// DispatchLocal hands d to its worker, waiting for one that is starting,
// as a message from the cloud would be, and passes each of the worker's
// answers to answer, until done is called; answer must not block. d's
// message id is made up when empty. A refusal is returned as a
// *DeliveryError with the code the cloud would have got. The message is
// not journalled: if yggd stops, the caller's connection ends, and nothing
// runs it again.
func (r *Router) DispatchLocal(d *Data, answer func(*Data)) (done func(), err error) {
	if d.MessageID == "" {
		d.MessageID = NewMessageID()
	}
	d.Type, d.Version = TypeData, Version
	if d.Sent.IsZero() {
		d.Sent = time.Now()
	}
	r.local.add(d.MessageID, answer)
	done = func() { r.local.leave(d.MessageID) }
	r.event(control.Event{Kind: control.EventReceived, MessageID: d.MessageID, Directive: d.Directive, Local: true})
	switch {
	case d.Directive == "":
		err = &DeliveryError{Code: CodeMalformed, MessageID: d.MessageID, Err: errors.New("directive is empty")}
	case len(d.Content) > r.cfg.MaxMessageSize:
		err = &DeliveryError{Code: CodeTooLarge, MessageID: d.MessageID, Directive: d.Directive,
			Err: fmt.Errorf("content is %d bytes, the limit is %d", len(d.Content), r.cfg.MaxMessageSize)}
	case len(d.Metadata) > MaxMetadataKeys:
		err = &DeliveryError{Code: CodeTooLarge, MessageID: d.MessageID, Directive: d.Directive,
			Err: fmt.Errorf("metadata has %d keys, the limit is %d", len(d.Metadata), MaxMetadataKeys)}
	default:
		err = r.handTo(d, nil)
	}
	if errors.Is(err, errStopping) {
		err = ErrStopping
	}
	if err != nil {
		done()
		var de *DeliveryError
		if errors.As(err, &de) {
			r.event(control.Event{Kind: control.EventRejected, MessageID: d.MessageID, Directive: d.Directive,
				Local: true, Code: string(de.Code), Error: de.Err.Error()})
		}
		return func() {}, err
	}
	return done, nil
}

// answerLocal passes d, an answer to a local message, to its caller, or
// drops it when the caller has gone. It reports false when d answers no
// local message.
func (r *Router) answerLocal(d *Data) (bool, error) {
	answer, local := r.local.lookup(d.ResponseTo)
	if !local {
		return false, nil
	}
	if len(d.Content) == 0 {
		d.Content = []byte("null")
	} else if !validJSON(d.Content) {
		return true, fmt.Errorf("%w: content is not JSON (a string must be sent quoted)", ErrInvalidAnswer)
	}
	r.event(control.Event{Kind: control.EventAnswered, MessageID: d.MessageID, ResponseTo: d.ResponseTo, Directive: d.Directive, Local: true})
	if answer == nil {
		r.log.Info("answer to a local dispatch dropped: its caller has gone", "message_id", d.MessageID, "response_to", d.ResponseTo)
		return true, nil
	}
	// The caller keeps it after this returns: nothing of the dispatcher's
	// buffers.
	c := *d
	c.Type, c.Version, c.Sent = TypeData, Version, time.Now()
	c.Content = bytes.Clone(d.Content)
	c.Metadata = maps.Clone(d.Metadata)
	answer(&c)
	return true, nil
}
