package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// More test-only programs: clients that look at the cloud side from
// outside, as any other party on the network could.
var testPrograms2 = map[string]func() int{
	"mqtt-client": mqttClient,
	"http-get":    httpGet,
}

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// mqttClient is a raw MQTT client, not yggd: it connects with the client id
// and certificate it is given (which need not match), subscribes to each
// -sub filter, and prints what the broker answered:
//
//	mqtt-client -broker URL [-client-id ID] [-cert FILE -key FILE] [-ca FILE] [-sub FILTER]...
//
// It prints "connect: accepted" or "connect: refused (why)", then one
// "subscribe FILTER: granted qos N" or "subscribe FILTER: refused (code)"
// per filter. Exit status: 0 when everything was accepted, 1 when the broker
// refused something, 2 for a usage error.
func mqttClient() int {
	fs := flag.NewFlagSet("mqtt-client", flag.ContinueOnError)
	broker := fs.String("broker", "", "broker URL")
	clientID := fs.String("client-id", "", "MQTT client id")
	certFile := fs.String("cert", "", "client certificate (PEM)")
	keyFile := fs.String("key", "", "client key (PEM)")
	caFile := fs.String("ca", "", "CA certificate (PEM) to trust for the broker")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for each answer")
	var subs repeated
	fs.Var(&subs, "sub", "topic filter to subscribe to (repeatable)")
	if err := fs.Parse(os.Args[1:]); err != nil || *broker == "" || fs.NArg() != 0 || (*certFile == "") != (*keyFile == "") {
		fmt.Fprintln(os.Stderr, "usage: mqtt-client -broker URL [-client-id ID] [-cert FILE -key FILE] [-ca FILE] [-sub FILTER]...")
		return 2
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mqtt-client:", err)
			return 2
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			fmt.Fprintf(os.Stderr, "mqtt-client: %s holds no certificate\n", *caFile)
			return 2
		}
	}
	if *certFile != "" {
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mqtt-client:", err)
			return 2
		}
		tlsConfig.Certificates = []tls.Certificate{pair}
	}
	opts := paho.NewClientOptions().AddBroker(*broker).SetClientID(*clientID).SetTLSConfig(tlsConfig).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(*timeout).SetCleanSession(true)
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(*timeout) {
		fmt.Println("connect: refused (no answer)")
		return 1
	}
	if err := tok.Error(); err != nil {
		fmt.Printf("connect: refused (%v)\n", err)
		return 1
	}
	fmt.Println("connect: accepted")
	defer c.Disconnect(100)
	status := 0
	for _, filter := range subs {
		st := c.Subscribe(filter, 1, nil)
		if !st.WaitTimeout(*timeout) {
			fmt.Printf("subscribe %s: refused (no answer)\n", filter)
			status = 1
			continue
		}
		if err := st.Error(); err != nil {
			fmt.Printf("subscribe %s: refused (%v)\n", filter, err)
			status = 1
			continue
		}
		code := st.(*paho.SubscribeToken).Result()[filter]
		if code >= 0x80 {
			fmt.Printf("subscribe %s: refused (code %#x)\n", filter, code)
			status = 1
			continue
		}
		fmt.Printf("subscribe %s: granted qos %d\n", filter, code)
	}
	return status
}

// httpGet prints the body of a GET; it exits 1 on an HTTP error status.
//
//	http-get URL
func httpGet() int {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: http-get URL")
		return 2
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "http-get:", err)
		return 1
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fmt.Fprintln(os.Stderr, "http-get:", err)
		return 1
	}
	if resp.StatusCode >= 400 {
		fmt.Fprintln(os.Stderr, "http-get:", resp.Status)
		return 1
	}
	return 0
}
