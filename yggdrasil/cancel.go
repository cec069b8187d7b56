package yggdrasil

// The cancel command of yggdrasil 0.4: the cloud asks yggd to stop work on
// a data message it sent. Its wire format is 0.4's:
//
//	{"type": "command", "message_id": "<id>", "version": 1, "sent": "…",
//	 "content": {"command": "cancel",
//	             "arguments": {"directive": "<handler>", "messageID": "<id of the data message>"}}}
//
// A message still waiting in its lane is cancelled by yggd itself: it is
// answered with a negative acknowledgement "cancelled" and never handed.
// A message its worker has taken is the worker's to stop: yggd passes the
// cancel on (Worker.Cancel over gRPC), and the worker answers the message
// as it chooses. 0.4 sends nothing back when the cancel cannot be done;
// yggd answers the command on data/out, response_to the command's id, with
// the negative acknowledgement that says why: cancel-unsupported (a 0.1.x
// worker: no Cancel), cancel-unknown-message (neither waiting nor held by
// the worker: never received, finished, or already cancelled), unknown-directive,
// malformed (an argument missing).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/journal"
)

// CommandCancel is the command that cancels a data message (yggdrasil
// 0.4).
const CommandCancel = "cancel"

// Canceller is implemented by the WorkerConns that can pass a cancel on to
// their worker.
type Canceller interface {
	// Cancel asks the worker to stop work on cancelID, for the cancel
	// command messageID. It returns ErrCancelUnsupported or
	// ErrCancelUnknown when the worker cannot.
	Cancel(ctx context.Context, directive, messageID, cancelID string) error
}

var (
	// ErrCancelUnsupported: the worker has no Cancel (a 0.1.x worker).
	ErrCancelUnsupported = errors.New("the worker does not support cancel")
	// ErrCancelUnknown: the worker holds no such message.
	ErrCancelUnknown = errors.New("the worker holds no such message (never received, finished, or already cancelled)")
)

// cancelTimeout bounds the worker's Cancel call.
const cancelTimeout = 10 * time.Second

// handleCancel carries out a cancel command.
func (r *Router) handleCancel(c *Command) {
	directive, _, _ := c.Content.Arg("directive")
	cancelID, _, _ := c.Content.Arg("messageID")
	fail := func(code ErrorCode, err error) {
		r.refuse(&DeliveryError{Code: code, MessageID: c.MessageID, Directive: directive,
			Err: fmt.Errorf("cancel %s: %w", cancelID, err)}, journal.IfHanding)
	}
	switch {
	case c.MessageID == "":
		r.log.Warn("cancel command dropped: it has no message_id to answer to")
		return
	case cancelID == "":
		fail(CodeMalformed, errors.New("arguments.messageID is missing"))
		return
	case directive == "":
		fail(CodeMalformed, errors.New("arguments.directive is missing"))
		return
	}
	if d, ok := r.unqueue(cancelID); ok {
		r.log.Info("message cancelled before it was handed to its worker", "message_id", cancelID, "directive", d, "cancel_id", c.MessageID)
		r.refuse(&DeliveryError{Code: CodeCancelled, MessageID: cancelID, Directive: d,
			Err: fmt.Errorf("cancelled by command %s before it was handed to its worker", c.MessageID)}, journal.Finish)
		return
	}
	w, ok := r.reg.Lookup(directive)
	if !ok {
		fail(CodeUnknownDirective, fmt.Errorf("no worker handles %q", directive))
		return
	}
	cn, ok := w.Conn.(Canceller)
	if !ok {
		fail(CodeCancelUnsupported, ErrCancelUnsupported)
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, cancelTimeout)
	defer cancel()
	err := cn.Cancel(ctx, directive, c.MessageID, cancelID)
	switch {
	case err == nil:
		r.log.Info("cancel passed to the worker", "message_id", cancelID, "directive", directive, "pid", w.Pid, "cancel_id", c.MessageID)
	case errors.Is(err, ErrCancelUnsupported):
		fail(CodeCancelUnsupported, fmt.Errorf("worker %q (pid %d): %w", directive, w.Pid, err))
	case errors.Is(err, ErrCancelUnknown):
		fail(CodeCancelUnknown, fmt.Errorf("worker %q (pid %d): %w", directive, w.Pid, err))
	default:
		fail(CodeWorkerUnavailable, fmt.Errorf("worker %q (pid %d): %w", directive, w.Pid, err))
	}
}

// unqueue takes id out of the lane it waits in, if it waits in one, and
// returns its directive.
func (r *Router) unqueue(id string) (string, bool) {
	r.lanesMu.Lock()
	defer r.lanesMu.Unlock()
	for directive, l := range r.lanes {
		if i := slices.Index(l.waiting, id); i >= 0 {
			l.waiting = slices.Delete(l.waiting, i, i+1)
			return directive, true
		}
	}
	return "", false
}
