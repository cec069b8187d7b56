package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// API paths.
const (
	// CloudConnectorPath is the base of the cloud-connector emulation.
	CloudConnectorPath = "/api/cloud-connector"
	// SimPath is the base of the sim's own endpoints.
	SimPath = "/api/sim"
)

// maxBody is cloud-connector's request body limit.
const maxBody = 1 << 20

// defaultWait is how long the waiting endpoints wait without ?timeout.
const defaultWait = 10 * time.Second

// APIError is the body of every error answer, in cloud-connector's shape.
type APIError struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Title, e.Detail) }

func apiError(status int, format string, args ...any) *APIError {
	return &APIError{Title: http.StatusText(status), Status: status, Detail: fmt.Sprintf(format, args...)}
}

// handlerFunc is an API handler: it returns the status and the value to
// write as JSON, or an error (an *APIError, or anything else for a 500).
type handlerFunc func(r *http.Request) (int, any, error)

func (s *Server) newAPI() http.Handler {
	mux := http.NewServeMux()
	own := func(pattern string, h handlerFunc) {
		method, path, _ := cutPattern(pattern)
		mux.Handle(method+" "+SimPath+path, s.serveJSON(h))
	}
	s.mountCloudConnector(mux)

	own("GET /info", s.simInfo)
	own("GET /hosts", func(*http.Request) (int, any, error) { return http.StatusOK, s.Hosts(), nil })
	own("GET /hosts/{id}", s.simHost)
	mux.HandleFunc("GET "+SimPath+"/hosts/{id}/messages", s.simHostMessages)
	own("POST /hosts/{id}/ping", s.simPing)
	own("GET /answers/{id}", s.simAnswer)
	mux.HandleFunc("GET "+SimPath+"/messages", s.simMessages)
	own("POST /publish", s.simPublish)
	own("GET /refusals", func(*http.Request) (int, any, error) { return http.StatusOK, s.Refusals(), nil })
	own("POST /broker/stop", s.simBrokerStop)
	own("POST /broker/start", s.simBrokerStart)
	own("GET /network", s.simNetwork)
	own("POST /network/{action}", s.simNetworkAction)
	mux.HandleFunc("GET "+SimPath+"/events", s.simEvents)
	s.handlePage(mux) // the web page at "/"

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkSameSite(r); err != nil {
			writeError(w, err)
			return
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			writeError(w, notFoundOrMethod(mux, r))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// checkSameSite refuses requests that a web page on another site can
// make. The API has no key by default and drives real hosts: any page
// could POST /api/sim/publish as a simple (no-cors) request, and with DNS
// rebinding read the traffic. So a request whose Origin is present and
// is not the API's own (scheme://Host) is refused, and so is a Host that
// is not an IP literal or "localhost" (a rebound name). The sim's page
// (same origin) and curl or the CLI (no Origin) are not affected.
func checkSameSite(r *http.Request) *APIError {
	host := r.Host
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if net.ParseIP(name) == nil && !strings.EqualFold(name, "localhost") {
		return apiError(http.StatusForbidden, "host %q is refused: use the API by IP address or localhost", host)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if !strings.EqualFold(origin, scheme+"://"+host) {
		return apiError(http.StatusForbidden, "cross-origin request from %q is refused: the API serves only its own origin %s://%s", origin, scheme, host)
	}
	return nil
}

func cutPattern(p string) (method, path string, ok bool) {
	for i := range len(p) {
		if p[i] == ' ' {
			return p[:i], p[i+1:], true
		}
	}
	return "", p, false
}

// notFoundOrMethod tells an unknown path from a known path used with the
// wrong method, in the JSON error shape.
func notFoundOrMethod(mux *http.ServeMux, r *http.Request) *APIError {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := mux.Handler(r2); pattern != "" {
			return apiError(http.StatusMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path)
		}
	}
	return apiError(http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
}

func (s *Server) serveJSON(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, v, err := h(r)
		if err != nil {
			var ae *APIError
			if !errors.As(err, &ae) {
				s.log.Error("api", "method", r.Method, "path", r.URL.Path, "error", err)
				ae = apiError(http.StatusInternalServerError, "%v", err)
			}
			writeError(w, ae)
			return
		}
		writeJSON(w, status, v)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *APIError) { writeJSON(w, e.Status, e) }

// decodeBody decodes a JSON request body of at most 1 MiB.
func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return apiError(http.StatusBadRequest, "read body: %v", err)
	}
	if len(body) > maxBody {
		return apiError(http.StatusBadRequest, "body is larger than %d bytes", maxBody)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return apiError(http.StatusBadRequest, "decode body: %v", err)
	}
	return nil
}

// connected returns host id if it is connected, or a 404.
func (s *Server) connected(id string) (Host, error) {
	h, ok := s.Host(id)
	if !ok || !h.Online() {
		return Host{}, apiError(http.StatusNotFound, "client %q is not connected", id)
	}
	return h, nil
}

// brokerError maps a publish failure: a stopped broker is a 503.
func brokerError(err error) error {
	if errors.Is(err, ErrBrokerStopped) {
		return apiError(http.StatusServiceUnavailable, "%v", err)
	}
	return err
}

// Info describes a running sim.
type Info struct {
	MQTT          string       `json:"mqtt"`
	MQTTS         string       `json:"mqtts,omitempty"`
	API           string       `json:"api,omitempty"`
	Prefix        string       `json:"prefix"`
	BrokerRunning bool         `json:"broker_running"`
	External      bool         `json:"external_broker,omitempty"`
	Network       NetState     `json:"network,omitzero"`
	LastSeq       int64        `json:"last_seq"`
	Journal       JournalStats `json:"journal"`
}

// Info returns the sim's addresses and state.
func (s *Server) Info() Info {
	i := Info{MQTT: s.BrokerURL(), MQTTS: s.TLSBrokerURL(), API: s.APIURL(), Prefix: s.Prefix,
		BrokerRunning: s.BrokerRunning(), External: s.ext != nil, LastSeq: s.LastSeq(), Journal: s.Journal()}
	if st, err := s.NetworkState(); err == nil {
		i.Network = st
	}
	return i
}

func (s *Server) simInfo(*http.Request) (int, any, error) { return http.StatusOK, s.Info(), nil }

func (s *Server) simHost(r *http.Request) (int, any, error) {
	h, ok := s.Host(r.PathValue("id"))
	if !ok {
		return 0, nil, apiError(http.StatusNotFound, "host %q is unknown", r.PathValue("id"))
	}
	return http.StatusOK, h, nil
}

// simHostMessages answers a page of the host's history after ?since, at
// most ?limit messages, in the shape of MessagePage.
func (s *Server) simHostMessages(w http.ResponseWriter, r *http.Request) {
	since, limit, err := pageParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	seqs, ok := s.registry.history(r.PathValue("id"))
	if !ok {
		writeError(w, apiError(http.StatusNotFound, "host %q is unknown", r.PathValue("id")))
		return
	}
	st := s.journal.stats()
	reset := since > st.Last // from another journal: the sim restarted
	if reset {
		since = 0
	}
	for len(seqs) > 0 && seqs[0] <= since {
		seqs = seqs[1:]
	}
	held := s.journal.lookup(seqs)
	s.writeMessagePage(w, held, limit, since, st.Oldest, st.Last, int64(len(seqs)-len(held)), reset)
}

// waitTimeout reads ?timeout (a Go duration), default defaultWait.
func waitTimeout(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("timeout")
	if v == "" {
		return defaultWait, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, apiError(http.StatusBadRequest, "timeout %q is not a duration like 5s", v)
	}
	return d, nil
}

// PingResult is the answer of the sim's ping endpoint.
type PingResult struct {
	ID    string        `json:"id"` // the ping command's message id
	Pong  Message       `json:"pong"`
	RTT   time.Duration `json:"rtt_ns"`
	RTTMS float64       `json:"rtt_ms"`
}

func (s *Server) ping(r *http.Request, host string) (PingResult, error) {
	d, err := waitTimeout(r)
	if err != nil {
		return PingResult{}, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	pong, rtt, err := s.Ping(ctx, host)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return PingResult{}, apiError(http.StatusGatewayTimeout, "no pong from %q within %v", host, d)
	case err != nil:
		return PingResult{}, brokerError(err)
	}
	return PingResult{ID: pong.ResponseTo, Pong: pong, RTT: rtt, RTTMS: float64(rtt) / float64(time.Millisecond)}, nil
}

func (s *Server) simPing(r *http.Request) (int, any, error) {
	host := r.PathValue("id")
	if _, err := s.connected(host); err != nil {
		return 0, nil, err
	}
	res, err := s.ping(r, host)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, res, nil
}

func (s *Server) simAnswer(r *http.Request) (int, any, error) {
	d, err := waitTimeout(r)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	m, err := s.AwaitAnswer(ctx, r.PathValue("id"))
	if err != nil {
		if d == 0 {
			return 0, nil, apiError(http.StatusNotFound, "no answer to %q", r.PathValue("id"))
		}
		return 0, nil, apiError(http.StatusGatewayTimeout, "no answer to %q within %v", r.PathValue("id"), d)
	}
	return http.StatusOK, m, nil
}

// sinceParam reads ?since, a message Seq (default 0).
func sinceParam(r *http.Request) (int64, *APIError) {
	v := r.URL.Query().Get("since")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, apiError(http.StatusBadRequest, "since %q is not a message sequence number", v)
	}
	return n, nil
}

// defaultPageLimit is the messages in a page without ?limit.
const defaultPageLimit = 1000

// pageMaxBytes ends a page of messages early, after the message that
// takes its encoding beyond it: a page holds at least one message.
const pageMaxBytes = 4 << 20

// limitParam reads ?limit, the messages in a page (default 1000).
func limitParam(r *http.Request) (int, *APIError) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return defaultPageLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, apiError(http.StatusBadRequest, "limit %q is not a positive integer", v)
	}
	return n, nil
}

// pageParams reads ?since and ?limit.
func pageParams(r *http.Request) (since int64, limit int, err *APIError) {
	if since, err = sinceParam(r); err != nil {
		return 0, 0, err
	}
	limit, err = limitParam(r)
	return since, limit, err
}

// MessagePage is one page of recorded messages: the answer of
// /api/sim/messages and /api/sim/hosts/{id}/messages.
type MessagePage struct {
	Messages []Message `json:"messages"`
	// Next is the ?since of the next page: the Seq of the page's last
	// message, or the since asked for when the page is empty.
	Next int64 `json:"next"`
	// More is true when messages after this page are already recorded.
	More bool `json:"more"`
	// OldestSeq is the oldest message the journal still holds; LastSeq
	// the latest recorded.
	OldestSeq int64 `json:"oldest_seq"`
	LastSeq   int64 `json:"last_seq"`
	// Missed counts messages after the since asked for that were dropped
	// (to keep the journal's bounds) before this read: the reader fell
	// behind, and the page starts at the oldest message still held.
	Missed int64 `json:"missed,omitempty"`
	// Reset is true when the since asked for is beyond LastSeq: it came
	// from another journal (the sim restarted), and the page starts at the
	// oldest message held.
	Reset bool `json:"reset,omitempty"`
}

// simMessages answers a page of the journal after ?since, at most ?limit
// messages, in the shape of MessagePage.
func (s *Server) simMessages(w http.ResponseWriter, r *http.Request) {
	since, limit, err := pageParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	win := s.journal.read(since, limit+1) // one more tells whether there are more
	if win.reset {
		since = win.oldest - 1
	}
	s.writeMessagePage(w, win.entries, limit, since, win.oldest, win.last, win.missed, win.reset)
}

// writeMessagePage writes a MessagePage of the first entries (at most
// limit, and at most pageMaxBytes of them but one) from their shared
// encodings.
func (s *Server) writeMessagePage(w http.ResponseWriter, entries []*entry, limit int, since, oldest, last, missed int64, reset bool) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	s.writeDeadline(w) // a page is at most pageMaxBytes and one message
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString(`{"messages":[`)
	next, n, size := since, 0, 0
	for _, e := range entries {
		if n == limit || (n > 0 && size >= pageMaxBytes) {
			break
		}
		b := s.journal.encoded(e)
		if n > 0 {
			bw.WriteByte(',')
		}
		bw.Write(b)
		next, size = e.msg.Seq, size+len(b)
		n++
	}
	fmt.Fprintf(bw, `],"next":%d,"more":%t,"oldest_seq":%d,"last_seq":%d`, next, n < len(entries), oldest, last)
	if missed > 0 {
		fmt.Fprintf(bw, `,"missed":%d`, missed)
	}
	if reset {
		bw.WriteString(`,"reset":true`)
	}
	bw.WriteString("}\n")
	bw.Flush()
}

// PublishRequest is the body of the sim's publish endpoint: Payload is sent
// as its JSON text, or PayloadText as is.
type PublishRequest struct {
	Topic       string          `json:"topic"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	PayloadText *string         `json:"payload_text,omitempty"`
	QoS         *byte           `json:"qos,omitempty"` // default 1
	Retain      bool            `json:"retain,omitempty"`
}

func (s *Server) simPublish(r *http.Request) (int, any, error) {
	var req PublishRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	payload := []byte(req.Payload)
	if req.PayloadText != nil {
		payload = []byte(*req.PayloadText)
	}
	qos := byte(1)
	if req.QoS != nil {
		qos = *req.QoS
	}
	if req.Topic == "" || qos > 2 {
		return 0, nil, apiError(http.StatusBadRequest, "topic is required and qos must be 0, 1 or 2")
	}
	if err := s.Publish(r.Context(), req.Topic, payload, qos, req.Retain); err != nil {
		if errors.Is(err, ErrBrokerStopped) {
			return 0, nil, brokerError(err)
		}
		return 0, nil, apiError(http.StatusBadRequest, "%v", err)
	}
	return http.StatusOK, map[string]any{}, nil
}

func (s *Server) simBrokerStop(r *http.Request) (int, any, error) {
	lose, _ := strconv.ParseBool(r.URL.Query().Get("lose_sessions"))
	if err := s.StopBroker(lose); err != nil {
		return 0, nil, apiError(http.StatusConflict, "%v", err)
	}
	return http.StatusOK, s.Info(), nil
}

func (s *Server) simBrokerStart(*http.Request) (int, any, error) {
	if err := s.StartBroker(); err != nil {
		if errors.Is(err, ErrNotSupported) {
			return 0, nil, apiError(http.StatusConflict, "%v", err)
		}
		return 0, nil, err
	}
	return http.StatusOK, s.Info(), nil
}

func (s *Server) simNetwork(*http.Request) (int, any, error) {
	st, err := s.NetworkState()
	if err != nil {
		return 0, nil, apiError(http.StatusConflict, "%v", err)
	}
	return http.StatusOK, st, nil
}

// simNetworkAction applies cut, blackhole, heal or delay (?d=200ms).
func (s *Server) simNetworkAction(r *http.Request) (int, any, error) {
	var err error
	switch a := r.PathValue("action"); a {
	case "cut":
		err = s.Network(NetCut)
	case "blackhole":
		err = s.Network(NetBlackhole)
	case "heal":
		err = s.Network(NetHealthy)
	case "delay":
		d, perr := time.ParseDuration(r.URL.Query().Get("d"))
		if perr != nil || d < 0 {
			return 0, nil, apiError(http.StatusBadRequest, "delay needs ?d=, a duration like 200ms")
		}
		err = s.Delay(d)
	default:
		return 0, nil, apiError(http.StatusNotFound, "no network action %q: want cut, blackhole, heal or delay", a)
	}
	if err != nil {
		return 0, nil, apiError(http.StatusConflict, "%v", err)
	}
	return s.simNetwork(r)
}

// API timeouts, the defaults of Server.APIReadHeaderTimeout and
// Server.APIWriteTimeout.
const (
	DefaultAPIReadHeaderTimeout = 10 * time.Second
	DefaultAPIWriteTimeout      = 30 * time.Second
)

// writeDeadline gives the next writes to w until the API's write timeout;
// a reader that stopped reading then fails them and the handler returns,
// releasing what it holds.
func (s *Server) writeDeadline(w http.ResponseWriter) {
	// An error means the writer cannot take deadlines (a recorder in tests).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.APIWriteTimeout))
}

// simEvents streams the messages after ?since (or Last-Event-ID) as
// server-sent events: "id: <seq>", "event: message", "data: <message
// JSON>". At most ?limit (default 1000) of the messages already recorded
// when the stream starts are replayed: when there were more, the stream
// ends with "event: more" (its id the last seq sent, data {"next": seq}),
// and the client reconnects with Last-Event-ID for the next page, as an
// EventSource does by itself. Once replayed, the stream follows new
// messages until the client leaves. A reader that fell behind (messages
// after its position were dropped to keep the journal's bounds) gets
// "event: behind", data {"since","oldest_seq","missed"}, and goes on from
// the oldest message held. A since beyond the latest message recorded
// (a client of a sim that restarted) gets "event: reset", data
// {"since","oldest_seq","last_seq"}, and goes on from the oldest message
// held. A Last-Event-ID that is not a sequence number >= 0 is ignored. Each message is encoded once, whatever the
// number of readers.
func (s *Server) simEvents(w http.ResponseWriter, r *http.Request) {
	since, limit, perr := pageParams(r)
	if perr != nil {
		writeError(w, perr)
		return
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		// An id that is not a sequence number is ignored: ?since holds.
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			since = n
		}
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, apiError(http.StatusInternalServerError, "streaming is not supported"))
		return
	}
	s.streams.Add(1)
	defer s.streams.Add(-1)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	s.writeDeadline(w)
	io.WriteString(w, ": yggsim traffic\nretry: 1000\n\n")
	flusher.Flush()
	replayEnd, replayed := s.journal.last(), 0
	bw := bufio.NewWriterSize(w, 32<<10)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	}
	for {
		win := s.journal.read(since, awaitBatch)
		s.writeDeadline(w) // for this batch's writes and flush
		more := s.writeEvents(bw, win, &since, replayEnd, &replayed, limit)
		if err := flush(); err != nil || !more {
			return
		}
		if len(win.entries) == awaitBatch {
			continue
		}
		select {
		case <-r.Context().Done():
			return
		case <-win.changed:
		}
	}
}

// writeEvents writes the events of win after *since, moving *since on;
// it returns false when the stream must end: a page of replay is done
// (after "event: more"), or the client left.
func (s *Server) writeEvents(bw *bufio.Writer, win window, since *int64, replayEnd int64, replayed *int, limit int) bool {
	if win.reset {
		if _, err := fmt.Fprintf(bw, "event: reset\ndata: {\"since\":%d,\"oldest_seq\":%d,\"last_seq\":%d}\n\n", *since, win.oldest, win.last); err != nil {
			return false
		}
		*since = win.oldest - 1
	}
	if win.missed > 0 {
		if _, err := fmt.Fprintf(bw, "event: behind\ndata: {\"since\":%d,\"oldest_seq\":%d,\"missed\":%d}\n\n", *since, win.oldest, win.missed); err != nil {
			return false
		}
	}
	for _, e := range win.entries {
		if e.msg.Seq <= replayEnd {
			if *replayed == limit {
				fmt.Fprintf(bw, "id: %d\nevent: more\ndata: {\"next\":%d}\n\n", *since, *since)
				return false
			}
			*replayed++
		}
		if _, err := fmt.Fprintf(bw, "id: %d\nevent: message\ndata: %s\n\n", e.msg.Seq, s.journal.encoded(e)); err != nil {
			return false
		}
		*since = e.msg.Seq
	}
	return true
}
