package yggdrasil

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Message types, the "type" field of every message.
const (
	TypeConnectionStatus = "connection-status"
	TypeCommand          = "command"
	TypeEvent            = "event"
	TypeData             = "data"
)

// Version is the only protocol version there is.
const Version = 1

// Connection states of a ConnectionStatus.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// Commands the cloud sends on control/in.
const (
	CommandPing       = "ping"
	CommandDisconnect = "disconnect"
	CommandReconnect  = "reconnect"
)

// EventPong is the content of the event that answers a ping.
const EventPong = "pong"

// Data is a data message, in both directions (data/in and data/out). Content
// is kept as the exact JSON text it arrived as: a worker receives those bytes,
// and the bytes a worker returns are written back verbatim.
type Data struct {
	Type       string            `json:"type"`
	MessageID  string            `json:"message_id"`
	ResponseTo string            `json:"response_to"`
	Version    int               `json:"version"`
	Sent       time.Time         `json:"sent"`
	Directive  string            `json:"directive"`
	Metadata   map[string]string `json:"metadata"`
	Content    json.RawMessage   `json:"content"`
}

// Command is a control message from the cloud.
type Command struct {
	Type       string         `json:"type"`
	MessageID  string         `json:"message_id"`
	ResponseTo string         `json:"response_to"`
	Version    int            `json:"version"`
	Sent       time.Time      `json:"sent"`
	Content    CommandContent `json:"content"`
}

// CommandContent is the content of a Command. Arguments are kept raw because
// clouds disagree on their types ("delay" is a string in cloud-connector's
// code and a number in its README).
type CommandContent struct {
	Command   string                     `json:"command"`
	Arguments map[string]json.RawMessage `json:"arguments,omitempty"`
}

// Arg returns the argument name as a string: a JSON string unquoted, or a
// JSON number as written. ok is false when the argument is absent or null.
func (c CommandContent) Arg(name string) (value string, ok bool, err error) {
	raw, found := c.Arguments[name]
	if !found || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), true, nil
	}
	return "", false, fmt.Errorf("argument %q: want a string or a number, got %s", name, raw)
}

// Event is a control message to the cloud; 0.1.x sends only "pong".
type Event struct {
	Type       string    `json:"type"`
	MessageID  string    `json:"message_id"`
	ResponseTo string    `json:"response_to"`
	Version    int       `json:"version"`
	Sent       time.Time `json:"sent"`
	Content    string    `json:"content"`
}

// ConnectionStatus tells the cloud whether this host is online, what it is
// (canonical facts) and which workers it has (dispatchers).
type ConnectionStatus struct {
	Type       string        `json:"type"`
	MessageID  string        `json:"message_id"`
	ResponseTo string        `json:"response_to"`
	Version    int           `json:"version"`
	Sent       time.Time     `json:"sent"`
	Content    StatusContent `json:"content"`
}

// StatusContent is the content of a ConnectionStatus. Dispatchers maps each
// registered handler to its features (nil when it registered none).
type StatusContent struct {
	CanonicalFacts CanonicalFacts               `json:"canonical_facts"`
	Dispatchers    map[string]map[string]string `json:"dispatchers"`
	State          string                       `json:"state"`
}

// CanonicalFacts identify a host. All seven keys are always present.
type CanonicalFacts struct {
	InsightsID            string   `json:"insights_id"`
	MachineID             string   `json:"machine_id"`
	BIOSUUID              string   `json:"bios_uuid"`
	SubscriptionManagerID string   `json:"subscription_manager_id"`
	IPAddresses           []string `json:"ip_addresses"`
	MACAddresses          []string `json:"mac_addresses"`
	FQDN                  string   `json:"fqdn"`
}

// NewMessageID returns a random (version 4) UUID in canonical lower-case form.
func NewMessageID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand documents it)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NewCommand builds a command message with a fresh id, as the cloud does.
func NewCommand(command string, args map[string]string) Command {
	c := Command{Type: TypeCommand, MessageID: NewMessageID(), Version: Version, Sent: time.Now(),
		Content: CommandContent{Command: command}}
	if len(args) > 0 {
		c.Content.Arguments = make(map[string]json.RawMessage, len(args))
		for k, v := range args {
			c.Content.Arguments[k] = json.RawMessage(strconv.Quote(v))
		}
	}
	return c
}

// ErrorCode names why a data message could not be delivered. It is sent to
// the cloud as the metadata value "yggdrasil-error" of a negative
// acknowledgement.
type ErrorCode string

// The negative-acknowledgement codes.
const (
	CodeMalformed          ErrorCode = "malformed"
	CodeUnsupportedVersion ErrorCode = "unsupported-version"
	CodeUnknownDirective   ErrorCode = "unknown-directive"
	CodeWorkerUnavailable  ErrorCode = "worker-unavailable"
	CodeWorkerTimeout      ErrorCode = "worker-timeout"
	CodeTooLarge           ErrorCode = "too-large"
	CodeContentFetchFailed ErrorCode = "content-fetch-failed"
	// CodeInterrupted: yggd stopped (or died) while handing the message
	// to its worker; the worker may or may not have taken it, and it is
	// not run again.
	CodeInterrupted ErrorCode = "interrupted"
	// CodeCancelled: a cancel command cancelled the message before it was
	// handed to its worker.
	CodeCancelled ErrorCode = "cancelled"
	// CodeCancelUnsupported answers a cancel command (response_to is the
	// command's id): the worker does not support cancel (0.1.x workers).
	CodeCancelUnsupported ErrorCode = "cancel-unsupported"
	// CodeCancelUnknown answers a cancel command: the message is neither
	// waiting in yggd nor held by its worker (never received, finished, or
	// already cancelled).
	CodeCancelUnknown ErrorCode = "cancel-unknown-message"
	// CodeInvalidAnswer: the worker took the message but its answer was
	// refused (content not JSON, over max-message-size, no message_id or
	// directive); the worker is told so too, and may send a valid one.
	CodeInvalidAnswer ErrorCode = "invalid-answer"
	// CodeWorkerFailed is sent by the worker, not by yggd: the Go SDK's
	// Receive panicked or returned an error (yggdrasil/worker). The
	// message may have run in part; the worker keeps serving.
	CodeWorkerFailed ErrorCode = "worker-failed"
)

// MetadataError is the metadata key that marks a negative acknowledgement.
const MetadataError = "yggdrasil-error"

// DeliveryError says why a message was not delivered. MessageID and
// Directive are whatever could be read from the message.
type DeliveryError struct {
	Code      ErrorCode
	MessageID string
	Directive string
	Err       error
}

func (e *DeliveryError) Error() string {
	return fmt.Sprintf("%s: %v", e.Code, e.Err)
}

func (e *DeliveryError) Unwrap() error { return e.Err }
