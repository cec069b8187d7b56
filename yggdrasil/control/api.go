// Package control is yggd's local control socket: an HTTP/JSON API on a
// UNIX socket that only root, yggd's own user and an optional group may
// use, and the client that ygg and the e2e suite use on it. The JSON types
// below are shared by both sides and are a documented interface: fields are
// added, never renamed or removed, while Version stays 1; the paths start
// with /v1/.
//
// Threat model: trusted are root, the user yggd runs as, and the members of
// the configured control group; every other local process is not. The
// socket file is mode 0600 (0660 with a group), and the peer's credentials
// are read with SO_PEERCRED when a connection is accepted, before any byte
// of a request is read: a connection from anyone else is closed, whatever
// the file's mode turns out to be.
package control

import (
	"encoding/json"
	"time"
)

// Version is the version of the JSON documents served under /v1/.
const Version = 1

// Connection states, as Connection.State reports them.
const (
	StateConnected    = "connected"
	StateConnecting   = "connecting"   // before the first connection
	StateReconnecting = "reconnecting" // after a connection ended or an attempt failed
	StateOffline      = "offline-by-command"
	StateStopping     = "stopping"
)

// Worker states, as Worker.State reports them.
const (
	WorkerStarting = "starting"
	WorkerRunning  = "running"
	WorkerBackoff  = "backoff" // its process exited; the next start waits for the backoff delay
	WorkerFailed   = "failed"  // given up on (not produced by this yggd: it retries forever)
	WorkerStopped  = "stopped"
	WorkerDisabled = "disabled" // its settings say enabled = false: not started
)

// Status is the document of GET /v1/status.
type Status struct {
	Version    int        `json:"version"`
	PID        int        `json:"pid"` // yggd's
	Connection Connection `json:"connection"`
	Identity   Identity   `json:"identity"`
	Workers    []Worker   `json:"workers"`
	Queue      Queue      `json:"queue"`
	Counters   Counters   `json:"counters"`
	Events     EventsInfo `json:"events"`
}

// EventsInfo is about the event stream.
type EventsInfo struct {
	Watchers int `json:"watchers"` // clients following GET /v1/events
}

// Connection is what the MQTT transport does.
type Connection struct {
	State          string    `json:"state"`
	Broker         string    `json:"broker,omitempty"` // while connected
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	LastError      string    `json:"last_error,omitempty"` // the last failure to connect or loss of connection
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
	Reconnects     int       `json:"reconnects"` // connections made after the first one
	NextRetry      time.Time `json:"next_retry,omitzero"`
}

// Identity is who yggd is to the broker.
type Identity struct {
	ClientID  string    `json:"client_id"`
	Subject   string    `json:"subject,omitempty"` // of the client certificate, when one is used
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
}

// Worker is one worker executable and the handlers its processes
// registered. A handler registered by no supervised executable is listed
// under an empty Name.
type Worker struct {
	Name       string            `json:"name"` // file name in the worker directory
	Handlers   []string          `json:"handlers"`
	PID        int               `json:"pid,omitempty"`
	State      string            `json:"state"`
	Restarts   int               `json:"restarts"`
	LastExit   string            `json:"last_exit,omitempty"` // "exit status 1", "signal: killed"
	LastExitAt time.Time         `json:"last_exit_at,omitzero"`
	LastError  string            `json:"last_error,omitempty"` // why the last process could not start or ended badly
	Detached   bool              `json:"detached"`
	Features   map[string]string `json:"features,omitempty"`
}

// Failing reports whether w is down and not on its way up by itself.
func (w Worker) Failing() bool { return w.State == WorkerBackoff || w.State == WorkerFailed }

// Queue is the answers waiting for the broker.
type Queue struct {
	Answers int    `json:"answers"`
	Bytes   int    `json:"bytes"`
	Dropped uint64 `json:"dropped"` // past queue-max-count or queue-max-bytes
}

// Counters are the router's counters since yggd's core started.
type Counters struct {
	Received   uint64 `json:"received"`   // data messages received
	Delivered  uint64 `json:"delivered"`  // handed to a worker
	Duplicates uint64 `json:"duplicates"` // dropped as redelivered
	Rejected   uint64 `json:"rejected"`   // answered with a negative acknowledgement
	// RejectedByCode splits Rejected by the code of the negative
	// acknowledgement (README: the codes); codes never used are absent.
	RejectedByCode map[string]uint64 `json:"rejected_by_code,omitempty"`
	Answers        uint64            `json:"answers"` // worker answers queued for the cloud
}

// Workers is the document of GET /v1/workers.
type Workers struct {
	Version int      `json:"version"`
	Workers []Worker `json:"workers"`
}

// LogLevel is the body of PUT /v1/log-level and the document of GET
// /v1/log-level.
type LogLevel struct {
	Level string `json:"level"` // error, warn, info, debug, trace
}

// DispatchRequest is the body of POST /v1/dispatch: a data message for a
// local worker, made up on the host instead of sent by the cloud.
type DispatchRequest struct {
	Directive string            `json:"directive"`
	Content   json.RawMessage   `json:"content,omitempty"` // any JSON; null when absent
	Metadata  map[string]string `json:"metadata,omitempty"`
	// Answers is how many answers to wait for; 0 ends the exchange once
	// the worker has taken the message.
	Answers int `json:"answers"`
	// Timeout bounds the wait for the answers, as a Go duration ("30s");
	// default DefaultDispatchWait.
	Timeout string `json:"timeout,omitempty"`
}

// DefaultDispatchWait is how long POST /v1/dispatch waits for answers by
// default.
const DefaultDispatchWait = time.Minute

// Kinds of the lines of POST /v1/dispatch's answer.
const (
	DispatchDelivered = "delivered" // the worker took the message; always the first line, unless rejected
	DispatchRejected  = "rejected"  // it was refused, with the code the cloud would have got; the last line
	DispatchAnswer    = "answer"    // one answer of the worker
	DispatchTimeout   = "timeout"   // fewer answers than asked for came within the timeout; the last line
)

// DispatchLine is one line of the answer of POST /v1/dispatch, a stream of
// JSON lines (application/x-ndjson) that ends when Answers answers have
// come, at a rejection, or at the timeout.
type DispatchLine struct {
	Kind      string `json:"kind"`
	MessageID string `json:"message_id"`      // of the message dispatched
	Code      string `json:"code,omitempty"`  // of a rejection
	Error     string `json:"error,omitempty"` // of a rejection
	// Answer is the worker's answer, as the cloud would have received
	// it on data/out.
	Answer json.RawMessage `json:"answer,omitempty"`
}

// Refused is the error of a Config.Dispatch that refuses a message, with
// the code of the negative acknowledgement the cloud would have got.
type Refused struct {
	Code    string
	Message string
}

func (e *Refused) Error() string { return e.Code + ": " + e.Message }

// Error is the body of every answer that is not 2xx.
type Error struct {
	Error string `json:"error"`
}
