// Package content is a fake of the HTTP side of detached content: it serves
// payloads to GET (from a directory or set with Put) and records every POST
// (the replies yggd posts to a URL directive), and it can be told to
// misbehave the ways real servers do: 404, 500, stall before answering,
// trickle the body, loop on redirects, or send a body larger than a limit.
//
// The zero Server is ready to Start on 127.0.0.1:0; tests and yggsim share
// it.
package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mode says how the server answers every request (POSTs are recorded in
// every mode before the answer).
type Mode string

// The modes.
const (
	ModeOK           Mode = "ok"            // serve the payload, record the POST
	ModeNotFound     Mode = "404"           // answer 404
	ModeError        Mode = "500"           // answer 500
	ModeSlow         Mode = "slow"          // stall for Stall before answering normally
	ModeTrickle      Mode = "trickle"       // send the body one byte every TrickleInterval
	ModeRedirectLoop Mode = "redirect-loop" // redirect to itself, forever
	ModeLarge        Mode = "large"         // answer GET with a body of LargeSize bytes
)

// Modes lists every mode, for usage messages.
var Modes = []Mode{ModeOK, ModeNotFound, ModeError, ModeSlow, ModeTrickle, ModeRedirectLoop, ModeLarge}

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown content mode %q (want one of %v)", s, Modes)
}

// Post is one recorded POST (or PUT) request.
type Post struct {
	Time   time.Time   `json:"time"`
	Method string      `json:"method"`
	Path   string      `json:"path"` // with the query, if any
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
}

// String prints a post as content-posts does: the request line, the
// headers sorted, a blank line, the body.
func (p Post) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", p.Method, p.Path)
	keys := make([]string, 0, len(p.Header))
	for k := range p.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range p.Header[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	b.Write(p.Body)
	if len(p.Body) > 0 && p.Body[len(p.Body)-1] != '\n' {
		b.WriteString("\n")
	}
	return b.String()
}

// Server is the fake content server. Exported fields are its settings,
// read when needed; change them before Start or through the methods.
type Server struct {
	Dir    string       // directory served to GET; "" serves only what Put set
	Addr   string       // listen address; "" means 127.0.0.1:0
	Logger *slog.Logger // nil means slog.Default()

	Stall           time.Duration // ModeSlow's stall; 0 means one minute (or until the client gives up)
	TrickleInterval time.Duration // ModeTrickle's pause between bytes; 0 means 100ms
	LargeSize       int64         // ModeLarge's body size; 0 means 64 MiB + 1
	MaxPostSize     int64         // POST bodies larger than this are cut and answered 413; 0 means 64 MiB

	mu       sync.Mutex
	mode     Mode
	payloads map[string][]byte
	posts    []Post
	notify   chan struct{}
	ln       net.Listener
	srv      *http.Server
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closed   bool
}

// Start listens and serves in the background until Close.
func (s *Server) Start() error {
	addr := s.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("start content server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.init()
	s.ln, s.cancel = ln, cancel
	s.srv = &http.Server{Handler: s, BaseContext: func(net.Listener) context.Context { return ctx }}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger().Error("serve content", "error", err)
		}
	}()
	return nil
}

func (s *Server) init() {
	if s.payloads == nil {
		s.payloads = map[string][]byte{}
	}
	if s.notify == nil {
		s.notify = make(chan struct{})
	}
	if s.mode == "" {
		s.mode = ModeOK
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Close stops the server, ending stalled and trickling answers.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed || s.srv == nil {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	err := s.srv.Close()
	s.wg.Wait()
	return err
}

// URL returns the server's base URL, without a final slash.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// SetMode changes how the server answers from now on.
func (s *Server) SetMode(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// Mode returns the current mode.
func (s *Server) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	return s.mode
}

// Put makes GET p (a path like "/a/b") answer body, and returns its URL.
// It takes precedence over Dir.
func (s *Server) Put(p string, body []byte) string {
	p = "/" + strings.TrimPrefix(path.Clean("/"+p), "/")
	s.mu.Lock()
	s.init()
	s.payloads[p] = append([]byte(nil), body...)
	s.mu.Unlock()
	return s.URL() + p
}

// Posts returns the recorded POSTs, oldest first.
func (s *Server) Posts() []Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Post(nil), s.posts...)
}

// AwaitPosts waits until at least n POSTs are recorded and returns them
// all; on timeout it returns those it has with the context's error.
func (s *Server) AwaitPosts(ctx context.Context, n int) ([]Post, error) {
	for {
		s.mu.Lock()
		s.init()
		posts, notify := append([]Post(nil), s.posts...), s.notify
		s.mu.Unlock()
		if len(posts) >= n {
			return posts, nil
		}
		select {
		case <-ctx.Done():
			return posts, fmt.Errorf("wait for %d posts, have %d: %w", n, len(posts), ctx.Err())
		case <-notify:
		}
	}
}

func (s *Server) settings() (Mode, time.Duration, time.Duration, int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	stall, trickle, large, maxPost := s.Stall, s.TrickleInterval, s.LargeSize, s.MaxPostSize
	if stall <= 0 {
		stall = time.Minute
	}
	if trickle <= 0 {
		trickle = 100 * time.Millisecond
	}
	if large <= 0 {
		large = 64<<20 + 1
	}
	if maxPost <= 0 {
		maxPost = 64 << 20
	}
	return s.mode, stall, trickle, large, maxPost
}

// ServeHTTP answers one request according to the mode.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mode, stall, trickle, large, maxPost := s.settings()
	log := s.logger().With("component", "content", "method", r.Method, "path", r.URL.Path, "mode", mode)
	tooLarge := false
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		body, err := readPost(r, maxPost)
		if err != nil {
			log.Warn("read post body", "error", err)
		}
		if int64(len(body)) > maxPost {
			body, tooLarge = body[:maxPost], true
		}
		p := Post{Time: time.Now(), Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body}
		s.mu.Lock()
		s.posts = append(s.posts, p)
		close(s.notify)
		s.notify = make(chan struct{})
		s.mu.Unlock()
		log.Info("post recorded", "bytes", len(body))
	}
	switch mode {
	case ModeNotFound:
		http.Error(w, "not found (content mode 404)", http.StatusNotFound)
		return
	case ModeError:
		http.Error(w, "internal server error (content mode 500)", http.StatusInternalServerError)
		return
	case ModeRedirectLoop:
		n, _ := strconv.Atoi(r.URL.Query().Get("loop"))
		u := url.URL{Path: r.URL.Path, RawQuery: url.Values{"loop": {strconv.Itoa(n + 1)}}.Encode()}
		http.Redirect(w, r, u.String(), http.StatusFound)
		return
	case ModeSlow:
		t := time.NewTimer(stall)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if tooLarge {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if mode == ModeLarge {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(large, 10))
		io.CopyN(w, repeatReader('x'), large)
		return
	}
	body, ok := s.payload(r.URL.Path)
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if mode != ModeTrickle {
		w.Write(body)
		return
	}
	flusher, _ := w.(http.Flusher)
	for i := range body {
		if _, err := w.Write(body[i : i+1]); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		t := time.NewTimer(trickle)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
}

// readPost reads r's body, at most max+1 bytes (one more than allowed, so
// that the caller sees it is too large). A body of a known length within
// max is read into one buffer of that size: io.ReadAll grows its buffer by
// doubling, which for a 1 MiB body allocated, cleared and copied about
// twice that, a third of the bench's CPU in this server at detached-1m.
func readPost(r *http.Request, max int64) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= max {
		body := make([]byte, n)
		m, err := io.ReadFull(r.Body, body)
		return body[:m], err
	}
	return io.ReadAll(io.LimitReader(r.Body, max+1))
}

// payload finds p among the Put payloads, then in Dir.
func (s *Server) payload(p string) ([]byte, bool) {
	p = path.Clean("/" + p)
	s.mu.Lock()
	body, ok := s.payloads[p]
	s.mu.Unlock()
	if ok {
		return body, true
	}
	if s.Dir == "" {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, filepath.FromSlash(p)))
	if err != nil {
		return nil, false
	}
	return b, true
}

type repeatReader byte

func (b repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}
