package sim

// This file emulates cloud-connector's REST interface (v1 and v2) under
// CloudConnectorPath.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

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

func (s *Server) onlineHosts() []Host {
	var out []Host
	for _, h := range s.Hosts() {
		if h.Online() {
			out = append(out, h)
		}
	}
	return out
}

func (s *Server) v2Connections(r *http.Request) (int, any, error) {
	hosts := s.onlineHosts()
	from, to, links, err := paginate(r, len(hosts))
	if err != nil {
		return 0, nil, err
	}
	data := make([]Connection, 0, to-from)
	for _, h := range hosts[from:to] {
		data = append(data, s.connection(h))
	}
	return http.StatusOK, page{Meta: pageMeta{Count: len(hosts)}, Links: links, Data: data}, nil
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
	if hosts := s.onlineHosts(); len(hosts) > 0 {
		ac := accountConnections{Account: s.Account}
		for _, h := range hosts {
			ac.Connections = append(ac.Connections, h.ID)
		}
		all = append(all, ac)
	}
	from, to, links, err := paginate(r, len(all))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, page{Meta: pageMeta{Count: len(all)}, Links: links, Data: append([]accountConnections{}, all[from:to]...)}, nil
}

func (s *Server) v1AccountConnections(r *http.Request) (int, any, error) {
	ids := []string{}
	if r.PathValue("account") == s.Account {
		for _, h := range s.onlineHosts() {
			ids = append(ids, h.ID)
		}
	}
	from, to, links, err := paginate(r, len(ids))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, page{Meta: pageMeta{Count: len(ids)}, Links: links, Data: ids[from:to]}, nil
}
