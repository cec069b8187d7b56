package yggsimcmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ygglab/yggdrasil/fakes/logbuf"
	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// startServe runs "yggsim serve" in-process and returns its addresses.
func startServe(t *testing.T, extra ...string) Addresses {
	t.Helper()
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "addr.json")
	args := append([]string{"serve", "--mqtt", "127.0.0.1:0", "--mqtts", "127.0.0.1:0", "--api", "127.0.0.1:0",
		"--content", "127.0.0.1:0", "--state", filepath.Join(dir, "state"), "--addr-file", addrFile, "--log-level", "warn"}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stdout, stderr logbuf.Buffer
	go func() { done <- Run(ctx, args, &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(addrFile)
		if err == nil {
			var a Addresses
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatal(err)
			}
			return a
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not write its address file")
		}
	}
}

// run runs one yggsim command line and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := ExitCode(Run(ctx, args, &stdout, &stderr), &stderr)
	return code, stdout.String(), stderr.String()
}

// fakeHost connects over TLS with a certificate from "yggsim cert", says
// it is online, answers pings and echoes data.
// onlineHost issues a certificate for id with "yggsim cert", connects a
// fake host with it, and waits with "yggsim wait" until it is online.
func onlineHost(t *testing.T, a Addresses, id string) {
	t.Helper()
	certDir := filepath.Join(t.TempDir(), id)
	if code, _, errOut := run(t, "cert", "--state", filepath.Dir(a.CA), "--out", certDir, id); code != 0 {
		t.Fatalf("cert: %s", errOut)
	}
	fakeHost(t, a, certDir, id)
	if code, _, errOut := run(t, "wait", "--api", a.API, "--timeout", "10s", id); code != 0 {
		t.Fatalf("wait: %s", errOut)
	}
}

func fakeHost(t *testing.T, a Addresses, certDir, id string) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(certDir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	topic := func(kind, dir string) string { return yggdrasil.Topic("yggdrasil", id, kind, dir) }
	c := paho.NewClient(paho.NewClientOptions().AddBroker(a.MQTTS).SetClientID(id).
		SetTLSConfig(&tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool}))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect over TLS: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	c.Subscribe(topic("control", "in"), 1, func(c paho.Client, m paho.Message) {
		cmd, err := yggdrasil.DecodeCommand(m.Payload())
		if err == nil && cmd.Content.Command == "ping" {
			b, _ := json.Marshal(yggdrasil.Event{Type: "event", MessageID: yggdrasil.NewMessageID(), ResponseTo: cmd.MessageID, Version: 1, Content: "pong"})
			c.Publish(topic("control", "out"), 1, false, b)
		}
	}).Wait()
	c.Subscribe(topic("data", "in"), 1, func(c paho.Client, m paho.Message) {
		d, err := yggdrasil.DecodeData(m.Payload())
		if err == nil {
			b, _ := json.Marshal(yggdrasil.Data{Type: "data", MessageID: yggdrasil.NewMessageID(), ResponseTo: d.MessageID, Version: 1, Directive: d.Directive, Content: d.Content})
			c.Publish(topic("data", "out"), 1, false, b)
		}
	}).Wait()
	st, _ := json.Marshal(yggdrasil.ConnectionStatus{Type: "connection-status", MessageID: yggdrasil.NewMessageID(), Version: 1, Sent: time.Now(),
		Content: yggdrasil.StatusContent{State: "online", Dispatchers: map[string]map[string]string{"echo": nil}}})
	c.Publish(topic("control", "out"), 1, true, st).Wait()
}

func TestServeAndClients(t *testing.T) {
	a := startServe(t)
	if !strings.HasPrefix(a.MQTT, "tcp://127.0.0.1:") || !strings.HasPrefix(a.MQTTS, "ssl://127.0.0.1:") ||
		!strings.HasPrefix(a.API, "http://127.0.0.1:") || !strings.HasPrefix(a.Content, "http://127.0.0.1:") || a.CA == "" {
		t.Fatalf("addresses = %+v", a)
	}
	state := filepath.Dir(a.CA)

	// cert: a host certificate from the serve's CA.
	certDir := filepath.Join(t.TempDir(), "host1")
	code, out, errOut := run(t, "cert", "--state", state, "--out", certDir, "host1")
	if code != 0 || !strings.Contains(out, "cert.pem") {
		t.Fatalf("cert = %d %s %s", code, out, errOut)
	}
	fakeHost(t, a, certDir, "host1")

	// hosts: host1 shows up online (poll: the status travels).
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, errOut = run(t, "hosts", "--api", a.API)
		if code != 0 {
			t.Fatalf("hosts = %d %s", code, errOut)
		}
		if strings.Contains(out, "host1") && strings.Contains(out, "online") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts never showed host1 online:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(out, "HOST") || !strings.Contains(out, "echo") {
		t.Errorf("hosts =\n%s", out)
	}
	code, out, _ = run(t, "hosts", "--api", a.API, "--json")
	if code != 0 || !strings.Contains(out, `"client_id": "host1"`) {
		t.Errorf("hosts --json = %d %s", code, out)
	}

	// send --wait prints the echoed content; send alone prints the id.
	code, out, errOut = run(t, "send", "host1", "--api", a.API, "--directive", "echo", "--content", `{"n":1}`, "--wait")
	if code != 0 || out != "{\"n\":1}\n" {
		t.Errorf("send --wait = %d %q %s", code, out, errOut)
	}
	code, out, errOut = run(t, "send", "--api", a.API, "--directive", "echo", "--content", "plain words", "--metadata", "k=v", "host1")
	if code != 0 || len(strings.TrimSpace(out)) != 36 {
		t.Errorf("send = %d %q %s, want a message id", code, out, errOut)
	}

	// ping prints the round trip.
	code, out, errOut = run(t, "ping", "--api", a.API, "host1")
	if code != 0 || !strings.HasPrefix(out, "pong from host1 in ") {
		t.Errorf("ping = %d %q %s", code, out, errOut)
	}

	// Failures: an unknown host.
	if code, _, errOut = run(t, "ping", "--api", a.API, "nobody"); code != 1 || !strings.Contains(errOut, "not connected") {
		t.Errorf("ping nobody = %d %s", code, errOut)
	}
	if code, _, errOut = run(t, "send", "--api", a.API, "--directive", "echo", "nobody"); code != 1 || !strings.Contains(errOut, "404 No connection to the rhc client\n") {
		t.Errorf("send nobody = %d %s", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{"no_command", nil, 2, "Usage: yggsim <command>"},
		{"unknown", []string{"nope"}, 2, `unknown command "nope"`},
		{"help", []string{"--help"}, 0, "Commands:"},
		{"serve_help", []string{"serve", "--help"}, 0, "Usage: yggsim serve"},
		{"send_help", []string{"send", "-h"}, 0, "--directive"},
		{"cert_help", []string{"cert", "--help"}, 0, "CN is HOST-ID"},
		{"ping_no_host", []string{"ping"}, 2, "one HOST"},
		{"send_no_directive", []string{"send", "h1"}, 2, "--directive"},
		{"send_bad_metadata", []string{"send", "h1", "--directive", "d", "--metadata", "novalue"}, 2, "key=value"},
		{"cert_no_out", []string{"cert", "--state", "x", "h1"}, 2, "--out"},
		{"serve_bad_flag", []string{"serve", "--bogus"}, 2, "bogus"},
		{"hosts_args", []string{"hosts", "extra"}, 2, "no arguments"},
		{"demo", []string{"demo", "--yggd", "/nonexistent/yggd", "--echo-worker", "/nonexistent/echo-worker", "--mqtt", "127.0.0.1:0", "--mqtts", "127.0.0.1:0", "--api", "127.0.0.1:0", "--content", "127.0.0.1:0"}, 1, "nonexistent"},
		{"api_down", []string{"hosts", "--api", "http://127.0.0.1:1"}, 1, "hosts:"},
		{"version", []string{"--version"}, 0, "yggsim version "},
		{"send_count_without_all", []string{"send", "h1", "--directive", "d", "--count", "2"}, 2, "--count N needs --all"},
		{"disconnect_no_host", []string{"disconnect"}, 2, "one HOST"},
		{"disconnect_help", []string{"disconnect", "--help"}, 0, "Usage: yggsim disconnect"},
		{"reconnect_zero_delay", []string{"reconnect", "--delay", "0s", "h1"}, 2, "at least 1s"},
		{"reconnect_fraction", []string{"reconnect", "--delay", "1500ms", "h1"}, 2, "whole seconds"},
		{"reconnect_help", []string{"reconnect", "--help"}, 0, "--delay"},
		{"fault_no_action", []string{"fault"}, 2, "fault takes an action"},
		{"fault_unknown", []string{"fault", "flood"}, 2, "cut, blackhole"},
		{"fault_delay_no_duration", []string{"fault", "delay"}, 2, "cut, blackhole"},
		{"fault_delay_bad", []string{"fault", "delay", "soon"}, 2, "a duration like 200ms"},
		{"fault_help", []string{"fault", "--help"}, 0, "blackhole  keep connections open"},
		{"broker_no_action", []string{"broker"}, 2, "stop [--lose-sessions] or start"},
		{"broker_start_lose", []string{"broker", "start", "--lose-sessions"}, 2, "stop [--lose-sessions] or start"},
		{"broker_help", []string{"broker", "--help"}, 0, "--lose-sessions"},
		{"history_no_host", []string{"history"}, 2, "one HOST"},
		{"history_help", []string{"history", "--help"}, 0, "Usage: yggsim history"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.out) {
				t.Errorf("yggsim %v = %d\nstdout: %s\nstderr: %s\nwant %d with %q", tt.args, code, out, errOut, tt.code, tt.out)
			}
		})
	}
}

func TestControlCommands(t *testing.T) {
	a := startServe(t, "--proxy")
	onlineHost(t, a, "host1")
	tests := []struct {
		name string
		args []string
		code int
		out  string // stdout, or stderr on failure
	}{
		{"disconnect", []string{"disconnect", "host1"}, 0, "sent disconnect to host1\n"},
		{"disconnect_unknown", []string{"disconnect", "nobody"}, 1, "yggsim: disconnect nobody: 400 No connection found for node (0000001:nobody)\n"},
		{"reconnect", []string{"reconnect", "--delay", "3s", "host1"}, 0, "sent reconnect to host1 (delay 3s)\n"},
		{"reconnect_unknown", []string{"reconnect", "nobody"}, 1, "yggsim: reconnect nobody: 400 No connection found for node (0000001:nobody)\n"},
		{"fault_status", []string{"fault", "status"}, 0, "network healthy delay 0s\n"},
		{"fault_delay", []string{"fault", "delay", "5ms"}, 0, "network healthy delay 5ms\n"},
		{"fault_blackhole", []string{"fault", "blackhole"}, 0, "network blackhole delay 5ms\n"},
		{"fault_heal", []string{"fault", "heal"}, 0, "network healthy delay 0s\n"},
		{"history_unknown", []string{"history", "nobody"}, 1, "yggsim: history nobody: 404 Not Found: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, append(tt.args, "--api", a.API)...)
			got := out
			if tt.code != 0 {
				got = errOut
			}
			if code != tt.code || !strings.HasPrefix(got, tt.out) {
				t.Errorf("yggsim %v = %d\nstdout: %s\nstderr: %s\nwant %d with %q", tt.args, code, out, errOut, tt.code, tt.out)
			}
		})
	}
	// history lists what the host was sent: both commands, in order.
	code, out, errOut := run(t, "history", "--api", a.API, "host1")
	i, j := strings.Index(out, `"command":"disconnect"`), strings.Index(out, `"command":"reconnect"`)
	if code != 0 || i < 0 || j < i || !strings.Contains(out, " yggdrasil/host1/control/in qos=1") {
		t.Errorf("history = %d\n%s\n%s", code, out, errOut)
	}
}

// TestPSK calls a sim that requires a pre-shared key, without and with
// $YGGSIM_PSK.
func TestPSK(t *testing.T) {
	a := startServe(t, "--psk", "k")
	onlineHost(t, a, "host1")
	code, _, errOut := run(t, "send", "--api", a.API, "--directive", "echo", "host1")
	if code != 1 || !strings.HasSuffix(errOut, "401 Unauthorized: Authentication failed\n") {
		t.Errorf("send without a key = %d %s", code, errOut)
	}
	t.Setenv("YGGSIM_PSK", "k")
	if code, out, errOut := run(t, "send", "--api", a.API, "--directive", "echo", "--wait", "host1"); code != 0 || out != "null\n" {
		t.Errorf("send with the key = %d %q %s", code, out, errOut)
	}
	if code, out, errOut := run(t, "disconnect", "--api", a.API, "host1"); code != 0 || out != "sent disconnect to host1\n" {
		t.Errorf("disconnect with the key = %d %q %s", code, out, errOut)
	}
}

// TestBrokerCommand stops and starts a broker no client uses: mochi 2.7.9
// races with itself when a client reconnects while the server closes.
func TestBrokerCommand(t *testing.T) {
	a := startServe(t)
	for _, tt := range []struct {
		args []string
		out  string
	}{
		{[]string{"broker", "stop", "--lose-sessions"}, "broker stopped\n"},
		{[]string{"broker", "stop"}, "broker stopped\n"},
		{[]string{"broker", "start"}, "broker running on " + a.MQTT + "\n"},
	} {
		if code, out, errOut := run(t, append(tt.args, "--api", a.API)...); code != 0 || out != tt.out {
			t.Errorf("yggsim %v = %d %q %s, want %q", tt.args, code, out, errOut, tt.out)
		}
	}
}

func TestPrintAnswer(t *testing.T) {
	tests := []struct {
		name, payload string
		asJSON        bool
		out, nack     string
	}{
		{"answer", `{"type":"data","metadata":{"k":"v"},"content":{"n":1}}`, false, "{\"n\":1}\n", ""},
		{"nack", `{"type":"data","metadata":{"yggdrasil-error":"unknown-directive"},"content":{"error":"unknown-directive","message":"no worker handles \"x\""}}`, false,
			`{"error":"unknown-directive","message":"no worker handles \"x\""}` + "\n", `negative acknowledgement unknown-directive: no worker handles "x"`},
		{"not_json", `plain`, false, "plain\n", ""},
		{"json", `{"content":1}`, true, "{\n  \"seq\": 0,", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			nack := printAnswer(&b, sim.Message{Payload: []byte(tt.payload)}, tt.asJSON)
			if !strings.HasPrefix(b.String(), tt.out) || nack != tt.nack {
				t.Errorf("printAnswer(%s) printed %q, returned %q; want %q and %q", tt.payload, b.String(), nack, tt.out, tt.nack)
			}
		})
	}
}

func TestReadContent(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(f, []byte("{\"a\": 1}\n"), 0o644)
	tests := []struct{ name, arg, stdin, want string }{
		{"json_literal", `[1,2]`, "", `[1,2]`},
		{"string_literal", `hello`, "", `"hello"`},
		{"file", "@" + f, "", `{"a": 1}`},
		{"stdin", "-", "text\n", `"text\n"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readContent(tt.arg, strings.NewReader(tt.stdin))
			if err != nil || string(got) != tt.want {
				t.Errorf("readContent(%q) = %s, %v; want %s", tt.arg, got, err, tt.want)
			}
		})
	}
}
