package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// call makes an API request and returns the status and the body.
func call(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// onlineHost connects h1 with an echo-and-pong responder and publishes its
// online status.
func onlineHost(t *testing.T, s *Server, id string) *host {
	t.Helper()
	h := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: id})
	h.mustSubscribe(h.topic("+", "in"))
	h.client.AddRoute(h.topic("data", "in"), func(_ pahoClient, m pahoMessage) {
		d, err := yggdrasil.DecodeData(m.Payload())
		if err != nil {
			return
		}
		reply, _ := json.Marshal(yggdrasil.Data{Type: "data", MessageID: "re-" + d.MessageID, ResponseTo: d.MessageID,
			Version: 1, Directive: d.Directive, Content: d.Content})
		h.client.Publish(h.topic("data", "out"), 1, false, reply)
	})
	h.client.AddRoute(h.topic("control", "in"), func(_ pahoClient, m pahoMessage) {
		c, err := yggdrasil.DecodeCommand(m.Payload())
		if err != nil || c.Content.Command != "ping" {
			return
		}
		pong, _ := json.Marshal(yggdrasil.Event{Type: "event", MessageID: yggdrasil.NewMessageID(), ResponseTo: c.MessageID, Version: 1, Content: "pong"})
		h.client.Publish(h.topic("control", "out"), 1, false, pong)
	})
	h.mustPublish(h.topic("control", "out"), statusPayloadJSON(t, yggdrasil.StateOnline, time.Now()), true)
	if _, err := awaitHost(testContext(t), s, id, Host.Online); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestAPIEndpoints(t *testing.T) {
	s := MustStart(t, &Server{Proxy: true})
	onlineHost(t, s, "h1")
	// h2 is known but offline.
	s.Publish(testContext(t), "yggdrasil/h2/control/out", statusPayloadJSON(t, yggdrasil.StateOffline, time.Now()), 1, false)
	if _, err := awaitHost(testContext(t), s, "h2", func(h Host) bool { return h.State == "offline" }); err != nil {
		t.Fatal(err)
	}
	own := s.APIURL() + SimPath

	tests := []struct {
		name, method, url, body string
		status                  int
		want                    string // a substring of the body
	}{
		{"unknown_path", "GET", own + "/nothing", "", 404, `no such endpoint`},
		{"wrong_method", "DELETE", own + "/hosts", "", 405, `"status":405`},
		{"sim_info", "GET", own + "/info", "", 200, `"broker_running":true`},
		{"sim_hosts", "GET", own + "/hosts", "", 200, `"client_id":"h2"`},
		{"sim_host", "GET", own + "/hosts/h1", "", 200, `"state":"online"`},
		{"sim_host_unknown", "GET", own + "/hosts/nope", "", 404, `unknown`},
		{"sim_host_messages", "GET", own + "/hosts/h1/messages", "", 200, `"type":"connection-status"`},
		{"sim_host_messages_unknown", "GET", own + "/hosts/nope/messages", "", 404, `unknown`},
		{"sim_ping", "POST", own + "/hosts/h1/ping", "", 200, `"rtt_ms":`},
		{"sim_ping_offline", "POST", own + "/hosts/h2/ping", "", 404, `not connected`},
		{"sim_ping_bad_timeout", "POST", own + "/hosts/h1/ping?timeout=soon", "", 400, `timeout`},
		{"sim_answer_none", "GET", own + "/answers/nope?timeout=0s", "", 404, `no answer`},
		{"sim_answer_timeout", "GET", own + "/answers/nope?timeout=50ms", "", 504, `within 50ms`},
		{"sim_messages", "GET", own + "/messages?since=0", "", 200, `"seq":1`},
		{"sim_messages_bad_since", "GET", own + "/messages?since=x", "", 400, `since`},
		{"sim_publish", "POST", own + "/publish", `{"topic":"yggdrasil/h9/data/in","payload_text":"raw"}`, 200, `{}`},
		{"sim_publish_wildcard", "POST", own + "/publish", `{"topic":"yggdrasil/+/data/in"}`, 400, `wildcards`},
		{"sim_publish_no_topic", "POST", own + "/publish", `{}`, 400, `topic`},
		{"sim_refusals", "GET", own + "/refusals", "", 200, `[]`},
		{"sim_network", "GET", own + "/network", "", 200, `"mode":"healthy"`},
		{"sim_network_delay", "POST", own + "/network/delay?d=1ms", "", 200, `"delay":1000000`},
		{"sim_network_delay_bad", "POST", own + "/network/delay?d=x", "", 400, `duration`},
		{"sim_network_heal", "POST", own + "/network/heal", "", 200, `"delay":0`},
		{"sim_network_unknown", "POST", own + "/network/flood", "", 404, `no network action`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := call(t, tt.method, tt.url, tt.body)
			if status != tt.status || !strings.Contains(body, tt.want) {
				t.Errorf("%s %s = %d %s, want %d with %s", tt.method, tt.url, status, body, tt.status, tt.want)
			}
			if status >= 400 {
				var e APIError
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Status != status || e.Title == "" || e.Detail == "" {
					t.Errorf("error body = %s, want {title, status %d, detail}", body, status)
				}
			}
		})
	}
}

func TestAPIAnswerAndBroker(t *testing.T) {
	s := MustStart(t, &Server{})
	onlineHost(t, s, "h1")
	cc, own := s.APIURL()+CloudConnectorPath, s.APIURL()+SimPath

	status, body := call(t, "POST", cc+"/v2/connections/h1/message", `{"directive":"echo","payload":"hello"}`)
	if status != 201 {
		t.Fatalf("message: %d %s", status, body)
	}
	var id struct{ ID string }
	json.Unmarshal([]byte(body), &id)
	status, body = call(t, "GET", own+"/answers/"+id.ID, "")
	var m Message
	if err := json.Unmarshal([]byte(body), &m); status != 200 || err != nil {
		t.Fatalf("answer: %d %s (%v)", status, body, err)
	}
	if m.ResponseTo != id.ID || m.Host != "h1" || !strings.Contains(string(m.Payload), `"content":"hello"`) {
		t.Errorf("answer = %+v", m)
	}

	// Broker stop and start through the API.
	status, body = call(t, "POST", own+"/broker/stop", "")
	if status != 200 || !strings.Contains(body, `"broker_running":false`) {
		t.Fatalf("stop: %d %s", status, body)
	}
	status, body = call(t, "POST", own+"/publish", `{"topic":"a/b","payload":1}`)
	if status != 503 {
		t.Errorf("publish while stopped: %d %s, want 503", status, body)
	}
	status, body = call(t, "POST", own+"/broker/start", "")
	if status != 200 || !strings.Contains(body, `"broker_running":true`) {
		t.Fatalf("start: %d %s", status, body)
	}
	// Without a proxy, network faults are a conflict.
	if status, body = call(t, "POST", own+"/network/cut", ""); status != 409 {
		t.Errorf("cut without proxy: %d %s, want 409", status, body)
	}
}

func TestAPIPSK(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off, PSK: "secret"})
	url := s.APIURL() + CloudConnectorPath + "/v2/connections"
	tests := []struct {
		name   string
		header []string
		status int
	}{
		{"none", nil, 401},
		{"identity_without_org", []string{"x-rh-identity", "e30="}, 400},
		{"wrong_key", []string{"x-rh-cloud-connector-client-id", "svc", "x-rh-cloud-connector-psk", "guess"}, 401},
		{"key", []string{"x-rh-cloud-connector-client-id", "svc", "x-rh-cloud-connector-psk", "secret", "x-rh-cloud-connector-org-id", "1"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status, body := call(t, "GET", url, "", tt.header...); status != tt.status {
				t.Errorf("status = %d %s, want %d", status, body, tt.status)
			}
		})
	}
	// The sim's own endpoints need no key.
	if status, _ := call(t, "GET", s.APIURL()+SimPath+"/hosts", ""); status != 200 {
		t.Errorf("sim hosts: %d, want 200", status)
	}
}

// TestAPISameSite: a web page on another site can neither drive the API
// (a no-cors POST to /publish carries its Origin) nor read it through DNS
// rebinding (a Host that is a name); the sim's own page and the CLI can.
func TestAPISameSite(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	api := s.APIURL()
	own := api // http://127.0.0.1:port
	hostPort := strings.TrimPrefix(api, "http://")
	_, port, _ := net.SplitHostPort(hostPort)
	publish := `{"topic":"yggdrasil/h1/data/in","payload":{"n":1}}`
	tests := []struct {
		name, method, path, host, origin, body string
		status                                 int
	}{
		{"cli_no_origin", "POST", SimPath + "/publish", "", "", publish, 200},
		{"own_page", "POST", SimPath + "/publish", "", own, publish, 200},
		{"own_page_get", "GET", SimPath + "/info", "", own, "", 200},
		{"localhost", "GET", SimPath + "/info", "localhost:" + port, "", "", 200},
		{"localhost_origin", "GET", SimPath + "/info", "localhost:" + port, "http://localhost:" + port, "", 200},
		{"ipv6_literal", "GET", SimPath + "/info", "[::1]:" + port, "", "", 200},
		{"no_port", "GET", SimPath + "/info", "127.0.0.1", "", "", 200},
		{"cross_site_publish", "POST", SimPath + "/publish", "", "https://evil.example", publish, 403},
		{"cross_site_cloud_connector", "POST", CloudConnectorPath + "/v2/connections/h1/message", "", "http://evil.example", `{"directive":"echo"}`, 403},
		{"cross_site_broker_stop", "POST", SimPath + "/broker/stop", "", "http://evil.example", "", 403},
		{"null_origin", "POST", SimPath + "/publish", "", "null", publish, 403},
		{"other_port", "GET", SimPath + "/info", "", "http://127.0.0.1:1", "", 403},
		{"rebound_name", "GET", SimPath + "/messages", "evil.example:" + port, "", "", 403},
		{"rebound_name_same_origin", "GET", SimPath + "/events", "evil.example:" + port, "http://evil.example:" + port, "", 403},
		{"rebound_page", "GET", "/", "evil.example", "", "", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(testContext(t), tt.method, api+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.body != "" {
				req.Header.Set("Content-Type", "text/plain") // a simple request
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d %s, want %d", resp.StatusCode, b, tt.status)
			}
			if tt.status == 403 && !strings.Contains(string(b), "refused") {
				t.Errorf("body = %s, want it to say why", b)
			}
		})
	}
}

func TestAPIEvents(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	s.Publish(ctx, "yggdrasil/h1/data/in", []byte(`{"n":1}`), 1, false)
	req, _ := http.NewRequestWithContext(ctx, "GET", s.APIURL()+SimPath+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type = %q", ct)
	}
	s.Publish(ctx, "yggdrasil/h1/data/in", []byte(`{"n":2}`), 1, false)
	sc := bufio.NewScanner(resp.Body)
	var datas []string
	for sc.Scan() && len(datas) < 2 {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			datas = append(datas, d)
		}
	}
	for i, d := range datas {
		var m Message
		if err := json.Unmarshal([]byte(d), &m); err != nil || m.Seq != int64(i+1) || string(m.Payload) != fmt.Sprintf(`{"n":%d}`, i+1) {
			t.Errorf("event %d = %s (%v)", i, d, err)
		}
	}
	if len(datas) != 2 {
		t.Fatalf("got %d events, want 2", len(datas))
	}
	// Close ends the stream.
	s.Close()
	for sc.Scan() {
	}
}

// TestAPITimeouts: a client that never finishes its headers, and a reader
// of the event stream that stops reading, are let go instead of holding a
// connection (and, for the stream, its goroutine and buffers) for ever.
func TestAPITimeouts(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off, APIReadHeaderTimeout: 100 * time.Millisecond, APIWriteTimeout: 200 * time.Millisecond})
	addr := strings.TrimPrefix(s.APIURL(), "http://")

	t.Run("slow_headers", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET "+SimPath+"/info HTTP/1.1\r\nHost: 127.0.0.1\r\n") // never ends
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("the server kept the connection open: %v", err)
		}
	})

	t.Run("stalled_reader", func(t *testing.T) {
		// More than the sockets' buffers hold: the server's writes block.
		payload := bytes.Repeat([]byte("y"), 1<<20)
		ctx := testContext(t)
		for range 24 {
			if err := s.Publish(ctx, "yggdrasil/h1/data/in", payload, 0, false); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Await(ctx, s.LastSeq()-1, func(Message) bool { return true }); err != nil {
			t.Fatal(err)
		}
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			return errors.Join(err, serr)
		}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET "+SimPath+"/events?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") // and never read
		await := func(want int64) {
			t.Helper()
			deadline := time.Now().Add(20 * time.Second)
			for s.streams.Load() != want {
				if time.Now().After(deadline) {
					t.Fatalf("%d event streams open, want %d", s.streams.Load(), want)
				}
				time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
			}
		}
		await(1)
		await(0) // the stalled stream gave up
	})
}
