package yggsimcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/ygglab/yggdrasil/fakes/content"
	"github.com/ygglab/yggdrasil/sim"
)

// Default addresses of serve, and the API the clients use.
const (
	defaultMQTT    = "127.0.0.1:1883"
	defaultMQTTS   = "127.0.0.1:8883"
	defaultAPIAddr = "127.0.0.1:8480"
	defaultContent = "127.0.0.1:8481"
	defaultAPI     = "http://" + defaultAPIAddr
)

// ServeConfig is what serve runs. Addresses may use port 0; sim.Off
// disables the plain or the TLS listener, the API listener or the content
// server.
type ServeConfig struct {
	MQTTAddr, TLSAddr, APIAddr, ContentAddr string
	ContentDir                              string // served by the content server
	ExternalBroker                          string // use this broker instead of the embedded one
	StateDir                                string // keeps the CA; "" keeps it in memory
	Prefix                                  string
	PSK                                     string
	Proxy                                   bool // fault proxies in front of the broker
	OpenACL                                 bool
	JournalLimit                            int           // messages the journal keeps; 0: sim.DefaultJournalLimit
	JournalMaxBytes                         int64         // bytes the journal keeps; 0: sim.DefaultJournalMaxBytes
	ForgetAfter                             time.Duration // hosts not online are dropped this long after their last message; < 0 never
	Logger                                  *slog.Logger
}

// Addresses are where a running stack listens, as serve prints them.
type Addresses struct {
	MQTT    string `json:"mqtt"`
	MQTTS   string `json:"mqtts,omitempty"`
	API     string `json:"api,omitempty"`
	Content string `json:"content,omitempty"`
	CA      string `json:"ca,omitempty"` // the CA certificate file, with a state directory
	Prefix  string `json:"prefix"`
}

// Stack is everything serve runs.
type Stack struct {
	Sim     *sim.Server
	Content *content.Server // nil when disabled
	caFile  string
}

// StartServe starts the sim and the content server.
func StartServe(cfg ServeConfig) (*Stack, error) {
	s := &sim.Server{MQTTAddr: cfg.MQTTAddr, TLSAddr: cfg.TLSAddr, APIAddr: cfg.APIAddr,
		ExternalBroker: cfg.ExternalBroker, StateDir: cfg.StateDir, Prefix: cfg.Prefix, PSK: cfg.PSK,
		Proxy: cfg.Proxy, OpenACL: cfg.OpenACL, JournalLimit: cfg.JournalLimit, JournalMaxBytes: cfg.JournalMaxBytes,
		ForgetAfter: cfg.ForgetAfter, Logger: cfg.Logger}
	if err := s.Start(); err != nil {
		return nil, err
	}
	st := &Stack{Sim: s}
	if cfg.StateDir != "" {
		st.caFile = filepath.Join(cfg.StateDir, "ca.pem")
	}
	if cfg.ContentAddr != sim.Off {
		st.Content = &content.Server{Addr: cfg.ContentAddr, Dir: cfg.ContentDir, Logger: cfg.Logger}
		if err := st.Content.Start(); err != nil {
			s.Close()
			return nil, err
		}
	}
	return st, nil
}

// Addresses returns where the stack listens.
func (st *Stack) Addresses() Addresses {
	a := Addresses{MQTT: st.Sim.BrokerURL(), MQTTS: st.Sim.TLSBrokerURL(), API: st.Sim.APIURL(),
		CA: st.caFile, Prefix: st.Sim.TopicPrefix()}
	if st.Content != nil {
		a.Content = st.Content.URL()
	}
	return a
}

// Close stops everything.
func (st *Stack) Close() error {
	var errs []error
	if st.Content != nil {
		errs = append(errs, st.Content.Close())
	}
	errs = append(errs, st.Sim.Close())
	return errors.Join(errs...)
}

const serveUsage = `
Usage: yggsim serve [flags]

Run the simulated cloud until interrupted: an MQTT broker (plain TCP and
TLS with client certificates), the HTTP API (cloud-connector's REST
interface under /api/cloud-connector/ and the sim's own under /api/sim/),
and a detached-content server.

The broker lets a client subscribe only to <prefix>/<its id>/+/in and
publish only to <prefix>/<its id>/+/out; on the TLS listener the client id
must be the CN of the client certificate, which must be signed by the sim's
CA (see "yggsim cert"). The plain listener authenticates nobody: it is for
hosts without certificates (yggd --client-id, yggdrasil 0.1.x, load tests)
and refuses the client id of any host that authenticates with a
certificate (seen on the TLS listener, or issued one by the CA in --state). With --state the CA is kept in that directory
(ca.pem is the certificate to give clients as their CA); without it the CA
lives in memory and is lost at exit.

The sim keeps a journal of the traffic it sees (for /api/sim/messages,
/api/sim/events and each host's history), bounded by
--journal-max-messages and --journal-max-bytes: the oldest messages go
first, and a reader that fell behind is told how many it missed.

Any address may use port 0 to let the system choose; "off" disables the
plain or the TLS listener, the API or the content server. The addresses are printed on
standard output, one "name url" per line, or as one JSON object with
--json; --addr-file also writes that JSON object to a file, so that
scripts can find the ports.

Examples:
  yggsim serve --state ~/.local/state/yggsim
  yggsim serve --mqtt 127.0.0.1:0 --mqtts off --addr-file /tmp/yggsim.json
  yggsim serve --broker tcp://127.0.0.1:1883   # use a running mosquitto
`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", serveUsage, stdout, stderr)
	cfg := ServeConfig{}
	fs.StringVar(&cfg.MQTTAddr, "mqtt", defaultMQTT, "plain MQTT `address` (no authentication), or off")
	fs.StringVar(&cfg.TLSAddr, "mqtts", defaultMQTTS, "MQTT over TLS `address`, or off")
	fs.StringVar(&cfg.APIAddr, "api", defaultAPIAddr, "HTTP API `address`, or off")
	fs.StringVar(&cfg.ContentAddr, "content", defaultContent, "content server `address`, or off")
	fs.StringVar(&cfg.ContentDir, "content-dir", "", "`directory` the content server serves")
	fs.StringVar(&cfg.ExternalBroker, "broker", "", "`URL` of an external broker to use instead of the embedded one (no ACL, no TLS listener)")
	fs.StringVar(&cfg.StateDir, "state", os.Getenv("YGGSIM_STATE"), "state `directory` keeping the CA (default $YGGSIM_STATE; in memory if empty)")
	fs.StringVar(&cfg.Prefix, "prefix", "yggdrasil", "topic `prefix`")
	fs.StringVar(&cfg.PSK, "psk", "", "require this pre-shared `key` on the cloud-connector API")
	fs.BoolVar(&cfg.Proxy, "proxy", false, "put fault-injection proxies in front of the broker (see /api/sim/network)")
	fs.BoolVar(&cfg.OpenACL, "open-acl", false, "let any client use any topic")
	fs.IntVar(&cfg.JournalLimit, "journal-max-messages", sim.DefaultJournalLimit, "messages the journal of traffic keeps (the oldest go first)")
	fs.Int64Var(&cfg.JournalMaxBytes, "journal-max-bytes", sim.DefaultJournalMaxBytes, "`bytes` the journal of traffic keeps (payloads, their JSON and per-message overhead)")
	fs.DurationVar(&cfg.ForgetAfter, "forget-after", sim.DefaultForgetAfter, "drop hosts that are not online this `long` after their last message (negative: never; 0: the default)")
	asJSON := fs.Bool("json", false, "print the addresses as one JSON object")
	addrFile := fs.String("addr-file", "", "also write the addresses as JSON to this `file`")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: serve takes no arguments", ErrUsage)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("%w: --log-level %q", ErrUsage, *level)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if cfg.ExternalBroker != "" && fs.Lookup("mqtts").Value.String() == defaultMQTTS {
		cfg.TLSAddr = sim.Off
	}
	setMemoryLimit(cfg)
	st, err := StartServe(cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer st.Close()
	a := st.Addresses()
	b, _ := json.Marshal(a)
	if *addrFile != "" {
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("serve: write address file: %w", err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			return fmt.Errorf("serve: write address file: %w", err)
		}
	}
	if *asJSON {
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		for _, kv := range [][2]string{{"mqtt", a.MQTT}, {"mqtts", a.MQTTS}, {"api", a.API}, {"content", a.Content}, {"ca", a.CA}} {
			if kv[1] != "" {
				fmt.Fprintf(stdout, "%-8s %s\n", kv[0], kv[1])
			}
		}
	}
	<-ctx.Done()
	return nil
}

// setMemoryLimit gives the process a soft memory limit of one and a half
// times the journal's byte bound plus 64 MiB, unless GOMEMLIMIT sets one:
// the journal is most of what the sim keeps, and without a limit the Go
// heap grows to twice what is live before it collects (the sim reached
// 197 MiB of RSS holding a full 64 MiB journal; see bench-sustained).
func setMemoryLimit(cfg ServeConfig) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	journal := cfg.JournalMaxBytes
	if journal <= 0 {
		journal = sim.DefaultJournalMaxBytes
	}
	limit := journal*3/2 + 64<<20
	debug.SetMemoryLimit(limit)
	if cfg.Logger != nil {
		cfg.Logger.Debug("soft memory limit", "bytes", limit)
	}
}
