package sim

// This file emulates cloud-connector's REST interface (v1 and v2) under
// CloudConnectorPath: the routes, their validation, status codes and
// bodies, as RedHatInsights/cloud-connector's handlers give them (its code,
// where its OpenAPI spec says otherwise). The README's "HTTP API" section
// lists each route and every deliberate difference.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// Connection is a host as cloud-connector's v2 API shows it. Empty fields
// are left out, as the real service leaves them out.
type Connection struct {
	Account        string          `json:"account,omitempty"`
	OrgID          string          `json:"org_id,omitempty"`
	ClientID       string          `json:"client_id,omitempty"`
	CanonicalFacts json.RawMessage `json:"canonical_facts,omitempty"`
	Dispatchers    json.RawMessage `json:"dispatchers,omitempty"`
	Tags           json.RawMessage `json:"tags,omitempty"`
}

// ConnectionStatus is the answer of GET /v2/connections/{id}/status: the
// status, then the connection when it is connected.
type ConnectionStatus struct {
	Status string `json:"status"` // StatusConnected or StatusDisconnected
	Connection
}

// Connection states in the cloud-connector API.
const (
	StatusConnected    = "connected"
	StatusDisconnected = "disconnected"
)

// Titles and details of cloud-connector's error answers.
const (
	ccDecodeError      = "Unable to process json input"
	ccMalformed        = "Request body includes malformed json"
	ccMissingFields    = "Request body is missing required fields"
	ccTrailingData     = "Request body must only contain one json object"
	ccEmptyDirective   = "Directive field is empty"
	ccAccountMismatch  = "Account mismatch"
	ccNoConnection     = "No connection to the rhc client"
	ccSendFailed       = "Error passing message to rhc client"
	ccNegativeDelay    = "Delay field cannot be negative"
	ccPingFailed       = "Ping failed"
	ccBadParams        = "Unable to process input parameters"
	ccInvalidRequest   = "Invalid request"
	ccTranslateFailed  = "Unable to translate account to org_id"
	ccTenantNotFound   = "Tenant not found. EAN: %s"
	ccNoNodeConnection = "No connection found for node (%s:%s)"
)

// ccAnswer is a handler's answer: the status and the value to write as
// JSON; a nil body writes none.
type ccAnswer struct {
	status int
	body   any
}

func ccError(status int, title, detail string) ccAnswer {
	return ccAnswer{status, &APIError{Title: title, Status: status, Detail: detail}}
}

// ccRoute is one route. Path segments are literals, {name} (any
// non-empty segment) or {name:digits}.
type ccRoute struct {
	method, path string
	tenant       tenantHeader // the PSK header that names the caller's tenant
	associates   bool         // identity callers must be associates (Turnpike)
	handle       func(r *http.Request, p ccPrincipal) ccAnswer
}

// match reports whether path fits the route, setting its path values.
func (rt ccRoute) match(r *http.Request, path string) bool {
	want, got := strings.Split(rt.path, "/"), strings.Split(path, "/")
	if len(want) != len(got) {
		return false
	}
	vals := map[string]string{}
	for i, w := range want {
		name, isVar := strings.CutPrefix(w, "{")
		if !isVar {
			if w != got[i] {
				return false
			}
			continue
		}
		name = strings.TrimSuffix(name, "}")
		name, digits := strings.CutSuffix(name, ":digits")
		if got[i] == "" || digits && strings.Trim(got[i], "0123456789") != "" {
			return false
		}
		vals[name] = got[i]
	}
	for k, v := range vals {
		r.SetPathValue(k, v)
	}
	return true
}

func (s *Server) ccRoutes() []ccRoute {
	return []ccRoute{
		{"POST", "/v2/connections/{client_id}/message", tenantOrg, false, s.v2Message},
		{"GET", "/v2/connections/{client_id}/status", tenantOrg, false, s.v2Status},
		{"GET", "/v2/connections", tenantOrg, false, s.v2Connections},
		{"POST", "/v1/message", tenantAccount, false, s.v1Message},
		{"POST", "/v1/connection_status", tenantAccount, false, s.v1ConnectionStatus},
		{"GET", "/v1/connection", tenantAccount, true, s.v1Connections},
		{"GET", "/v1/connection/{account:digits}", tenantAccount, true, s.v1AccountConnections},
		{"POST", "/v1/connection/disconnect", tenantAccount, true, s.v1Disconnect},
		{"POST", "/v1/connection/reconnect", tenantAccount, true, s.v1Reconnect},
		{"POST", "/v1/connection/status", tenantAccount, true, s.v1Status},
		{"POST", "/v1/connection/ping", tenantAccount, true, s.v1Ping},
	}
}

// mountCloudConnector routes every request under CloudConnectorPath to
// cloudConnector. Each method is registered on its own: a pattern without
// a method would conflict with a "GET /" in the same mux.
func (s *Server) mountCloudConnector(mux *http.ServeMux) {
	cc := s.cloudConnector()
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		mux.Handle(m+" "+CloudConnectorPath, cc)
		mux.Handle(m+" "+CloudConnectorPath+"/", cc)
	}
}

// cloudConnector serves everything under CloudConnectorPath the way
// cloud-connector's router does: an unknown path is a plain-text 404, a
// known path with another method an empty 405, both before authentication.
func (s *Server) cloudConnector() http.Handler {
	routes := s.ccRoutes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, CloudConnectorPath)
		other := false
		for _, rt := range routes {
			if !rt.match(r, path) {
				continue
			}
			if rt.method != r.Method {
				other = true
				continue
			}
			p, ok := s.authenticate(w, r, rt)
			if !ok {
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			a := rt.handle(r, p)
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			w.WriteHeader(a.status)
			if a.body != nil {
				json.NewEncoder(w).Encode(a.body)
			}
			return
		}
		if other {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		http.NotFound(w, r)
	})
}

// ccRequest is a request body that knows whether its required fields are
// there (cloud-connector's "required": a non-zero value).
type ccRequest interface{ complete() bool }

// decodeCC decodes a body (of at most maxBody bytes: cloudConnector limits
// it) as cloud-connector does, or returns the 400 it answers. A body of
// JSON null makes the real handler panic, so the sim drops the connection
// without an answer too.
func decodeCC(r *http.Request, v ccRequest) (ccAnswer, bool) {
	dec := json.NewDecoder(r.Body)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return ccError(http.StatusBadRequest, ccDecodeError, ccMalformed), false
	}
	if bytes.Equal(raw, []byte("null")) {
		panic(http.ErrAbortHandler)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return ccError(http.StatusBadRequest, ccDecodeError, ccMalformed), false
	}
	if !v.complete() {
		return ccError(http.StatusBadRequest, ccDecodeError, ccMissingFields), false
	}
	if dec.More() {
		return ccError(http.StatusBadRequest, ccDecodeError, ccTrailingData), false
	}
	return ccAnswer{}, true
}

// ccOrgOf translates an account number to its org id, as cloud-connector's
// tenant translator does; the sim knows one tenant, Account and OrgID.
func (s *Server) ccOrgOf(account string) (string, bool) {
	if account != s.Account {
		return "", false
	}
	return s.OrgID, true
}

// ccLookup returns the host clientID when it is connected in org.
func (s *Server) ccLookup(org, clientID string) (Host, bool) {
	if org != s.OrgID {
		return Host{}, false
	}
	h, ok := s.Host(clientID)
	return h, ok && h.Online()
}

// ccLookupByAccount translates account, then looks the host up.
func (s *Server) ccLookupByAccount(account, clientID string) (Host, bool) {
	org, ok := s.ccOrgOf(account)
	if !ok {
		return Host{}, false
	}
	return s.ccLookup(org, clientID)
}

// connectionOf shapes a host as cloud-connector stores it.
func (s *Server) connectionOf(h Host) Connection {
	facts := h.ccFacts
	if facts == nil {
		facts = canonicalFacts(h.CanonicalFacts)
	}
	return Connection{Account: s.Account, OrgID: s.OrgID, ClientID: h.ID,
		CanonicalFacts: facts, Dispatchers: omitNull(h.Dispatchers), Tags: omitNull(h.Tags)}
}

// omitNull drops an absent or null value, which cloud-connector leaves out.
func omitNull(raw json.RawMessage) json.RawMessage {
	if t := bytes.TrimSpace(raw); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	return raw
}

// canonicalFacts shapes the facts of a connection-status as
// cloud-connector stores them: an object (empty when there are none), with
// insights_id dropped unless it is a UUID.
func canonicalFacts(raw json.RawMessage) json.RawMessage {
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '{' {
		// Fast paths (a list page shapes up to 1,000 hosts): the facts
		// of a status are valid JSON, so an object without an
		// insights_id, or whose insights_id is a UUID, is kept as is.
		if !bytes.Contains(t, []byte(`"insights_id"`)) {
			return t
		}
		var id struct {
			InsightsID any `json:"insights_id"`
		}
		if json.Unmarshal(t, &id) == nil {
			if s, ok := id.InsightsID.(string); ok && isUUID(s) {
				return t
			}
		}
	}
	var facts map[string]json.RawMessage
	if json.Unmarshal(raw, &facts) != nil || facts == nil {
		return json.RawMessage("{}")
	}
	if id, ok := facts["insights_id"]; ok {
		var s string
		if json.Unmarshal(id, &s) != nil || !isUUID(s) {
			delete(facts, "insights_id")
		}
	}
	b, err := json.Marshal(facts)
	if err != nil {
		return json.RawMessage("{}")
	}
	return b
}

// isUUID reports whether s is a UUID in one of the textual forms
// cloud-connector accepts: 8-4-4-4-12 hex digits, that form in braces or
// after "urn:uuid:", or 32 hex digits.
func isUUID(s string) bool {
	hex := func(s string) bool {
		for _, c := range []byte(s) {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		return true
	}
	switch {
	case len(s) == 32:
		return hex(s)
	case len(s) == 38 && s[0] == '{' && s[37] == '}':
		s = s[1:37]
	case len(s) == 45 && strings.EqualFold(s[:9], "urn:uuid:"):
		s = s[9:]
	}
	parts := strings.Split(s, "-")
	if len(parts) != 5 {
		return false
	}
	for i, n := range []int{8, 4, 4, 4, 12} {
		if len(parts[i]) != n || !hex(parts[i]) {
			return false
		}
	}
	return true
}

// messageRequest is the body of v1's message endpoint; v2's uses only
// directive, payload and metadata. Metadata must be an object of strings
// (yggdrasil's shape), where cloud-connector passes any JSON on.
type messageRequest struct {
	Account   string            `json:"account"`
	Recipient string            `json:"recipient"`
	Directive string            `json:"directive"`
	Payload   json.RawMessage   `json:"payload"`
	Metadata  map[string]string `json:"metadata"`
	v1        bool
}

func (m *messageRequest) complete() bool {
	return m.Directive != "" && (!m.v1 || m.Account != "" && m.Recipient != "")
}

type idResponse struct {
	ID string `json:"id"`
}

// ccSend publishes the data message to a connected host.
func (s *Server) ccSend(r *http.Request, h Host, req messageRequest) ccAnswer {
	id, err := s.SendData(r.Context(), h.ID, req.Directive, req.Metadata, req.Payload)
	if err != nil {
		s.log.Info("cloud-connector message", "host", h.ID, "error", err)
		return ccError(http.StatusInternalServerError, ccSendFailed, err.Error())
	}
	return ccAnswer{http.StatusCreated, idResponse{id}}
}

func (s *Server) v2Message(r *http.Request, p ccPrincipal) ccAnswer {
	var req messageRequest
	if a, ok := decodeCC(r, &req); !ok {
		return a
	}
	if strings.TrimSpace(req.Directive) == "" {
		return ccError(http.StatusBadRequest, ccEmptyDirective, ccEmptyDirective)
	}
	h, ok := s.ccLookup(p.orgID, r.PathValue("client_id"))
	if !ok {
		return ccError(http.StatusNotFound, ccNoConnection, ccNoConnection)
	}
	return s.ccSend(r, h, req)
}

func (s *Server) v2Status(r *http.Request, p ccPrincipal) ccAnswer {
	h, ok := s.ccLookup(p.orgID, r.PathValue("client_id"))
	if !ok {
		return ccAnswer{http.StatusOK, ConnectionStatus{Status: StatusDisconnected}}
	}
	return ccAnswer{http.StatusOK, ConnectionStatus{StatusConnected, s.connectionOf(h)}}
}

// ccPageLinks are a page's navigation links; all are left out of an empty
// listing.
type ccPageLinks struct {
	First string `json:"first,omitempty"`
	Last  string `json:"last,omitempty"`
	Next  string `json:"next,omitempty"`
	Prev  string `json:"prev,omitempty"`
}

// ccPage is a paginated answer.
type ccPage struct {
	Meta  ccPageMeta  `json:"meta"`
	Links ccPageLinks `json:"links"`
	Data  any         `json:"data"`
}

type ccPageMeta struct {
	Count int `json:"count"`
}

// ccPageParams reads limit (default 1000) and offset (default 0); a bad one
// is reported as "limit: …" or "offset: …".
func ccPageParams(r *http.Request) (offset, limit int, err error) {
	read := func(name string, def int, negative string) (int, error) {
		v := r.URL.Query().Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if n < 0 {
			return 0, fmt.Errorf("%s: %s", name, negative)
		}
		return n, nil
	}
	if limit, err = read("limit", 1000, "must be > 0"); err != nil {
		return 0, 0, err
	}
	if offset, err = read("offset", 0, "must be >= 0"); err != nil {
		return 0, 0, err
	}
	return offset, limit, nil
}

// ccWindow returns the bounds of a page of n items, and the count the real
// service reports: n, or 0 when the page is empty (it counts the rows its
// query returned). It adds nothing that can overflow: offset and limit come
// from the request and may be as large as an int holds.
func ccWindow(offset, limit, n int) (from, to, count int) {
	from = min(offset, n)
	to = from + min(limit, n-from)
	if from < to {
		count = n
	}
	return from, to, count
}

// newCCPage builds a paginated answer; its links repeat the request's URL
// with offset and limit set.
func newCCPage(u *url.URL, offset, limit, count int, data any) ccPage {
	p := ccPage{Meta: ccPageMeta{Count: count}, Data: data}
	if count == 0 {
		return p
	}
	link := func(off int) string {
		l := url.URL{Path: u.Path, RawQuery: u.RawQuery}
		q := l.Query()
		q.Set("offset", strconv.Itoa(off))
		q.Set("limit", strconv.Itoa(limit))
		l.RawQuery = q.Encode()
		return l.String()
	}
	last := 0
	if limit > 0 {
		last = (count - 1) / limit * limit
	}
	p.Links = ccPageLinks{First: link(0), Last: link(last)}
	// A page is not empty, so offset < count; limit may be as large as an
	// int holds, so compare without adding it to offset.
	if limit < count-offset {
		p.Links.Next = link(offset + limit)
	}
	if offset > 0 {
		// Both are >= 0: the difference cannot overflow.
		p.Links.Prev = link(max(0, offset-limit))
	}
	return p
}

func (s *Server) v2Connections(r *http.Request, p ccPrincipal) ccAnswer {
	offset, limit, err := ccPageParams(r)
	if err != nil {
		return ccError(http.StatusBadRequest, ccInvalidRequest, err.Error())
	}
	n := 0
	if p.orgID == s.OrgID {
		n = s.registry.onlineCount()
	}
	// The registry's index of online hosts pages without copying them all.
	from, to, count := ccWindow(offset, limit, n)
	data := make([]Connection, 0, to-from)
	if from < to {
		for _, h := range s.registry.onlinePage(from, to) {
			data = append(data, s.connectionOf(h))
		}
	}
	return ccAnswer{http.StatusOK, newCCPage(r.URL, offset, limit, count, data)}
}

func (s *Server) v1Message(r *http.Request, p ccPrincipal) ccAnswer {
	req := messageRequest{v1: true}
	if a, ok := decodeCC(r, &req); !ok {
		return a
	}
	if p.account != req.Account {
		return ccError(http.StatusForbidden, ccAccountMismatch, ccAccountMismatch)
	}
	if strings.TrimSpace(req.Directive) == "" {
		return ccError(http.StatusBadRequest, ccEmptyDirective, ccEmptyDirective)
	}
	h, ok := s.ccLookupByAccount(req.Account, req.Recipient)
	if !ok {
		return ccError(http.StatusNotFound, ccNoConnection, ccNoConnection)
	}
	return s.ccSend(r, h, req)
}

// nodeRequest is the body of v1's connection endpoints.
type nodeRequest struct {
	Account string `json:"account"`
	NodeID  string `json:"node_id"`
	Delay   int    `json:"delay"`
	Message string `json:"message"`
	delay   bool   // delay is required (and, being required, not 0)
}

func (n *nodeRequest) complete() bool {
	return n.Account != "" && n.NodeID != "" && (!n.delay || n.Delay != 0)
}

// v1StatusResponse is the answer of v1's status endpoints.
type v1StatusResponse struct {
	Status         string          `json:"status"`
	Dispatchers    json.RawMessage `json:"dispatchers,omitempty"`
	CanonicalFacts json.RawMessage `json:"canonical_facts,omitempty"`
	Tags           json.RawMessage `json:"tags,omitempty"`
}

// v1ConnectionStatus is POST /v1/connection_status, which checks the
// account against the caller's.
func (s *Server) v1ConnectionStatus(r *http.Request, p ccPrincipal) ccAnswer {
	return s.connectionStatus(r, &p)
}

// v1Status is POST /v1/connection/status, which does not.
func (s *Server) v1Status(r *http.Request, _ ccPrincipal) ccAnswer {
	return s.connectionStatus(r, nil)
}

func (s *Server) connectionStatus(r *http.Request, caller *ccPrincipal) ccAnswer {
	var req nodeRequest
	if a, ok := decodeCC(r, &req); !ok {
		return a
	}
	if caller != nil && caller.account != req.Account {
		return ccError(http.StatusForbidden, ccAccountMismatch, ccAccountMismatch)
	}
	org, ok := s.ccOrgOf(req.Account)
	if !ok {
		return ccError(http.StatusBadRequest, ccTranslateFailed, fmt.Sprintf(ccTenantNotFound, req.Account))
	}
	h, ok := s.ccLookup(org, req.NodeID)
	if !ok {
		return ccAnswer{http.StatusOK, v1StatusResponse{Status: StatusDisconnected}}
	}
	c := s.connectionOf(h)
	return ccAnswer{http.StatusOK, v1StatusResponse{Status: StatusConnected, Dispatchers: c.Dispatchers,
		CanonicalFacts: c.CanonicalFacts, Tags: c.Tags}}
}

type v1PingResponse struct {
	Status  string `json:"status"`
	Payload any    `json:"payload"`
}

// v1Ping publishes a ping command and answers at once, as cloud-connector
// does; the sim's own ping endpoint waits for the pong.
func (s *Server) v1Ping(r *http.Request, _ ccPrincipal) ccAnswer {
	var req nodeRequest
	if a, ok := decodeCC(r, &req); !ok {
		return a
	}
	if _, ok := s.ccLookupByAccount(req.Account, req.NodeID); !ok {
		return ccAnswer{http.StatusOK, v1PingResponse{Status: StatusDisconnected}}
	}
	if _, err := s.SendCommand(r.Context(), req.NodeID, yggdrasil.CommandPing, nil); err != nil {
		return ccError(http.StatusBadRequest, ccPingFailed, err.Error())
	}
	return ccAnswer{http.StatusOK, v1PingResponse{Status: StatusConnected}}
}

// v1Reconnect publishes a reconnect command; like cloud-connector it
// answers 200 with no body, and ignores a failure to publish.
func (s *Server) v1Reconnect(r *http.Request, _ ccPrincipal) ccAnswer {
	req := nodeRequest{delay: true}
	if a, ok := decodeCC(r, &req); !ok {
		return a
	}
	if req.Delay < 0 {
		return ccError(http.StatusBadRequest, ccNegativeDelay, ccNegativeDelay)
	}
	if _, ok := s.ccLookupByAccount(req.Account, req.NodeID); !ok {
		msg := fmt.Sprintf(ccNoNodeConnection, req.Account, req.NodeID)
		return ccError(http.StatusBadRequest, msg, msg)
	}
	if _, err := s.SendCommand(r.Context(), req.NodeID, yggdrasil.CommandReconnect,
		map[string]string{"delay": strconv.Itoa(req.Delay)}); err != nil {
		s.log.Info("cloud-connector reconnect", "host", req.NodeID, "error", err)
	}
	return ccAnswer{http.StatusOK, nil}
}

// v1Disconnect publishes a disconnect command; it answers 200 {} and
// ignores a failure to publish.
func (s *Server) v1Disconnect(r *http.Request, _ ccPrincipal) ccAnswer {
	var req nodeRequest
	if a, ok := decodeCC(r, &req); !ok {
		return a
	}
	if _, ok := s.ccLookupByAccount(req.Account, req.NodeID); !ok {
		msg := fmt.Sprintf(ccNoNodeConnection, req.Account, req.NodeID)
		return ccError(http.StatusBadRequest, msg, msg)
	}
	if _, err := s.SendCommand(r.Context(), req.NodeID, yggdrasil.CommandDisconnect, nil); err != nil {
		s.log.Info("cloud-connector disconnect", "host", req.NodeID, "error", err)
	}
	return ccAnswer{http.StatusOK, struct{}{}}
}

type accountConnections struct {
	Account     string   `json:"account"`
	Connections []string `json:"connections"`
}

// v1Connections lists every connection, grouped by account; the page
// counts connections, not accounts.
func (s *Server) v1Connections(r *http.Request, _ ccPrincipal) ccAnswer {
	offset, limit, err := ccPageParams(r)
	if err != nil {
		return ccError(http.StatusBadRequest, ccBadParams, err.Error())
	}
	from, to, count := ccWindow(offset, limit, s.registry.onlineCount())
	data := []accountConnections{}
	if from < to {
		data = append(data, accountConnections{Account: s.Account, Connections: s.registry.onlineIDs(from, to)})
	}
	return ccAnswer{http.StatusOK, newCCPage(r.URL, offset, limit, count, data)}
}

func (s *Server) v1AccountConnections(r *http.Request, _ ccPrincipal) ccAnswer {
	offset, limit, err := ccPageParams(r)
	if err != nil {
		return ccError(http.StatusBadRequest, ccBadParams, err.Error())
	}
	account := r.PathValue("account")
	if _, ok := s.ccOrgOf(account); !ok {
		return ccError(http.StatusBadRequest, ccBadParams, fmt.Sprintf(ccTenantNotFound, account))
	}
	from, to, count := ccWindow(offset, limit, s.registry.onlineCount())
	ids := []string{}
	if from < to {
		ids = s.registry.onlineIDs(from, to)
	}
	return ccAnswer{http.StatusOK, newCCPage(r.URL, offset, limit, count, ids)}
}
