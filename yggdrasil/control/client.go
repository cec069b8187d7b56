package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
)

// ErrNotAllowed is returned by a Client's methods when yggd refuses this
// process: the socket's mode (EACCES at connect) or the peer check at
// accept (the connection is closed at once).
var ErrNotAllowed = errors.New("not allowed: only root, yggd's user and the members of control-group may use the control socket")

// ErrNotRunning is returned when nothing listens on the socket.
var ErrNotRunning = errors.New("yggd is not running (no control socket)")

// Client talks to yggd's control socket.
type Client struct {
	path string
	http *http.Client
}

// Dial returns a client of the socket at path. It connects at each
// request, so that it does not fail when yggd is not running yet.
func Dial(path string) *Client {
	var d net.Dialer
	return &Client{path: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}}
}

// Path returns the socket's path.
func (c *Client) Path() string { return c.path }

// Status returns yggd's state (GET /v1/status).
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Workers returns yggd's workers (GET /v1/workers).
func (c *Client) Workers(ctx context.Context) ([]Worker, error) {
	var ws Workers
	err := c.do(ctx, http.MethodGet, "/v1/workers", nil, &ws)
	return ws.Workers, err
}

// LogLevel returns yggd's log level (GET /v1/log-level).
func (c *Client) LogLevel(ctx context.Context) (string, error) {
	var out LogLevel
	err := c.do(ctx, http.MethodGet, "/v1/log-level", nil, &out)
	return out.Level, err
}

// Metrics returns yggd's metrics in the Prometheus text format (GET
// /metrics).
func (c *Client) Metrics(ctx context.Context) (string, error) {
	b, err := c.request(ctx, http.MethodGet, "/metrics", nil)
	return string(b), err
}

// SetLogLevel changes yggd's log level (PUT /v1/log-level) and returns
// the level in force.
func (c *Client) SetLogLevel(ctx context.Context, level string) (string, error) {
	var out LogLevel
	err := c.do(ctx, http.MethodPut, "/v1/log-level", LogLevel{Level: level}, &out)
	return out.Level, err
}

// Dispatch sends a local message (POST /v1/dispatch) and passes each line
// of the answer to line as it comes, until the stream ends. It returns
// ErrStreamEnded when the stream ends before its last line ("rejected",
// "timeout", or the answers asked for).
func (c *Client) Dispatch(ctx context.Context, req DispatchRequest, line func(DispatchLine)) error {
	answers := 0
	return c.stream(ctx, http.MethodPost, "/v1/dispatch", req, func(dec *json.Decoder) error {
		var l DispatchLine
		if err := dec.Decode(&l); err != nil {
			return err
		}
		line(l)
		switch l.Kind {
		case DispatchRejected, DispatchTimeout:
			return errDone
		case DispatchAnswer:
			answers++
		}
		if answers == req.Answers {
			return errDone
		}
		return nil
	})
}

// Events passes yggd's last past events (GET /v1/events) to event, then,
// with follow, the events as they happen until ctx ends (it then returns
// nil) or yggd ends the stream (ErrStreamEnded).
func (c *Client) Events(ctx context.Context, last int, follow bool, event func(Event)) error {
	err := c.stream(ctx, http.MethodGet, fmt.Sprintf("/v1/events?last=%d&follow=%t", last, follow), nil, func(dec *json.Decoder) error {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if !follow && errors.Is(err, io.EOF) {
				return errDone
			}
			return err
		}
		event(ev)
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ErrStreamEnded says that yggd ended a stream early: it stopped.
var ErrStreamEnded = errors.New("yggd ended the stream (it stopped?)")

// errDone ends a stream early, as expected.
var errDone = errors.New("done")

// stream sends a request and calls next on the answer's JSON lines until
// it returns errDone or another error.
func (c *Client) stream(ctx context.Context, method, path string, in any, next func(*json.Decoder) error) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return c.failure(method, path, resp)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		err := next(dec)
		switch {
		case errors.Is(err, errDone):
			return nil
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("control socket %s: %s %s: %w", c.path, method, path, ErrStreamEnded)
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("control socket %s: %s %s: %w", c.path, method, path, err)
		}
	}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	b, err := c.request(ctx, method, path, in)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("control socket %s: %s %s: %w", c.path, method, path, err)
	}
	return nil
}

// request sends in (as JSON, unless nil) and returns the body of a 2xx
// answer; any other answer is an error with its message.
func (c *Client) request(ctx context.Context, method, path string, in any) ([]byte, error) {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, c.failure(method, path, resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %s %s: %w", c.path, method, path, err)
	}
	return b, nil
}

// send sends a request with in as its JSON body (none when nil).
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://yggd"+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", c.path, explain(err))
	}
	return resp, nil
}

// failure is the error of an answer that is not 2xx, with its message.
func (c *Client) failure(method, path string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e Error
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = resp.Status
	}
	return fmt.Errorf("control socket %s: %s %s: %s", c.path, method, path, e.Error)
}

// explain gives the errors of a refused or missing socket their meaning.
func explain(err error) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (%w)", ErrNotAllowed, syscall.EACCES)
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return ErrNotRunning
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		strings.Contains(err.Error(), "server closed idle connection"):
		// yggd closes a connection it refuses before reading a byte;
		// net/http reports that on a new connection as an idle one closed.
		return fmt.Errorf("%w (connection closed at once)", ErrNotAllowed)
	}
	return err
}
