package sim_test

// This test is a client of cloud-connector written only from its
// documentation (docs/cloud-connector-api.md, corrected where the real
// service's code differs: an unknown host's v2 status is 200
// "disconnected"), with net/http and encoding/json: it uses no sim type, so
// it checks that the sim speaks the documented interface. The host is a
// paho client that publishes an online connection-status.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ygglab/yggdrasil/sim"
)

type ccClient struct {
	t    *testing.T
	base string
}

// do sends a request with the PSK identity headers and decodes the answer.
func (c ccClient) do(method, path string, body any, out any) int {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+"/api/cloud-connector"+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-rh-cloud-connector-client-id", "test-service")
	req.Header.Set("x-rh-cloud-connector-psk", "k")
	req.Header.Set("x-rh-cloud-connector-org-id", "000001")
	req.Header.Set("x-rh-cloud-connector-account", "0000001")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			c.t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func TestCloudConnectorClient(t *testing.T) {
	s := &sim.Server{TLSAddr: sim.Off, PSK: "k", Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := ccClient{t, s.APIURL()}

	// The host connects and says it is online.
	got := make(chan map[string]any, 4)
	opts := paho.NewClientOptions().AddBroker(s.BrokerURL()).SetClientID("host-1")
	host := paho.NewClient(opts)
	if tok := host.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect host: %v", tok.Error())
	}
	defer host.Disconnect(0)
	tok := host.Subscribe("yggdrasil/host-1/data/in", 1, func(_ paho.Client, m paho.Message) {
		var v map[string]any
		json.Unmarshal(m.Payload(), &v)
		got <- v
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	status := `{"type":"connection-status","message_id":"s1","response_to":"","version":1,"sent":"2024-01-01T00:00:00Z",` +
		`"content":{"canonical_facts":{"fqdn":"host-1.example"},"dispatchers":{"echo":null},"state":"online"}}`
	if tok := host.Publish("yggdrasil/host-1/control/out", 1, false, status); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish status: %v", tok.Error())
	}

	// v2: list connections until the host shows up.
	var list struct {
		Meta struct {
			Count int `json:"count"`
		} `json:"meta"`
		Links map[string]string `json:"links"`
		Data  []struct {
			Account        string         `json:"account"`
			OrgID          string         `json:"org_id"`
			ClientID       string         `json:"client_id"`
			CanonicalFacts map[string]any `json:"canonical_facts"`
			Dispatchers    map[string]any `json:"dispatchers"`
		} `json:"data"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if code := c.do("GET", "/v2/connections?limit=10&offset=0", nil, &list); code != 200 {
			t.Fatalf("list connections: %d", code)
		}
		if list.Meta.Count == 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the host never showed up in /v2/connections")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if d := list.Data[0]; d.ClientID != "host-1" || d.CanonicalFacts["fqdn"] != "host-1.example" || d.Account == "" || d.OrgID == "" {
		t.Errorf("connection = %+v", d)
	}
	if _, ok := list.Data[0].Dispatchers["echo"]; !ok || list.Links["first"] == "" || list.Links["last"] == "" {
		t.Errorf("list = %+v", list)
	}

	// v2: status.
	var st struct {
		ClientID string `json:"client_id"`
		Status   string `json:"status"`
	}
	if code := c.do("GET", "/v2/connections/host-1/status", nil, &st); code != 200 || st.Status != "connected" || st.ClientID != "host-1" {
		t.Errorf("status = %d %+v", code, st)
	}
	if code := c.do("GET", "/v2/connections/nobody/status", nil, &st); code != 200 || st.Status != "disconnected" {
		t.Errorf("unknown status = %d %+v, want 200 disconnected", code, st)
	}
	var e struct {
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}

	// v2 and v1: send a message; the host receives a data message with the
	// returned id.
	var id struct {
		ID string `json:"id"`
	}
	send := []struct {
		path string
		body any
	}{
		{"/v2/connections/host-1/message", map[string]any{"directive": "echo", "payload": map[string]any{"n": 1}, "metadata": map[string]string{"k": "v"}}},
		{"/v1/message", map[string]any{"account": "0000001", "recipient": "host-1", "directive": "echo", "payload": "two"}},
	}
	for _, m := range send {
		if code := c.do("POST", m.path, m.body, &id); code != 201 || id.ID == "" {
			t.Fatalf("POST %s = %d %+v", m.path, code, id)
		}
		select {
		case v := <-got:
			if v["message_id"] != id.ID || v["type"] != "data" || v["directive"] != "echo" || v["version"] != float64(1) {
				t.Errorf("host got %v, want a data message with id %s", v, id.ID)
			}
		case <-ctx.Done():
			t.Fatalf("the host did not receive the message sent by %s", m.path)
		}
	}

	// v1: status.
	var v1 struct {
		Status string `json:"status"`
	}
	if code := c.do("POST", "/v1/connection/status", map[string]string{"account": "0000001", "node_id": "host-1"}, &v1); code != 200 || v1.Status != "connected" {
		t.Errorf("v1 status = %d %+v", code, v1)
	}
	if code := c.do("POST", "/v2/connections/nobody/message", map[string]any{"directive": "echo"}, &e); code != 404 {
		t.Errorf("message to an unknown host = %d, want 404", code)
	}
}
