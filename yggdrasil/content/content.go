// Package content moves detached content over HTTP: it fetches the content
// of a message for a worker registered with detached_content from the URL
// the message holds, and POSTs the answers whose directive is a URL.
//
// Unlike 0.1.x, whose HTTP client had no overall deadline, no retry and no
// size limit, and logged every body at info level, every fetch here has a
// total deadline (a server that stalls or trickles cannot hold a goroutine),
// a body limit, a few redirects at most and never from https to http, and
// retries 5xx and connection errors with backoff; answers are POSTed in the
// background (the worker's Send is not held) with bounded retries; bodies
// are never logged.
package content

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/internal/grpcbuf"
)

// Config configures a Client. Zero values mean the defaults.
type Config struct {
	TLS       *tls.Config   // client certificate and roots for https URLs
	DataHost  string        // when set, replaces the host (and port) of every URL
	Timeout   time.Duration // total time for one fetch or one POST attempt; default 30 s
	MaxSize   int           // largest body fetched; default yggdrasil.DefaultMaxMessageSize
	Retries   int           // further attempts after a transient failure; default 3 (fetch), 5 (post)
	Backoff   time.Duration // first delay between attempts, doubling; default 250 ms
	UserAgent string        // default "yggdrasil"
	Log       *slog.Logger
}

// Client fetches and posts detached content.
type Client struct {
	cfg   Config
	log   *slog.Logger
	http  *http.Client
	posts sync.WaitGroup
	slots chan struct{} // bounds the POSTs in flight
	// base is the lifetime of background POSTs; Close ends it.
	base   context.Context
	cancel context.CancelFunc
}

// maxPosts bounds the POSTs in flight.
const maxPosts = 16

// MaxRedirects is how many redirects a fetch follows.
const MaxRedirects = 3

// New returns a client.
func New(cfg Config) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = yggdrasil.DefaultMaxMessageSize
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 250 * time.Millisecond
	}
	// data-host is a host[:port]; a URL is accepted too, for its host.
	if u, err := url.Parse(cfg.DataHost); err == nil && u.Host != "" {
		cfg.DataHost = u.Host
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "yggdrasil"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = cfg.TLS
	transport.ResponseHeaderTimeout = cfg.Timeout
	// Keep as many connections to a host as POSTs may be in flight
	// (slots): the default of 2 closed and dialled one again for most
	// requests once 4 round trips were in flight.
	transport.MaxIdleConnsPerHost = maxPosts
	base, cancel := context.WithCancel(context.Background())
	return &Client{
		base:   base,
		cancel: cancel,
		cfg:    cfg,
		log:    log,
		slots:  make(chan struct{}, maxPosts),
		http: &http.Client{
			Transport: transport,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) > MaxRedirects {
					return fmt.Errorf("more than %d redirects", MaxRedirects)
				}
				if via[len(via)-1].URL.Scheme == "https" && req.URL.Scheme != "https" {
					return fmt.Errorf("redirect from https to %s refused", req.URL.Scheme)
				}
				return nil
			},
		},
	}
}

// Close waits for the POSTs in flight until ctx ends, then cancels the
// rest (they are logged as lost) and waits for them to return.
func (c *Client) Close(ctx context.Context) {
	done := make(chan struct{})
	go func() { c.posts.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		c.cancel()
		<-done
	}
	c.cancel()
}

// permanent marks a failure that retrying will not mend.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Fetch returns the body at the URL that d's content holds (a JSON string).
// A failure is a *yggdrasil.DeliveryError: malformed when the content is
// not a JSON string, content-fetch-failed otherwise.
func (c *Client) Fetch(ctx context.Context, d *yggdrasil.Data) ([]byte, error) {
	var raw string
	if err := json.Unmarshal(d.Content, &raw); err != nil {
		return nil, &yggdrasil.DeliveryError{Code: yggdrasil.CodeMalformed, MessageID: d.MessageID, Directive: d.Directive,
			Err: errors.New("detached content must be a JSON string holding a URL")}
	}
	u, err := c.target(raw)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var body []byte
	err = c.retry(ctx, c.retries(3), func() error {
		var err error
		body, err = c.get(ctx, u)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u.Redacted(), err)
	}
	return body, nil
}

func (c *Client) get(ctx context.Context, u *url.URL) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, permanent{err}
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		if strings.Contains(err.Error(), "redirect") {
			return nil, permanent{err}
		}
		return nil, err
	}
	defer resp.Body.Close()
	if err := statusError(resp); err != nil {
		return nil, err
	}
	if resp.ContentLength > int64(c.cfg.MaxSize) {
		return nil, permanent{fmt.Errorf("body of %d bytes is larger than the limit of %d", resp.ContentLength, c.cfg.MaxSize)}
	}
	body, err := readBody(resp, c.cfg.MaxSize)
	if err != nil {
		return nil, err
	}
	return body, nil
}

// readBody reads resp's body, at most max bytes. A body of a known length
// is read into one buffer of that size: io.ReadAll would grow its buffer
// by doubling, allocating and copying about twice a MiB body, and hand
// back up to twice the memory it needs. A large one comes from the pool
// of large buffers, to which Release returns it once the worker has it.
func readBody(resp *http.Response, max int) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 {
		body := grpcbuf.GetLarge(int(n))
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			grpcbuf.ReleaseLarge(body)
			return nil, fmt.Errorf("read body: %w", err)
		}
		return body, nil
	}
	body, err := readUnsized(resp.Body, max)
	if err != nil {
		return nil, err
	}
	return body, nil
}

// readUnsized reads a body of unknown length (chunked), at most max
// bytes. It grows its buffer by doubling, as io.ReadAll does, but takes
// each larger buffer from the pool of large buffers and gives the one it
// outgrew back, so that a large body leaves no trail of garbage behind.
func readUnsized(r io.Reader, max int) ([]byte, error) {
	buf := make([]byte, 0, 4<<10)
	for {
		if len(buf) > max { // read one byte more than allowed: too large
			grpcbuf.ReleaseLarge(buf)
			return nil, permanent{fmt.Errorf("body is larger than the limit of %d bytes", max)}
		}
		if len(buf) == cap(buf) {
			next := grpcbuf.GetLarge(min(2*cap(buf), max+1))
			next = next[:copy(next, buf)]
			grpcbuf.ReleaseLarge(buf)
			buf = next
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), max+1)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF && len(buf) <= max:
			return buf, nil
		case err == io.EOF:
			continue // too large, said above
		case err != nil:
			grpcbuf.ReleaseLarge(buf)
			return nil, fmt.Errorf("read body: %w", err)
		}
	}
}

// statusError turns an HTTP status of 400 or more into an error: 4xx is
// permanent, 5xx transient.
func statusError(resp *http.Response) error {
	if resp.StatusCode < 400 {
		return nil
	}
	err := fmt.Errorf("server answered %s", resp.Status)
	if resp.StatusCode < 500 {
		return permanent{err}
	}
	return err
}

// Release takes back a body that Fetch returned, once nothing uses it any
// more (the worker's Send has returned without error): its memory serves
// a later fetch or answer. A body that did not come from Fetch is left
// alone.
func (c *Client) Release(body []byte) { grpcbuf.ReleaseLarge(body) }

// Post sends d's content to the URL in its directive, in the background
// (so it does not hold the worker's Send); it returns at once unless the URL
// is unusable. The content belongs to the client from then on: once the
// POST is over, its memory may serve a later fetch or answer (when it is
// one of the large buffers the worker's answer was decoded into).
func (c *Client) Post(_ context.Context, d *yggdrasil.Data) error {
	u, err := c.target(d.Directive)
	if err != nil {
		return err
	}
	c.posts.Go(func() {
		c.slots <- struct{}{}
		defer func() { <-c.slots }()
		log := c.log.With("message_id", d.MessageID, "response_to", d.ResponseTo, "url", u.Redacted())
		var bodies bodies
		err := c.retry(c.base, c.retries(5), func() error { return c.post(c.base, u, d, &bodies) })
		if bodies.closed() {
			grpcbuf.ReleaseLarge(d.Content)
		}
		if err != nil {
			log.Error("answer lost: POST failed", "error", err)
			return
		}
		log.Debug("answer posted")
	})
	return nil
}

// bodies counts the request bodies made of one answer's content that the
// HTTP transport has not closed yet: it may go on reading a body after
// Do has returned, so the content is released only when all are closed
// (or, in the rare case one is still open, left to the GC).
type bodies struct{ open atomic.Int32 }

func (b *bodies) reader(content []byte) io.ReadCloser {
	b.open.Add(1)
	return &body{r: bytes.NewReader(content), done: b}
}

func (b *bodies) closed() bool { return b.open.Load() == 0 }

// body is a request body that tells bodies when it is closed. HTTP/2
// closes a request body from another goroutine than the one that reads
// it (on an early response or an aborted stream), so Close waits for a
// Read under way and no Read reads after Close: once every body is
// closed, nothing reads the content any more.
type body struct {
	mu     sync.Mutex
	r      *bytes.Reader
	done   *bodies
	closed bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	return b.r.Read(p)
}

func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.done.open.Add(-1)
	}
	return nil
}

var errBodyClosed = errors.New("request body read after it was closed")

func (c *Client) post(ctx context.Context, u *url.URL, d *yggdrasil.Data, bodies *bodies) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.ReadCloser = http.NoBody
	if len(d.Content) > 0 {
		rd = bodies.reader(d.Content) // a bytes.Reader over the content, not a copy
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), rd)
	if err != nil {
		rd.Close()
		return permanent{err}
	}
	if len(d.Content) > 0 {
		// What NewRequest sets by itself for a *bytes.Reader.
		req.ContentLength = int64(len(d.Content))
		req.GetBody = func() (io.ReadCloser, error) { return bodies.reader(d.Content), nil }
	}
	for k, v := range d.Metadata {
		req.Header.Set(k, strings.TrimSpace(v))
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return statusError(resp)
}

func (c *Client) retries(def int) int {
	if c.cfg.Retries > 0 {
		return c.cfg.Retries
	}
	return def
}

// retry runs attempt until it succeeds, fails permanently, ctx ends, or
// retries are used up, sleeping a doubling backoff between attempts.
func (c *Client) retry(ctx context.Context, retries int, attempt func() error) error {
	delay := c.cfg.Backoff
	for i := 0; ; i++ {
		err := attempt()
		var p permanent
		switch {
		case err == nil:
			return nil
		case errors.As(err, &p):
			return p.error
		case ctx.Err() != nil:
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		case i == retries:
			return fmt.Errorf("%w (after %d attempts)", err, i+1)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// target parses an absolute http(s) URL and applies the data host.
func (c *Client) target(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse URL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("URL %q is not an absolute http or https URL", raw)
	}
	if c.cfg.DataHost != "" {
		u.Host = c.cfg.DataHost
	}
	return u, nil
}
