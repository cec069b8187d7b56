package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
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

// Connection is a host as cloud-connector's v2 API shows it.
type Connection struct {
	Account        string          `json:"account"`
	OrgID          string          `json:"org_id"`
	ClientID       string          `json:"client_id"`
	CanonicalFacts json.RawMessage `json:"canonical_facts"`
	Dispatchers    json.RawMessage `json:"dispatchers"`
	Tags           json.RawMessage `json:"tags"`
	Status         string          `json:"status,omitempty"` // "connected" or "disconnected"; only in the status answer
}

// Connection states in the cloud-connector API.
const (
	StatusConnected    = "connected"
	StatusDisconnected = "disconnected"
)

// handlerFunc is an API handler: it returns the status and the value to
// write as JSON, or an error (an *APIError, or anything else for a 500).
type handlerFunc func(r *http.Request) (int, any, error)

func (s *Server) newAPI() http.Handler {
	mux := http.NewServeMux()
	cc := func(pattern string, h handlerFunc) {
		method, path, _ := cutPattern(pattern)
		mux.Handle(method+" "+CloudConnectorPath+path, s.serveJSON(s.authorize(h)))
	}
	own := func(pattern string, h handlerFunc) {
		method, path, _ := cutPattern(pattern)
		mux.Handle(method+" "+SimPath+path, s.serveJSON(h))
	}
	cc("POST /v2/connections/{client_id}/message", s.v2Message)
	cc("GET /v2/connections/{client_id}/status", s.v2Status)
	cc("GET /v2/connections", s.v2Connections)
	cc("POST /v1/message", s.v1Message)
	cc("POST /v1/connection/status", s.v1Status)
	cc("POST /v1/connection_status", s.v1Status)
	cc("POST /v1/connection/ping", s.v1Ping)
	cc("POST /v1/connection/reconnect", s.v1Reconnect)
	cc("POST /v1/connection/disconnect", s.v1Disconnect)
	cc("GET /v1/connection", s.v1Connections)
	cc("GET /v1/connection/{account}", s.v1AccountConnections)

	own("GET /info", s.simInfo)
	own("GET /hosts", func(*http.Request) (int, any, error) { return http.StatusOK, s.Hosts(), nil })
	own("GET /hosts/{id}", s.simHost)
	own("GET /hosts/{id}/messages", s.simHostMessages)
	own("POST /hosts/{id}/ping", s.simPing)
	own("GET /answers/{id}", s.simAnswer)
	own("GET /messages", s.simMessages)
	own("POST /publish", s.simPublish)
	own("GET /refusals", func(*http.Request) (int, any, error) { return http.StatusOK, s.Refusals(), nil })
	own("POST /broker/stop", s.simBrokerStop)
	own("POST /broker/start", s.simBrokerStart)
	own("GET /network", s.simNetwork)
	own("POST /network/{action}", s.simNetworkAction)
	mux.HandleFunc("GET "+SimPath+"/events", s.simEvents)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			writeError(w, notFoundOrMethod(mux, r))
			return
		}
		mux.ServeHTTP(w, r)
	})
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

// authorize enforces the pre-shared key when one is configured. Without
// one, any caller is accepted, with or without identity headers.
func (s *Server) authorize(h handlerFunc) handlerFunc {
	return func(r *http.Request) (int, any, error) {
		if s.PSK == "" {
			return h(r)
		}
		id := r.Header.Get("x-rh-cloud-connector-client-id")
		psk := r.Header.Get("x-rh-cloud-connector-psk")
		if id == "" || psk != s.PSK {
			return 0, nil, apiError(http.StatusUnauthorized, "a pre-shared key is required: x-rh-cloud-connector-client-id and x-rh-cloud-connector-psk")
		}
		return h(r)
	}
}

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

func (s *Server) connection(h Host) Connection {
	orEmpty := func(raw json.RawMessage) json.RawMessage {
		if len(raw) == 0 || string(raw) == "null" {
			return json.RawMessage("{}")
		}
		return raw
	}
	return Connection{Account: s.Account, OrgID: s.OrgID, ClientID: h.ID,
		CanonicalFacts: orEmpty(h.CanonicalFacts), Dispatchers: orEmpty(h.Dispatchers), Tags: orEmpty(h.Tags)}
}

// messageRequest is the body of v2's message endpoint (and v1's, which adds
// account and recipient).
type messageRequest struct {
	Account   string            `json:"account"`
	Recipient string            `json:"recipient"`
	Directive string            `json:"directive"`
	Payload   json.RawMessage   `json:"payload"`
	Metadata  map[string]string `json:"metadata"`
}

type idResponse struct {
	ID string `json:"id"`
}

func (s *Server) sendMessage(r *http.Request, host string, req messageRequest) (int, any, error) {
	if req.Directive == "" {
		return 0, nil, apiError(http.StatusBadRequest, "directive is required")
	}
	if _, err := s.connected(host); err != nil {
		return 0, nil, err
	}
	id, err := s.SendData(r.Context(), host, req.Directive, req.Metadata, req.Payload)
	if err != nil {
		return 0, nil, brokerError(err)
	}
	return http.StatusCreated, idResponse{id}, nil
}

// brokerError maps a publish failure: a stopped broker is a 503.
func brokerError(err error) error {
	if errors.Is(err, ErrBrokerStopped) {
		return apiError(http.StatusServiceUnavailable, "%v", err)
	}
	return err
}

func (s *Server) v2Message(r *http.Request) (int, any, error) {
	var req messageRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	return s.sendMessage(r, r.PathValue("client_id"), req)
}

func (s *Server) v2Status(r *http.Request) (int, any, error) {
	h, ok := s.Host(r.PathValue("client_id"))
	if !ok {
		return 0, nil, apiError(http.StatusNotFound, "client %q is unknown", r.PathValue("client_id"))
	}
	c := s.connection(h)
	c.Status = StatusDisconnected
	if h.Online() {
		c.Status = StatusConnected
	}
	return http.StatusOK, c, nil
}

// page is a paginated answer.
type page struct {
	Meta  pageMeta          `json:"meta"`
	Links map[string]string `json:"links"`
	Data  any               `json:"data"`
}

type pageMeta struct {
	Count int `json:"count"`
}

// paginate reads limit and offset (defaults 1000 and 0) and cuts n items.
func paginate(r *http.Request, n int) (from, to int, links map[string]string, err error) {
	limit, offset := 1000, 0
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			return 0, 0, nil, apiError(http.StatusBadRequest, "limit %q is not a positive integer", v)
		}
	}
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, nil, apiError(http.StatusBadRequest, "offset %q is not a non-negative integer", v)
		}
	}
	link := func(off int) string {
		u := url.URL{Path: r.URL.Path, RawQuery: url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(off)}}.Encode()}
		return u.String()
	}
	last := 0
	if n > 0 {
		last = (n - 1) / limit * limit
	}
	links = map[string]string{"first": link(0), "last": link(last)}
	if offset+limit < n {
		links["next"] = link(offset + limit)
	}
	if offset > 0 {
		links["prev"] = link(max(0, offset-limit))
	}
	from, to = min(offset, n), min(offset+limit, n)
	return from, to, links, nil
}

// onlineIDs returns the ids of every online host, sorted.
func (s *Server) onlineIDs() []string { return s.registry.onlineIDs(0, math.MaxInt) }

func (s *Server) v2Connections(r *http.Request) (int, any, error) {
	n := s.registry.onlineCount()
	from, to, links, err := paginate(r, n)
	if err != nil {
		return 0, nil, err
	}
	hosts := s.registry.onlinePage(from, to)
	data := make([]Connection, 0, len(hosts))
	for _, h := range hosts {
		data = append(data, s.connection(h))
	}
	return http.StatusOK, page{Meta: pageMeta{Count: n}, Links: links, Data: data}, nil
}

func (s *Server) v1Message(r *http.Request) (int, any, error) {
	var req messageRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	if req.Recipient == "" {
		return 0, nil, apiError(http.StatusBadRequest, "recipient is required")
	}
	return s.sendMessage(r, req.Recipient, req)
}

// nodeRequest is the body of v1's connection endpoints.
type nodeRequest struct {
	Account string `json:"account"`
	NodeID  string `json:"node_id"`
	Delay   *int   `json:"delay"`
	Message string `json:"message"`
}

func decodeNode(r *http.Request) (nodeRequest, error) {
	var req nodeRequest
	if err := decodeBody(r, &req); err != nil {
		return req, err
	}
	if req.NodeID == "" {
		return req, apiError(http.StatusBadRequest, "node_id is required")
	}
	return req, nil
}

type v1StatusResponse struct {
	Status         string          `json:"status"`
	Dispatchers    json.RawMessage `json:"dispatchers,omitempty"`
	CanonicalFacts json.RawMessage `json:"canonical_facts,omitempty"`
	Tags           json.RawMessage `json:"tags,omitempty"`
}

func (s *Server) v1Status(r *http.Request) (int, any, error) {
	req, err := decodeNode(r)
	if err != nil {
		return 0, nil, err
	}
	h, ok := s.Host(req.NodeID)
	if !ok || !h.Online() {
		return http.StatusOK, v1StatusResponse{Status: StatusDisconnected}, nil
	}
	c := s.connection(h)
	return http.StatusOK, v1StatusResponse{Status: StatusConnected, Dispatchers: c.Dispatchers,
		CanonicalFacts: c.CanonicalFacts, Tags: c.Tags}, nil
}

type v1PingResponse struct {
	Status  string `json:"status"`
	Payload any    `json:"payload"`
}

// v1Ping sends a ping and, unlike cloud-connector, waits (?timeout,
// default 10s) for the pong, which it returns as the payload.
func (s *Server) v1Ping(r *http.Request) (int, any, error) {
	req, err := decodeNode(r)
	if err != nil {
		return 0, nil, err
	}
	if _, err := s.connected(req.NodeID); err != nil {
		return http.StatusOK, v1PingResponse{Status: StatusDisconnected, Payload: map[string]any{}}, nil
	}
	res, err := s.ping(r, req.NodeID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, v1PingResponse{Status: StatusConnected, Payload: res}, nil
}

func (s *Server) v1Reconnect(r *http.Request) (int, any, error) {
	req, err := decodeNode(r)
	if err != nil {
		return 0, nil, err
	}
	if req.Delay == nil || *req.Delay < 0 {
		return 0, nil, apiError(http.StatusBadRequest, "delay is required and must be at least 0")
	}
	return s.command(r, req.NodeID, yggdrasil.CommandReconnect, map[string]string{"delay": strconv.Itoa(*req.Delay)})
}

func (s *Server) v1Disconnect(r *http.Request) (int, any, error) {
	req, err := decodeNode(r)
	if err != nil {
		return 0, nil, err
	}
	return s.command(r, req.NodeID, yggdrasil.CommandDisconnect, nil)
}

func (s *Server) command(r *http.Request, host, command string, args map[string]string) (int, any, error) {
	if _, err := s.connected(host); err != nil {
		return 0, nil, err
	}
	id, err := s.SendCommand(r.Context(), host, command, args)
	if err != nil {
		return 0, nil, brokerError(err)
	}
	return http.StatusOK, idResponse{id}, nil
}

type accountConnections struct {
	Account     string   `json:"account"`
	Connections []string `json:"connections"`
}

func (s *Server) v1Connections(r *http.Request) (int, any, error) {
	var all []accountConnections
	if ids := s.onlineIDs(); len(ids) > 0 {
		all = append(all, accountConnections{Account: s.Account, Connections: ids})
	}
	from, to, links, err := paginate(r, len(all))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, page{Meta: pageMeta{Count: len(all)}, Links: links, Data: append([]accountConnections{}, all[from:to]...)}, nil
}

func (s *Server) v1AccountConnections(r *http.Request) (int, any, error) {
	n := 0
	if r.PathValue("account") == s.Account {
		n = s.registry.onlineCount()
	}
	from, to, links, err := paginate(r, n)
	if err != nil {
		return 0, nil, err
	}
	ids := []string{}
	if n > 0 {
		ids = s.registry.onlineIDs(from, to)
	}
	return http.StatusOK, page{Meta: pageMeta{Count: n}, Links: links, Data: ids}, nil
}

// Info describes a running sim.
type Info struct {
	MQTT          string   `json:"mqtt"`
	MQTTS         string   `json:"mqtts,omitempty"`
	API           string   `json:"api,omitempty"`
	Prefix        string   `json:"prefix"`
	BrokerRunning bool     `json:"broker_running"`
	External      bool     `json:"external_broker,omitempty"`
	Network       NetState `json:"network,omitzero"`
	LastSeq       int64    `json:"last_seq"`
}

// Info returns the sim's addresses and state.
func (s *Server) Info() Info {
	i := Info{MQTT: s.BrokerURL(), MQTTS: s.TLSBrokerURL(), API: s.APIURL(), Prefix: s.Prefix,
		BrokerRunning: s.BrokerRunning(), External: s.ext != nil, LastSeq: s.LastSeq()}
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

func (s *Server) simHostMessages(r *http.Request) (int, any, error) {
	msgs, ok := s.HostMessages(r.PathValue("id"))
	if !ok {
		return 0, nil, apiError(http.StatusNotFound, "host %q is unknown", r.PathValue("id"))
	}
	return http.StatusOK, msgs, nil
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
func sinceParam(r *http.Request) (int64, error) {
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

func (s *Server) simMessages(r *http.Request) (int, any, error) {
	since, err := sinceParam(r)
	if err != nil {
		return 0, nil, err
	}
	msgs := s.Messages(since)
	if msgs == nil {
		msgs = []Message{}
	}
	return http.StatusOK, msgs, nil
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

// simEvents streams every message after ?since as server-sent events:
// "id: <seq>", "event: message", "data: <message JSON>".
func (s *Server) simEvents(w http.ResponseWriter, r *http.Request) {
	since, err := sinceParam(r)
	if err != nil {
		writeError(w, err.(*APIError))
		return
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			since = n
		}
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, apiError(http.StatusInternalServerError, "streaming is not supported"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, ": yggsim traffic\n\n")
	flusher.Flush()
	s.Watch(r.Context(), since, func(m Message) bool {
		b, err := json.Marshal(m)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: message\ndata: %s\n\n", m.Seq, b); err != nil {
			return false
		}
		flusher.Flush()
		return true
	})
}
