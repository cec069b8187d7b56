package yggdcmd

// The control socket's view of yggd: the transport's state as its
// OnState reports it, a Status assembled from the identity, the
// supervisor, the registry and the router when ygg asks, the events of
// all three, and local dispatch through the router.

import (
	"cmp"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
	"github.com/ygglab/yggdrasil/yggdrasil/supervisor"
)

// connState is the connection as the control socket shows it.
type connState struct {
	events    *control.Events
	mu        sync.Mutex
	c         control.Connection
	connected bool // once connected: later waits are reconnecting
}

func newConnState(events *control.Events) *connState {
	return &connState{events: events, c: control.Connection{State: control.StateConnecting}}
}

// publish publishes the connection's state as an event.
func (s *connState) publish(c control.Connection) {
	s.events.Publish(control.Event{Kind: control.EventConnection, Connection: &c})
}

// transportState is (a part of) the transport's Config.OnState.
func (s *connState) transportState(st mqtt.State) {
	now := time.Now()
	s.mu.Lock()
	defer func() {
		c := s.c
		s.mu.Unlock()
		s.publish(c)
	}()
	c := &s.c
	if c.State == control.StateStopping {
		return
	}
	c.NextRetry = time.Time{}
	switch {
	case st.Broker != "":
		if s.connected {
			c.Reconnects++
		}
		s.connected = true
		c.State, c.Broker, c.ConnectedSince = control.StateConnected, st.Broker, now
		return
	case st.Offline:
		c.State = control.StateOffline
	case s.connected:
		c.State = control.StateReconnecting
	default:
		c.State = control.StateConnecting
	}
	c.Broker, c.ConnectedSince = "", time.Time{}
	if st.Err != nil {
		c.LastError, c.LastErrorAt = st.Err.Error(), now
	}
	if st.Retry > 0 {
		c.NextRetry = now.Add(st.Retry)
	}
}

// stopping marks the connection as stopping for good.
func (s *connState) stopping() {
	s.mu.Lock()
	s.c.State, s.c.NextRetry = control.StateStopping, time.Time{}
	c := s.c
	s.mu.Unlock()
	s.publish(c)
}

func (s *connState) get() control.Connection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

// controlStatus returns the Status function of the control socket.
func controlStatus(id *identity, conn *connState, router *yggdrasil.Router, sup *supervisor.Supervisor) func() control.Status {
	return func() control.Status {
		st := control.Status{
			PID:        os.Getpid(),
			Connection: conn.get(),
			Identity:   control.Identity{ClientID: id.clientID},
			Workers:    controlWorkers(sup.Status(), router.Registry()),
		}
		// The pair behind the atomic pointer, not id.leaf: a renewal
		// swaps it while this runs.
		if cert := id.cert.Load(); cert != nil && cert.Leaf != nil {
			st.Identity.Subject = cert.Leaf.Subject.String()
			st.Identity.NotBefore, st.Identity.NotAfter = cert.Leaf.NotBefore, cert.Leaf.NotAfter
		}
		st.Queue.Answers, st.Queue.Bytes = router.Outbox().Len()
		st.Queue.Dropped = router.Outbox().Dropped()
		rs := router.Stats()
		st.Counters = control.Counters{Received: rs.Received, Delivered: rs.Delivered,
			Duplicates: rs.Duplicates, Rejected: rs.Rejected, Answers: rs.Answers}
		if len(rs.RejectedByCode) > 0 {
			st.Counters.RejectedByCode = make(map[string]uint64, len(rs.RejectedByCode))
			for c, n := range rs.RejectedByCode {
				st.Counters.RejectedByCode[string(c)] = n
			}
		}
		return st
	}
}

// controlWorkers joins the supervisor's workers with the handlers their
// processes registered. A handler no supervised worker owns is listed on
// its own, with an empty name.
func controlWorkers(sup []supervisor.WorkerStatus, reg *yggdrasil.Registry) []control.Worker {
	out := make([]control.Worker, 0, len(sup))
	byName := map[string]int{}
	for _, w := range sup {
		byName[w.Name] = len(out)
		out = append(out, controlWorker(w))
	}
	handlers := slices.Sorted(maps.Keys(reg.Dispatchers()))
	for _, h := range handlers {
		rw, ok := reg.Lookup(h)
		if !ok {
			continue // gone since
		}
		i, ok := byName[rw.Owner]
		if rw.Owner == "" || !ok {
			i = len(out)
			out = append(out, control.Worker{Name: rw.Owner, PID: rw.Pid, State: control.WorkerRunning})
		}
		w := &out[i]
		w.Handlers = append(w.Handlers, h)
		w.Detached = w.Detached || rw.Detached
		if len(rw.Features) > 0 {
			if w.Features == nil {
				w.Features = map[string]string{}
			}
			maps.Copy(w.Features, rw.Features)
		}
	}
	slices.SortStableFunc(out, func(a, b control.Worker) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// controlWorker is w as the control socket shows it, its handlers left
// out.
func controlWorker(w supervisor.WorkerStatus) control.Worker {
	cw := control.Worker{Name: w.Name, PID: w.PID, State: workerState(w.State),
		Restarts: max(w.Starts-1, 0), LastExit: w.LastExit, LastExitAt: w.LastExitAt, Handlers: []string{}}
	if w.LastErr != nil {
		cw.LastError = w.LastErr.Error()
	}
	return cw
}

// workerEvent publishes a worker's new state (the supervisor's OnState).
func workerEvent(events *control.Events) func(supervisor.WorkerStatus) {
	return func(w supervisor.WorkerStatus) {
		cw := controlWorker(w)
		events.Publish(control.Event{Kind: control.EventWorker, Worker: &cw, PID: w.PID})
	}
}

// localDispatch is the control socket's Dispatch: the router's, with
// the control API's types.
func localDispatch(router *yggdrasil.Router) func(control.DispatchRequest, func(json.RawMessage)) (string, func(), error) {
	return func(req control.DispatchRequest, answer func(json.RawMessage)) (string, func(), error) {
		d := &yggdrasil.Data{Directive: req.Directive, Metadata: req.Metadata, Content: req.Content}
		done, err := router.DispatchLocal(d, func(a *yggdrasil.Data) {
			if b, err := json.Marshal(a); err == nil {
				answer(b)
			}
		})
		var de *yggdrasil.DeliveryError
		if errors.As(err, &de) {
			return d.MessageID, done, &control.Refused{Code: string(de.Code), Message: de.Err.Error()}
		}
		return d.MessageID, done, err
	}
}

func workerState(s supervisor.State) string {
	switch s {
	case supervisor.StateStarting:
		return control.WorkerStarting
	case supervisor.StateRunning:
		return control.WorkerRunning
	case supervisor.StateRestarting:
		return control.WorkerBackoff
	case supervisor.StateDisabled:
		return control.WorkerDisabled
	}
	return control.WorkerStopped
}
