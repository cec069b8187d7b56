package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// MaxDispatchWait bounds the timeout of a local dispatch.
const MaxDispatchWait = 24 * time.Hour

// dispatch serves POST /v1/dispatch: it hands the message to its worker
// and streams back, one JSON line each, "delivered" or "rejected", then
// the worker's answers as they come, until there are as many as asked
// for, the timeout, or the client leaves.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Dispatch == nil {
		writeJSON(w, http.StatusNotImplemented, Error{"this yggd does not dispatch local messages"})
		return
	}
	req, wait, err := readDispatch(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Error{err.Error()})
		return
	}
	q := answerQueue{max: req.Answers, ready: make(chan struct{}, 1)}
	id, done, err := s.cfg.Dispatch(req, q.push)
	if done != nil {
		defer done()
	}
	var refused *Refused
	switch {
	case errors.As(err, &refused):
		s.log.Info("local dispatch refused", "message_id", id, "directive", req.Directive, "code", refused.Code, "error", refused.Message)
		writeLines(w, DispatchLine{Kind: DispatchRejected, MessageID: id, Code: refused.Code, Error: refused.Message})
		return
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, Error{err.Error()})
		return
	}
	s.log.Info("local dispatch delivered", "message_id", id, "directive", req.Directive)
	enc, flush := writeLines(w, DispatchLine{Kind: DispatchDelivered, MessageID: id})
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for n := 0; n < req.Answers; {
		select {
		case <-r.Context().Done():
			return
		case <-timer.C:
			enc.Encode(DispatchLine{Kind: DispatchTimeout, MessageID: id,
				Error: fmt.Sprintf("%d of %d answers within %s", n, req.Answers, wait)})
			return
		case <-q.ready:
		}
		for _, a := range q.take() {
			n++
			if enc.Encode(DispatchLine{Kind: DispatchAnswer, MessageID: id, Answer: a}) != nil {
				return
			}
		}
		if flush() != nil {
			return
		}
	}
}

// readDispatch reads and checks a DispatchRequest.
func readDispatch(body io.Reader) (DispatchRequest, time.Duration, error) {
	var req DispatchRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, 0, fmt.Errorf("read body: %w", err)
	}
	wait := DefaultDispatchWait
	switch {
	case strings.TrimSpace(req.Directive) == "":
		return req, 0, errors.New("directive is empty")
	case req.Answers < 0:
		return req, 0, fmt.Errorf("answers: %d is negative", req.Answers)
	case req.Timeout != "":
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 || d > MaxDispatchWait {
			return req, 0, fmt.Errorf("timeout: %q is not a duration between 0 and %s", req.Timeout, MaxDispatchWait)
		}
		wait = d
	}
	if len(req.Content) == 0 {
		req.Content = json.RawMessage("null")
	}
	return req, wait, nil
}

// writeLines starts a 200 answer of JSON lines with first and returns the
// encoder and flush for the rest.
func writeLines(w http.ResponseWriter, first DispatchLine) (*json.Encoder, func() error) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.Encode(first)
	flush := http.NewResponseController(w).Flush
	flush()
	return enc, flush
}

// answerQueue takes a worker's answers without blocking it, up to the
// number asked for; it drops the rest.
type answerQueue struct {
	max   int
	mu    sync.Mutex
	seen  int
	items []json.RawMessage
	ready chan struct{} // capacity 1: there are items
}

func (q *answerQueue) push(a json.RawMessage) {
	q.mu.Lock()
	if q.seen == q.max {
		q.mu.Unlock()
		return
	}
	q.seen++
	q.items = append(q.items, a)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *answerQueue) take() []json.RawMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}
