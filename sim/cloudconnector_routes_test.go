package sim

// The facts of cloud-connector's REST interface, as its code gives them
// (RedHatInsights/cloud-connector internal/controller/api and
// internal/middlewares, with platform-go-middlewares' identity): one row a
// request, with the whole answer it gets.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// ccResponse is what a cloud-connector route answered.
type ccResponse struct {
	status      int
	contentType string
	body        string
}

// ccDo sends a request to the cloud-connector emulation; an answer the
// server aborts is reported as status 0.
func ccDo(t *testing.T, method, url, body string, header map[string]string) ccResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "EOF") {
			return ccResponse{}
		}
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return ccResponse{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

// publishStatus publishes a connection-status for id as the host would,
// with content, and waits until the sim has applied it.
func publishStatus(t *testing.T, s *Server, id, content string) {
	t.Helper()
	payload := `{"type":"connection-status","message_id":"` + yggdrasil.NewMessageID() + `","version":1,"sent":"` +
		time.Now().Format(time.RFC3339Nano) + `","content":` + content + `}`
	if err := s.Publish(testContext(t), "yggdrasil/"+id+"/control/out", []byte(payload), 1, true); err != nil {
		t.Fatal(err)
	}
	state := yggdrasil.StateOnline
	if strings.Contains(content, `"offline"`) {
		state = yggdrasil.StateOffline
	}
	if _, err := awaitHost(testContext(t), s, id, func(h Host) bool { return h.State == state }); err != nil {
		t.Fatal(err)
	}
}

// identityHeaderOf encodes an x-rh-identity.
func identityHeaderOf(id string) string { return base64.StdEncoding.EncodeToString([]byte(id)) }

const (
	jsonType  = "application/json; charset=UTF-8"
	plainType = "text/plain; charset=utf-8"
	anyID     = "<id>" // in a wanted body: any message id
	validUUID = "3b7c8a4e-59a1-4f7e-9d52-1c0e6f2a8b90"
)

func TestCloudConnectorRoutes(t *testing.T) {
	open := MustStart(t, &Server{TLSAddr: Off})
	closed := MustStart(t, &Server{TLSAddr: Off, PSK: "k"})
	for _, s := range []*Server{open, closed} {
		publishStatus(t, s, "h1", `{"state":"online","canonical_facts":{"fqdn":"h1.example","insights_id":"not-a-uuid"},"dispatchers":{"echo":{"v":"1"}}}`)
		publishStatus(t, s, "h2", `{"state":"offline"}`)
		publishStatus(t, s, "h3", `{"state":"online","canonical_facts":{"insights_id":"`+validUUID+`"},"dispatchers":{},"tags":{"env":"test"}}`)
		publishStatus(t, s, "h4", `{"state":"online"}`)
	}
	const (
		h1 = `"account":"0000001","org_id":"000001","client_id":"h1","canonical_facts":{"fqdn":"h1.example"},"dispatchers":{"echo":{"v":"1"}}`
		h3 = `"account":"0000001","org_id":"000001","client_id":"h3","canonical_facts":{"insights_id":"` + validUUID + `"},"dispatchers":{},"tags":{"env":"test"}`
		h4 = `"account":"0000001","org_id":"000001","client_id":"h4","canonical_facts":{}`
		v2 = "/api/cloud-connector/v2/connections"
	)
	v1psk := map[string]string{headerClientID: "svc", headerPSK: "k", headerAccount: "0000001"}
	v2psk := map[string]string{headerClientID: "svc", headerPSK: "k", headerOrgID: "000001"}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	user := map[string]string{headerIdentity: identityHeaderOf(`{"identity":{"account_number":"0000001","org_id":"000001","type":"User"}}`)}
	associate := map[string]string{headerIdentity: identityHeaderOf(`{"identity":{"org_id":"000001","type":"Associate"}}`)}
	errBody := func(status, title, detail string) string {
		return `{"title":"` + title + `","status":` + status + `,"detail":"` + detail + `"}` + "\n"
	}
	malformed := errBody("400", "Unable to process json input", "Request body includes malformed json")
	missing := errBody("400", "Unable to process json input", "Request body is missing required fields")
	noConn := errBody("404", "No connection to the rhc client", "No connection to the rhc client")
	emptyDirective := errBody("400", "Directive field is empty", "Directive field is empty")
	mismatch := errBody("403", "Account mismatch", "Account mismatch")
	authFailed := "Authentication failed\n"

	tests := []struct {
		name         string
		psk          bool // call the server with a PSK
		method, path string
		header       map[string]string
		body         string
		status       int // 0: the connection is dropped without an answer
		contentType  string
		want         string // the whole body; anyID stands for a message id
	}{
		// Routing: an unknown path is a plain 404, a known one with
		// another method an empty 405, before any authentication.
		{"unknown_path", true, "GET", "/api/cloud-connector/v3/nothing", nil, "", 404, plainType, "404 page not found\n"},
		{"base_path", false, "GET", "/api/cloud-connector", nil, "", 404, plainType, "404 page not found\n"},
		{"trailing_slash", false, "GET", v2 + "/", nil, "", 404, plainType, "404 page not found\n"},
		{"v1_connection_status_get", true, "GET", "/api/cloud-connector/v1/connection/status", nil, "", 405, "", ""},
		{"v1_connection_status_underscore_get", false, "GET", "/api/cloud-connector/v1/connection_status", nil, "", 405, "", ""},
		{"v1_account_not_numeric", false, "GET", "/api/cloud-connector/v1/connection/acme", nil, "", 404, plainType, "404 page not found\n"},
		{"v1_account_post", false, "POST", "/api/cloud-connector/v1/connection/0000001", nil, "", 405, "", ""},
		{"v2_connections_delete", false, "DELETE", v2, nil, "", 405, "", ""},
		{"v2_message_get", false, "GET", v2 + "/h1/message", nil, "", 405, "", ""},
		{"v2_status_post", false, "POST", v2 + "/h1/status", nil, "", 405, "", ""},
		{"openapi_not_served", false, "GET", "/api/cloud-connector/openapi.json", nil, "", 404, plainType, "404 page not found\n"},

		// Authentication with a PSK: the key headers, with the org id
		// for v2 and the account for v1; or an x-rh-identity instead.
		{"psk_none", true, "GET", v2, nil, "", 401, plainType, authFailed},
		{"psk_wrong_key", true, "GET", v2, with(v2psk, headerPSK, "guess"), "", 401, plainType, authFailed},
		{"psk_no_client_id", true, "GET", v2, with(v2psk, headerClientID, ""), "", 401, plainType, authFailed},
		{"psk_v2_no_org", true, "GET", v2, with(v2psk, headerOrgID, "", headerAccount, "0000001"), "", 401, plainType, authFailed},
		{"psk_v1_no_account", true, "POST", "/api/cloud-connector/v1/connection/status", with(v1psk, headerAccount, "", headerOrgID, "000001"), `{"account":"0000001","node_id":"h1"}`, 401, plainType, authFailed},
		{"psk_v2_other_org", true, "GET", v2, with(v2psk, headerOrgID, "999"), "", 200, jsonType, `{"meta":{"count":0},"links":{},"data":[]}` + "\n"},
		{"psk_identity_user", true, "GET", v2 + "/h4/status", user, "", 200, jsonType, `{"status":"connected",` + h4 + "}\n"},
		{"identity_not_base64", true, "GET", v2, map[string]string{headerIdentity: "%%%"}, "", 400, plainType, "Bad Request: unable to b64 decode x-rh-identity header\n"},
		{"identity_not_json", false, "GET", v2, map[string]string{headerIdentity: identityHeaderOf("nope")}, "", 400, plainType, "Bad Request: x-rh-identity header does not contain valid JSON: invalid character 'o' in literal null (expecting 'u')\n"},
		{"identity_wrong_type", false, "GET", v2, map[string]string{headerIdentity: identityHeaderOf(`{"identity":{"org_id":1,"type":"User"}}`)}, "", 400, plainType, "Bad Request: x-rh-identity header does not contain valid JSON: json: cannot unmarshal number into Go struct field Identity.identity.org_id of type string\n"},
		{"identity_no_org", true, "GET", v2, map[string]string{headerIdentity: "e30="}, "", 400, plainType, "Bad Request: x-rh-identity header has an invalid or missing org_id\n"},
		{"identity_no_type", false, "GET", v2, map[string]string{headerIdentity: identityHeaderOf(`{"identity":{"org_id":"000001"}}`)}, "", 400, plainType, "Bad Request: x-rh-identity header is missing type\n"},
		{"identity_internal_org", false, "GET", v2 + "/h4/status", map[string]string{headerIdentity: identityHeaderOf(`{"identity":{"internal":{"org_id":"000001"},"type":"System"}}`)}, "", 200, jsonType, `{"status":"connected",` + h4 + "}\n"},
		{"identity_associate_no_org", false, "GET", v2, map[string]string{headerIdentity: identityHeaderOf(`{"identity":{"type":"Associate"}}`)}, "", 0, "", ""},
		{"management_needs_associate", true, "POST", "/api/cloud-connector/v1/connection/status", user, `{"account":"0000001","node_id":"h1"}`, 401, plainType, authFailed},
		{"management_associate", true, "POST", "/api/cloud-connector/v1/connection/status", associate, `{"account":"0000001","node_id":"h4"}`, 200, jsonType, `{"status":"connected","canonical_facts":{}}` + "\n"},
		{"open_no_headers", false, "GET", v2 + "/h4/status", nil, "", 200, jsonType, `{"status":"connected",` + h4 + "}\n"},
		{"open_other_org_header", false, "GET", v2 + "/h4/status", map[string]string{headerOrgID: "999"}, "", 200, jsonType, `{"status":"disconnected"}` + "\n"},

		// POST /v2/connections/{client_id}/message
		{"v2_message", true, "POST", v2 + "/h1/message", v2psk, `{"directive":"echo","payload":{"a":1},"metadata":{"k":"v"}}`, 201, jsonType, `{"id":"` + anyID + `"}` + "\n"},
		{"v2_message_offline", true, "POST", v2 + "/h2/message", v2psk, `{"directive":"echo"}`, 404, jsonType, noConn},
		{"v2_message_unknown", false, "POST", v2 + "/nobody/message", nil, `{"directive":"echo"}`, 404, jsonType, noConn},
		{"v2_message_other_org", true, "POST", v2 + "/h1/message", with(v2psk, headerOrgID, "999"), `{"directive":"echo"}`, 404, jsonType, noConn},
		{"v2_message_no_directive", false, "POST", v2 + "/h1/message", nil, `{"payload":1}`, 400, jsonType, missing},
		{"v2_message_blank_directive", false, "POST", v2 + "/h1/message", nil, `{"directive":"  "}`, 400, jsonType, emptyDirective},
		{"v2_message_directive_not_string", false, "POST", v2 + "/h1/message", nil, `{"directive":5}`, 400, jsonType, malformed},
		{"v2_message_bad_json", false, "POST", v2 + "/h1/message", nil, `{`, 400, jsonType, malformed},
		{"v2_message_empty_body", false, "POST", v2 + "/h1/message", nil, ``, 400, jsonType, malformed},
		{"v2_message_array", false, "POST", v2 + "/h1/message", nil, `[]`, 400, jsonType, malformed},
		{"v2_message_null", false, "POST", v2 + "/h1/message", nil, `null`, 0, "", ""},
		{"v2_message_two_objects", false, "POST", v2 + "/h1/message", nil, `{"directive":"echo"} {}`, 400, jsonType, errBody("400", "Unable to process json input", "Request body must only contain one json object")},
		{"v2_message_too_large", false, "POST", v2 + "/h1/message", nil, `{"directive":"echo","payload":"` + strings.Repeat("x", maxBody) + `"}`, 400, jsonType, malformed},
		{"v2_message_extra_field", false, "POST", v2 + "/h1/message", nil, `{"directive":"echo","x":1}`, 201, jsonType, `{"id":"` + anyID + `"}` + "\n"},

		// GET /v2/connections/{client_id}/status
		{"v2_status", true, "GET", v2 + "/h1/status", v2psk, "", 200, jsonType, `{"status":"connected",` + h1 + "}\n"},
		{"v2_status_tags", false, "GET", v2 + "/h3/status", nil, "", 200, jsonType, `{"status":"connected",` + h3 + "}\n"},
		{"v2_status_offline", false, "GET", v2 + "/h2/status", nil, "", 200, jsonType, `{"status":"disconnected"}` + "\n"},
		{"v2_status_unknown", false, "GET", v2 + "/nobody/status", nil, "", 200, jsonType, `{"status":"disconnected"}` + "\n"},

		// GET /v2/connections
		{"v2_connections", true, "GET", v2, v2psk, "", 200, jsonType, `{"meta":{"count":3},"links":{"first":"` + v2 + `?limit=1000\u0026offset=0","last":"` + v2 + `?limit=1000\u0026offset=0"},"data":[{` + h1 + `},{` + h3 + `},{` + h4 + `}]}` + "\n"},
		{"v2_connections_page", false, "GET", v2 + "?offset=1&limit=1&x=y", nil, "", 200, jsonType, `{"meta":{"count":3},"links":{"first":"` + v2 + `?limit=1\u0026offset=0\u0026x=y","last":"` + v2 + `?limit=1\u0026offset=2\u0026x=y","next":"` + v2 + `?limit=1\u0026offset=2\u0026x=y","prev":"` + v2 + `?limit=1\u0026offset=0\u0026x=y"},"data":[{` + h3 + `}]}` + "\n"},
		{"v2_connections_last_page", false, "GET", v2 + "?offset=2&limit=2", nil, "", 200, jsonType, `{"meta":{"count":3},"links":{"first":"` + v2 + `?limit=2\u0026offset=0","last":"` + v2 + `?limit=2\u0026offset=2","prev":"` + v2 + `?limit=2\u0026offset=0"},"data":[{` + h4 + `}]}` + "\n"},
		{"v2_connections_past_end", false, "GET", v2 + "?offset=3", nil, "", 200, jsonType, `{"meta":{"count":0},"links":{},"data":[]}` + "\n"},
		{"v2_connections_limit_zero", false, "GET", v2 + "?limit=0", nil, "", 200, jsonType, `{"meta":{"count":0},"links":{},"data":[]}` + "\n"},
		{"v2_connections_bad_limit", false, "GET", v2 + "?limit=x", nil, "", 400, jsonType, errBody("400", "Invalid request", `limit: strconv.Atoi: parsing \"x\": invalid syntax`)},
		{"v2_connections_negative_limit", false, "GET", v2 + "?limit=-1", nil, "", 400, jsonType, errBody("400", "Invalid request", `limit: must be \u003e 0`)},
		{"v2_connections_bad_offset", false, "GET", v2 + "?offset=-1", nil, "", 400, jsonType, errBody("400", "Invalid request", `offset: must be \u003e= 0`)},
		// offset+limit would overflow an int: the window must not add them.
		{"v2_connections_huge_offset", false, "GET", v2 + "?offset=9223372036854775807&limit=1", nil, "", 200, jsonType, `{"meta":{"count":0},"links":{},"data":[]}` + "\n"},
		{"v2_connections_huge_limit", false, "GET", v2 + "?offset=1&limit=9223372036854775807", nil, "", 200, jsonType, `{"meta":{"count":3},"links":{"first":"` + v2 + `?limit=9223372036854775807\u0026offset=0","last":"` + v2 + `?limit=9223372036854775807\u0026offset=0","prev":"` + v2 + `?limit=9223372036854775807\u0026offset=0"},"data":[{` + h3 + `},{` + h4 + `}]}` + "\n"},

		// POST /v1/message
		{"v1_message", true, "POST", "/api/cloud-connector/v1/message", v1psk, `{"account":"0000001","recipient":"h1","directive":"echo","payload":"hi"}`, 201, jsonType, `{"id":"` + anyID + `"}` + "\n"},
		{"v1_message_identity", false, "POST", "/api/cloud-connector/v1/message", user, `{"account":"0000001","recipient":"h1","directive":"echo"}`, 201, jsonType, `{"id":"` + anyID + `"}` + "\n"},
		{"v1_message_offline", false, "POST", "/api/cloud-connector/v1/message", nil, `{"account":"0000001","recipient":"h2","directive":"echo"}`, 404, jsonType, noConn},
		{"v1_message_no_recipient", false, "POST", "/api/cloud-connector/v1/message", nil, `{"account":"0000001","directive":"echo"}`, 400, jsonType, missing},
		{"v1_message_no_account", false, "POST", "/api/cloud-connector/v1/message", nil, `{"recipient":"h1","directive":"echo"}`, 400, jsonType, missing},
		{"v1_message_account_mismatch", true, "POST", "/api/cloud-connector/v1/message", v1psk, `{"account":"42","recipient":"h1","directive":"echo"}`, 403, jsonType, mismatch},
		{"v1_message_mismatch_before_directive", false, "POST", "/api/cloud-connector/v1/message", nil, `{"account":"42","recipient":"h1","directive":" "}`, 403, jsonType, mismatch},
		{"v1_message_blank_directive", false, "POST", "/api/cloud-connector/v1/message", nil, `{"account":"0000001","recipient":"h1","directive":" "}`, 400, jsonType, emptyDirective},
		{"v1_message_unknown_tenant", false, "POST", "/api/cloud-connector/v1/message", map[string]string{headerAccount: "42"}, `{"account":"42","recipient":"h1","directive":"echo"}`, 404, jsonType, noConn},

		// POST /v1/connection_status (checks the account) and
		// POST /v1/connection/status (does not).
		{"v1_connection_status", true, "POST", "/api/cloud-connector/v1/connection_status", v1psk, `{"account":"0000001","node_id":"h1"}`, 200, jsonType, `{"status":"connected","dispatchers":{"echo":{"v":"1"}},"canonical_facts":{"fqdn":"h1.example"}}` + "\n"},
		{"v1_connection_status_offline", false, "POST", "/api/cloud-connector/v1/connection_status", nil, `{"account":"0000001","node_id":"h2"}`, 200, jsonType, `{"status":"disconnected"}` + "\n"},
		{"v1_connection_status_mismatch", false, "POST", "/api/cloud-connector/v1/connection_status", nil, `{"account":"42","node_id":"h1"}`, 403, jsonType, mismatch},
		{"v1_connection_status_no_account", false, "POST", "/api/cloud-connector/v1/connection_status", nil, `{"node_id":"h1"}`, 400, jsonType, missing},
		{"v1_status", true, "POST", "/api/cloud-connector/v1/connection/status", v1psk, `{"account":"0000001","node_id":"h3"}`, 200, jsonType, `{"status":"connected","dispatchers":{},"canonical_facts":{"insights_id":"` + validUUID + `"},"tags":{"env":"test"}}` + "\n"},
		{"v1_status_any_caller_account", false, "POST", "/api/cloud-connector/v1/connection/status", map[string]string{headerAccount: "42"}, `{"account":"0000001","node_id":"h1"}`, 200, jsonType, `{"status":"connected","dispatchers":{"echo":{"v":"1"}},"canonical_facts":{"fqdn":"h1.example"}}` + "\n"},
		{"v1_status_unknown_tenant", false, "POST", "/api/cloud-connector/v1/connection/status", nil, `{"account":"42","node_id":"h1"}`, 400, jsonType, errBody("400", "Unable to translate account to org_id", "Tenant not found. EAN: 42")},
		{"v1_status_no_node", false, "POST", "/api/cloud-connector/v1/connection/status", nil, `{"account":"0000001"}`, 400, jsonType, missing},

		// POST /v1/connection/ping
		{"v1_ping", true, "POST", "/api/cloud-connector/v1/connection/ping", v1psk, `{"account":"0000001","node_id":"h1"}`, 200, jsonType, `{"status":"connected","payload":null}` + "\n"},
		{"v1_ping_offline", false, "POST", "/api/cloud-connector/v1/connection/ping", nil, `{"account":"0000001","node_id":"h2"}`, 200, jsonType, `{"status":"disconnected","payload":null}` + "\n"},
		{"v1_ping_unknown_tenant", false, "POST", "/api/cloud-connector/v1/connection/ping", nil, `{"account":"42","node_id":"h1"}`, 200, jsonType, `{"status":"disconnected","payload":null}` + "\n"},
		{"v1_ping_no_node", false, "POST", "/api/cloud-connector/v1/connection/ping", nil, `{"account":"0000001"}`, 400, jsonType, missing},

		// POST /v1/connection/reconnect: delay is required, so 0 is
		// refused like a missing one.
		{"v1_reconnect", true, "POST", "/api/cloud-connector/v1/connection/reconnect", v1psk, `{"account":"0000001","node_id":"h1","delay":5}`, 200, jsonType, ""},
		{"v1_reconnect_no_delay", false, "POST", "/api/cloud-connector/v1/connection/reconnect", nil, `{"account":"0000001","node_id":"h1"}`, 400, jsonType, missing},
		{"v1_reconnect_zero_delay", false, "POST", "/api/cloud-connector/v1/connection/reconnect", nil, `{"account":"0000001","node_id":"h1","delay":0}`, 400, jsonType, missing},
		{"v1_reconnect_negative_delay", false, "POST", "/api/cloud-connector/v1/connection/reconnect", nil, `{"account":"0000001","node_id":"h1","delay":-1}`, 400, jsonType, errBody("400", "Delay field cannot be negative", "Delay field cannot be negative")},
		{"v1_reconnect_offline", false, "POST", "/api/cloud-connector/v1/connection/reconnect", nil, `{"account":"0000001","node_id":"h2","delay":1}`, 400, jsonType, errBody("400", "No connection found for node (0000001:h2)", "No connection found for node (0000001:h2)")},

		// POST /v1/connection/disconnect
		{"v1_disconnect", true, "POST", "/api/cloud-connector/v1/connection/disconnect", v1psk, `{"account":"0000001","node_id":"h4","message":"bye"}`, 200, jsonType, "{}\n"},
		{"v1_disconnect_unknown", false, "POST", "/api/cloud-connector/v1/connection/disconnect", nil, `{"account":"0000001","node_id":"nobody"}`, 400, jsonType, errBody("400", "No connection found for node (0000001:nobody)", "No connection found for node (0000001:nobody)")},
		{"v1_disconnect_no_account", false, "POST", "/api/cloud-connector/v1/connection/disconnect", nil, `{"node_id":"h1"}`, 400, jsonType, missing},

		// GET /v1/connection and /v1/connection/{account}
		{"v1_connections", true, "GET", "/api/cloud-connector/v1/connection", v1psk, "", 200, jsonType, `{"meta":{"count":3},"links":{"first":"/api/cloud-connector/v1/connection?limit=1000\u0026offset=0","last":"/api/cloud-connector/v1/connection?limit=1000\u0026offset=0"},"data":[{"account":"0000001","connections":["h1","h3","h4"]}]}` + "\n"},
		{"v1_connections_page", false, "GET", "/api/cloud-connector/v1/connection?limit=2", nil, "", 200, jsonType, `{"meta":{"count":3},"links":{"first":"/api/cloud-connector/v1/connection?limit=2\u0026offset=0","last":"/api/cloud-connector/v1/connection?limit=2\u0026offset=2","next":"/api/cloud-connector/v1/connection?limit=2\u0026offset=2"},"data":[{"account":"0000001","connections":["h1","h3"]}]}` + "\n"},
		{"v1_connections_huge_offset", false, "GET", "/api/cloud-connector/v1/connection?offset=9223372036854775807&limit=1", nil, "", 200, jsonType, `{"meta":{"count":0},"links":{},"data":[]}` + "\n"},
		{"v1_connections_huge_limit", false, "GET", "/api/cloud-connector/v1/connection?offset=1&limit=9223372036854775807", nil, "", 200, jsonType, `{"meta":{"count":3},"links":{"first":"/api/cloud-connector/v1/connection?limit=9223372036854775807\u0026offset=0","last":"/api/cloud-connector/v1/connection?limit=9223372036854775807\u0026offset=0","prev":"/api/cloud-connector/v1/connection?limit=9223372036854775807\u0026offset=0"},"data":[{"account":"0000001","connections":["h3","h4"]}]}` + "\n"},
		{"v1_account_huge_offset", false, "GET", "/api/cloud-connector/v1/connection/0000001?offset=9223372036854775807&limit=1", nil, "", 200, jsonType, `{"meta":{"count":0},"links":{},"data":[]}` + "\n"},
		{"v1_account_huge_limit", false, "GET", "/api/cloud-connector/v1/connection/0000001?offset=2&limit=9223372036854775807", nil, "", 200, jsonType, `{"meta":{"count":3},"links":{"first":"/api/cloud-connector/v1/connection/0000001?limit=9223372036854775807\u0026offset=0","last":"/api/cloud-connector/v1/connection/0000001?limit=9223372036854775807\u0026offset=0","prev":"/api/cloud-connector/v1/connection/0000001?limit=9223372036854775807\u0026offset=0"},"data":["h4"]}` + "\n"},
		{"v1_connections_bad_offset", false, "GET", "/api/cloud-connector/v1/connection?offset=x", nil, "", 400, jsonType, errBody("400", "Unable to process input parameters", `offset: strconv.Atoi: parsing \"x\": invalid syntax`)},
		{"v1_account", true, "GET", "/api/cloud-connector/v1/connection/0000001?offset=1", v1psk, "", 200, jsonType, `{"meta":{"count":3},"links":{"first":"/api/cloud-connector/v1/connection/0000001?limit=1000\u0026offset=0","last":"/api/cloud-connector/v1/connection/0000001?limit=1000\u0026offset=0","prev":"/api/cloud-connector/v1/connection/0000001?limit=1000\u0026offset=0"},"data":["h3","h4"]}` + "\n"},
		{"v1_account_unknown", false, "GET", "/api/cloud-connector/v1/connection/42", nil, "", 400, jsonType, errBody("400", "Unable to process input parameters", "Tenant not found. EAN: 42")},
		{"v1_account_bad_limit", false, "GET", "/api/cloud-connector/v1/connection/0000001?limit=-5", nil, "", 400, jsonType, errBody("400", "Unable to process input parameters", `limit: must be \u003e 0`)},
	}
	names := map[string]bool{}
	for _, tt := range tests {
		if names[tt.name] {
			t.Fatalf("duplicate case %s", tt.name)
		}
		names[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			s := open
			if tt.psk {
				s = closed
			}
			got := ccDo(t, tt.method, s.APIURL()+tt.path, tt.body, tt.header)
			want := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(tt.want), anyID, "[0-9a-f-]{36}") + "$")
			if got.status != tt.status || got.contentType != tt.contentType || !want.MatchString(got.body) {
				t.Errorf("%s %s = %d %q %q\nwant %d %q %q", tt.method, tt.path, got.status, got.contentType, got.body,
					tt.status, tt.contentType, tt.want)
			}
		})
	}
}

// TestCloudConnectorEffects checks what each route publishes to the host.
func TestCloudConnectorEffects(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	publishStatus(t, s, "h1", `{"state":"online"}`)
	cc := s.APIURL() + CloudConnectorPath
	tests := []struct {
		name, path, body string
		topic            string
		want             func(t *testing.T, payload []byte, answer string)
	}{
		{"v2_message", "/v2/connections/h1/message", `{"directive":"echo","payload":{"a":1},"metadata":{"k":"v"}}`, "yggdrasil/h1/data/in",
			func(t *testing.T, p []byte, answer string) {
				d, err := yggdrasil.DecodeData(p)
				if err != nil || !strings.Contains(answer, d.MessageID) || d.Directive != "echo" || d.Version != 1 ||
					string(d.Content) != `{"a":1}` || d.Metadata["k"] != "v" {
					t.Errorf("data = %+v (%v), answer %s", d, err, answer)
				}
			}},
		{"v1_message", "/v1/message", `{"account":"0000001","recipient":"h1","directive":"d","payload":"two"}`, "yggdrasil/h1/data/in",
			func(t *testing.T, p []byte, answer string) {
				d, err := yggdrasil.DecodeData(p)
				if err != nil || !strings.Contains(answer, d.MessageID) || d.Directive != "d" || string(d.Content) != `"two"` {
					t.Errorf("data = %+v (%v), answer %s", d, err, answer)
				}
			}},
		{"v1_ping", "/v1/connection/ping", `{"account":"0000001","node_id":"h1"}`, "yggdrasil/h1/control/in", command("ping", nil)},
		{"v1_reconnect", "/v1/connection/reconnect", `{"account":"0000001","node_id":"h1","delay":7}`, "yggdrasil/h1/control/in", command("reconnect", map[string]string{"delay": "7"})},
		{"v1_disconnect", "/v1/connection/disconnect", `{"account":"0000001","node_id":"h1"}`, "yggdrasil/h1/control/in", command("disconnect", nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			since := s.LastSeq()
			got := ccDo(t, "POST", cc+tt.path, tt.body, nil)
			if got.status/100 != 2 {
				t.Fatalf("POST %s = %d %s", tt.path, got.status, got.body)
			}
			m, err := s.Await(testContext(t), since, func(m Message) bool { return m.Topic == tt.topic })
			if err != nil {
				t.Fatalf("nothing published on %s: %v", tt.topic, err)
			}
			tt.want(t, m.Payload, got.body)
		})
	}
}

// command checks a published control command.
func command(name string, args map[string]string) func(t *testing.T, payload []byte, answer string) {
	return func(t *testing.T, p []byte, _ string) {
		c, err := yggdrasil.DecodeCommand(p)
		if err != nil || c.Content.Command != name || len(c.Content.Arguments) != len(args) {
			t.Errorf("command = %+v (%v), want %s %v", c, err, name, args)
			return
		}
		for k, v := range args {
			if got, _, _ := c.Content.Arg(k); got != v || string(c.Content.Arguments[k]) != `"`+v+`"` {
				t.Errorf("argument %s = %s, want the string %q", k, c.Content.Arguments[k], v)
			}
		}
		var raw map[string]json.RawMessage
		if json.Unmarshal(p, &raw); string(raw["type"]) != `"command"` {
			t.Errorf("type = %s, want command", raw["type"])
		}
	}
}

func TestCanonicalFacts(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"absent", ``, `{}`},
		{"null", `null`, `{}`},
		{"not_object", `[1]`, `{}`},
		{"kept", ` {"fqdn":"h","ip_addresses":["10.0.0.1"]}`, `{"fqdn":"h","ip_addresses":["10.0.0.1"]}`},
		{"uuid", `{"insights_id":"` + validUUID + `"}`, `{"insights_id":"` + validUUID + `"}`},
		{"uuid_upper_braces", `{"insights_id":"{3B7C8A4E-59A1-4F7E-9D52-1C0E6F2A8B90}"}`, `{"insights_id":"{3B7C8A4E-59A1-4F7E-9D52-1C0E6F2A8B90}"}`},
		{"uuid_urn", `{"insights_id":"urn:uuid:` + validUUID + `"}`, `{"insights_id":"urn:uuid:` + validUUID + `"}`},
		{"uuid_hex", `{"insights_id":"3b7c8a4e59a14f7e9d521c0e6f2a8b90"}`, `{"insights_id":"3b7c8a4e59a14f7e9d521c0e6f2a8b90"}`},
		{"not_uuid", `{"fqdn":"h","insights_id":"abc"}`, `{"fqdn":"h"}`},
		{"bad_dashes", `{"insights_id":"3b7c8a4e5-9a1-4f7e-9d52-1c0e6f2a8b90"}`, `{}`},
		{"not_string", `{"insights_id":5}`, `{}`},
		{"empty", `{"insights_id":""}`, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(canonicalFacts(json.RawMessage(tt.raw))); got != tt.want {
				t.Errorf("canonicalFacts(%s) = %s, want %s", tt.raw, got, tt.want)
			}
		})
	}
}

// TestMountCloudConnectorBesideRoot: the emulation shares a mux with a
// page served on "GET /" without a pattern conflict, and keeps its paths.
func TestMountCloudConnectorBesideRoot(t *testing.T) {
	s := &Server{}
	mux := http.NewServeMux()
	s.mountCloudConnector(mux)
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "page") })
	for _, m := range []string{"GET", "DELETE"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(m, CloudConnectorPath+"/v2/nothing", nil))
		if rec.Code != http.StatusNotFound || rec.Body.String() != "404 page not found\n" {
			t.Errorf("%s: %d %q, want the emulation's 404", m, rec.Code, rec.Body.String())
		}
	}
}
