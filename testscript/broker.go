package testscript

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// waitTimeout is the default timeout of the waiting commands. A negated
// wait (asserting absence) watches for as long, unless given -timeout.
const waitTimeout = 10 * time.Second

// absenceTimeout is how long a negated wait watches by default.
const absenceTimeout = 2 * time.Second

// scriptState is what one script's commands share: the sim, its mark, the
// ids sent by mqtt-flood, the content server.
type scriptState struct {
	mu      sync.Mutex
	sim     *sim.Server
	mark    int64    // mqtt-wait and mqtt-count look only after this Seq
	flood   []string // ids published by mqtt-flood, in order
	content *contentState
}

// states maps each running script to its state; an entry is removed by the
// script's Defer.
var states sync.Map // *goscript.TestScript → *scriptState

func state(ts *goscript.TestScript) *scriptState {
	if st, ok := states.Load(ts); ok {
		return st.(*scriptState)
	}
	st, loaded := states.LoadOrStore(ts, &scriptState{})
	if !loaded {
		ts.Defer(func() { states.Delete(ts) })
	}
	return st.(*scriptState)
}

// simOf returns the script's sim, or an error saying to start it.
func simOf(ts *goscript.TestScript) (*sim.Server, error) {
	st := state(ts)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sim == nil {
		return nil, errors.New("no broker: run the broker command first")
	}
	return st.sim, nil
}

// brokerCommands returns the commands that start the simulated cloud, talk
// MQTT as the cloud side, wait for and count what hosts publish, and inject
// faults.
func brokerCommands() map[string]command {
	return map[string]command{
		"broker": {
			usage: "broker [-tls] [-mosquitto] [-open]",
			run:   cmdBroker,
		},
		"cert": {
			usage: "cert host-id dir",
			run:   cmdCert,
		},
		"mqtt-pub": {
			usage:     "mqtt-pub [-retain] [-qos n] topic file",
			negatable: true,
			run:       cmdMQTTPub,
		},
		"mqtt-wait": {
			usage:     "mqtt-wait [-timeout d] [-count n] topic [regexp]",
			negatable: true,
			run:       cmdMQTTWait,
		},
		"mqtt-count": {
			usage:     "mqtt-count [-timeout d] topic n",
			negatable: true,
			run:       cmdMQTTCount,
		},
		"mqtt-mark": {
			usage: "mqtt-mark",
			run:   cmdMQTTMark,
		},
		"mqtt-flood": {
			usage: "mqtt-flood [-qos n] [-content json] host n [directive]",
			run:   cmdMQTTFlood,
		},
		"mqtt-answers": {
			usage:     "mqtt-answers [-timeout d] [-settle d] [-order file] n",
			negatable: true,
			run:       cmdMQTTAnswers,
		},
		"broker-stop": {
			usage: "broker-stop [-lose-sessions]",
			run:   cmdBrokerStop,
		},
		"broker-start": {
			usage: "broker-start",
			run: func(ts *goscript.TestScript, args []string) error {
				s, err := noArgs(ts, args)
				if err != nil {
					return err
				}
				return s.StartBroker()
			},
		},
		"net-cut":       netCommand("net-cut", sim.NetCut),
		"net-blackhole": netCommand("net-blackhole", sim.NetBlackhole),
		"net-heal":      netCommand("net-heal", sim.NetHealthy),
		"net-delay": {
			usage: "net-delay duration",
			run: func(ts *goscript.TestScript, args []string) error {
				if len(args) != 1 {
					return ErrUsage
				}
				d, err := time.ParseDuration(args[0])
				if err != nil || d < 0 {
					return fmt.Errorf("%w: %q is not a duration", ErrUsage, args[0])
				}
				s, err := simOf(ts)
				if err != nil {
					return err
				}
				return s.Delay(d)
			},
		},
	}
}

func noArgs(ts *goscript.TestScript, args []string) (*sim.Server, error) {
	if len(args) != 0 {
		return nil, ErrUsage
	}
	return simOf(ts)
}

func netCommand(name string, mode sim.NetMode) command {
	return command{
		usage: name,
		run: func(ts *goscript.TestScript, args []string) error {
			s, err := noArgs(ts, args)
			if err != nil {
				return err
			}
			return s.Network(mode)
		},
	}
}

// parseFlags parses a command's flags; any mistake is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return nil
}

func cmdBroker(ts *goscript.TestScript, args []string) error {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	useTLS := fs.Bool("tls", false, "")
	mosquitto := fs.Bool("mosquitto", false, "")
	open := fs.Bool("open", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || (*mosquitto && (*useTLS || *open)) {
		return ErrUsage
	}
	st := state(ts)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sim != nil {
		return errors.New("broker already started")
	}
	logFile, err := os.Create(filepath.Join(ts.Getenv("WORK"), "sim.log"))
	if err != nil {
		return fmt.Errorf("create sim log: %w", err)
	}
	ts.Defer(func() { logFile.Close() })
	logger := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))

	s := &sim.Server{Proxy: true, OpenACL: *open, Logger: logger}
	if *mosquitto {
		url, stop, err := startMosquitto(ts, logFile)
		if err != nil {
			return err
		}
		ts.Defer(stop)
		s.ExternalBroker = url
		s.TLSAddr = sim.Off
	}
	if err := s.Start(); err != nil {
		return err
	}
	ts.Defer(func() {
		if err := s.Close(); err != nil {
			logger.Error("close sim", "error", err)
		}
	})
	st.sim = s

	caPath := filepath.Join(ts.Getenv("WORK"), "sim-ca.pem")
	if err := os.WriteFile(caPath, s.CertificateAuthority().CertPEM(), 0o644); err != nil {
		return fmt.Errorf("write ca: %w", err)
	}
	ts.Setenv("YGG_BROKER", s.BrokerURL())
	if *useTLS {
		ts.Setenv("YGG_BROKER", s.TLSBrokerURL())
	}
	ts.Setenv("YGG_BROKER_TLS", s.TLSBrokerURL())
	ts.Setenv("YGG_API", s.APIURL())
	ts.Setenv("YGG_CA", caPath)
	return nil
}

// startMosquitto runs a mosquitto broker on a free loopback port with a
// configuration that allows anonymous clients and keeps nothing on disk.
func startMosquitto(ts *goscript.TestScript, log io.Writer) (url string, stop func(), err error) {
	path, err := exec.LookPath("mosquitto")
	if err != nil {
		return "", nil, errors.New("broker -mosquitto: mosquitto is not installed (guard the script with [exec:mosquitto])")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(ts.Getenv("WORK"), "mosquitto.conf")
	text := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n", port)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return "", nil, fmt.Errorf("write mosquitto.conf: %w", err)
	}
	cmd := exec.Command(path, "-c", conf)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start mosquitto: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	stop = func() {
		cmd.Process.Kill()
		<-waited
	}
	ctx, cancel := context.WithTimeout(scriptContext(ts), waitTimeout)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "tcp://" + addr, stop, nil
		}
		select {
		case err := <-waited:
			waited <- err
			stop()
			return "", nil, fmt.Errorf("mosquitto exited: %v (see $WORK/sim.log)", err)
		case <-ctx.Done():
			stop()
			return "", nil, fmt.Errorf("mosquitto did not listen on %s: %w", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func cmdCert(ts *goscript.TestScript, args []string) error {
	if len(args) != 2 {
		return ErrUsage
	}
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	ca := s.CertificateAuthority()
	certPEM, keyPEM, err := ca.IssueClient(args[0])
	if err != nil {
		return err
	}
	dir := ts.MkAbs(args[1])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "ca.pem": ca.CertPEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func cmdMQTTPub(ts *goscript.TestScript, args []string) error {
	fs := flag.NewFlagSet("mqtt-pub", flag.ContinueOnError)
	retain := fs.Bool("retain", false, "")
	qos := fs.Int("qos", 1, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 || *qos < 0 || *qos > 2 {
		return ErrUsage
	}
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	payload := os.Expand(ts.ReadFile(fs.Arg(1)), ts.Getenv)
	ctx, cancel := context.WithTimeout(scriptContext(ts), waitTimeout)
	defer cancel()
	return s.Publish(ctx, fs.Arg(0), []byte(payload), byte(*qos), *retain)
}

// timeoutFlag adds -timeout, whose default depends on negation: a wait for
// something to happen, or a watch for it not to happen.
func timeoutFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("timeout", 0, "")
}

func timeoutOr(d time.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// writePayload writes a payload to the command's stdout with a final
// newline, so that cmp against an archive file works.
func writePayload(ts *goscript.TestScript, p []byte) {
	w := ts.Stdout()
	w.Write(p)
	if len(p) == 0 || p[len(p)-1] != '\n' {
		io.WriteString(w, "\n")
	}
}

func cmdMQTTWait(ts *goscript.TestScript, args []string) error {
	fs := flag.NewFlagSet("mqtt-wait", flag.ContinueOnError)
	timeout := timeoutFlag(fs)
	count := fs.Int("count", 1, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 || *count < 1 {
		return ErrUsage
	}
	filter := fs.Arg(0)
	var re *regexp.Regexp
	if fs.NArg() == 2 {
		var err error
		if re, err = regexp.Compile(fs.Arg(1)); err != nil {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	st := state(ts)
	st.mu.Lock()
	mark := st.mark
	st.mu.Unlock()
	// A negated wait asserts absence: it watches for less long.
	d := timeoutOr(*timeout, waitTimeout)
	if isNegated(ts) && *timeout == 0 {
		d = absenceTimeout
	}
	ctx, cancel := context.WithTimeout(scriptContext(ts), d)
	defer cancel()
	var last sim.Message
	n := 0
	_, err = s.Await(ctx, mark, func(m sim.Message) bool {
		if !topicMatch(filter, m.Topic) || (re != nil && !re.Match(m.Payload)) {
			return false
		}
		n++
		last = m
		return n >= *count
	})
	if err != nil {
		what := "a message"
		if *count > 1 {
			what = fmt.Sprintf("%d messages", *count)
		}
		if re != nil {
			what += " matching " + strconv.Quote(re.String())
		}
		return fmt.Errorf("no %s on %s after %v (%d matched)", what, filter, d, n)
	}
	writePayload(ts, last.Payload)
	return nil
}

func cmdMQTTCount(ts *goscript.TestScript, args []string) error {
	fs := flag.NewFlagSet("mqtt-count", flag.ContinueOnError)
	timeout := timeoutFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return ErrUsage
	}
	want, err := strconv.Atoi(fs.Arg(1))
	if err != nil || want < 0 {
		return fmt.Errorf("%w: %q is not a count", ErrUsage, fs.Arg(1))
	}
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	st := state(ts)
	st.mu.Lock()
	mark := st.mark
	st.mu.Unlock()
	filter := fs.Arg(0)
	d := timeoutOr(*timeout, waitTimeout)
	ctx, cancel := context.WithTimeout(scriptContext(ts), d)
	defer cancel()
	n := 0
	s.Await(ctx, mark, func(m sim.Message) bool {
		if topicMatch(filter, m.Topic) {
			n++
		}
		return n >= want && want > 0
	})
	// Count everything recorded so far, to catch extra messages.
	n = 0
	for _, m := range s.Messages(mark) {
		if topicMatch(filter, m.Topic) {
			n++
		}
	}
	fmt.Fprintf(ts.Stdout(), "count=%d\n", n)
	if n != want {
		return fmt.Errorf("%d messages on %s, want %d", n, filter, want)
	}
	return nil
}

func cmdMQTTMark(ts *goscript.TestScript, args []string) error {
	s, err := noArgs(ts, args)
	if err != nil {
		return err
	}
	st := state(ts)
	st.mu.Lock()
	st.mark = s.LastSeq()
	st.mu.Unlock()
	return nil
}

func cmdMQTTFlood(ts *goscript.TestScript, args []string) error {
	fs := flag.NewFlagSet("mqtt-flood", flag.ContinueOnError)
	qos := fs.Int("qos", 1, "")
	content := fs.String("content", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 || fs.NArg() > 3 || *qos < 0 || *qos > 2 {
		return ErrUsage
	}
	host := fs.Arg(0)
	n, err := strconv.Atoi(fs.Arg(1))
	if err != nil || n < 1 {
		return fmt.Errorf("%w: %q is not a positive count", ErrUsage, fs.Arg(1))
	}
	directive := "echo"
	if fs.NArg() == 3 {
		directive = fs.Arg(2)
	}
	if *content != "" && !json.Valid([]byte(*content)) {
		return fmt.Errorf("%w: -content %q is not JSON", ErrUsage, *content)
	}
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(scriptContext(ts), waitTimeout)
	defer cancel()
	topic := yggdrasil.Topic(s.TopicPrefix(), host, yggdrasil.KindData, yggdrasil.DirIn)
	st := state(ts)
	for i := range n {
		c := json.RawMessage(*content)
		if *content == "" {
			c = json.RawMessage(strconv.Quote(fmt.Sprintf("flood %d", len(st.flood)+1)))
		}
		d := yggdrasil.Data{Type: yggdrasil.TypeData, MessageID: yggdrasil.NewMessageID(), Version: yggdrasil.Version,
			Sent: time.Now(), Directive: directive, Content: c}
		payload, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if err := s.Publish(ctx, topic, payload, byte(*qos), false); err != nil {
			return fmt.Errorf("message %d of %d: %w", i+1, n, err)
		}
		st.mu.Lock()
		st.flood = append(st.flood, d.MessageID)
		st.mu.Unlock()
	}
	return nil
}

// answerStats counts the answers (data/out messages by response_to) to the
// flooded ids. An answer is identified by its own message_id: the same
// answer received again (an MQTT QoS 1 redelivery) is "redelivered", while
// a second, different answer to the same id is "duplicated".
type answerStats struct {
	sent, answered, duplicated, missing, nacked, redelivered int
}

func (a answerStats) String() string {
	return fmt.Sprintf("sent=%d answered=%d duplicated=%d missing=%d\nnacked=%d redelivered=%d",
		a.sent, a.answered, a.duplicated, a.missing, a.nacked, a.redelivered)
}

func countAnswers(s *sim.Server, ids []string) answerStats {
	answers := make(map[string]map[string]bool, len(ids)) // request id → answer ids
	for _, id := range ids {
		answers[id] = nil
	}
	st := answerStats{sent: len(ids)}
	for _, m := range s.Messages(0) {
		if m.Kind != yggdrasil.KindData || m.Dir != yggdrasil.DirOut {
			continue
		}
		seen, ok := answers[m.ResponseTo]
		if !ok {
			continue
		}
		switch {
		case seen[m.MessageID]:
			st.redelivered++
			continue
		case seen == nil:
			seen = map[string]bool{}
			answers[m.ResponseTo] = seen
			st.answered++
		default:
			st.duplicated++
		}
		seen[m.MessageID] = true
		var d yggdrasil.Data
		if len(seen) == 1 && json.Unmarshal(m.Payload, &d) == nil {
			if _, nack := d.Metadata[yggdrasil.MetadataError]; nack {
				st.nacked++
			}
		}
	}
	st.missing = st.sent - st.answered
	return st
}

// answerOrder returns the ids of ids in the order their first answer was
// published on data/out.
func answerOrder(s *sim.Server, ids []string) []string {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var order []string
	for _, m := range s.Messages(0) {
		if m.Kind == yggdrasil.KindData && m.Dir == yggdrasil.DirOut && want[m.ResponseTo] {
			order = append(order, m.ResponseTo)
			delete(want, m.ResponseTo)
		}
	}
	return order
}

// sameOrder compares the order the answers were produced in with the order
// they reached the cloud.
func sameOrder(produced, published []string) error {
	if len(produced) != len(published) {
		return fmt.Errorf("order: %d answers produced, %d published", len(produced), len(published))
	}
	for i := range produced {
		if produced[i] != published[i] {
			return fmt.Errorf("order: answer %d published for %s, produced for %s", i, published[i], produced[i])
		}
	}
	return nil
}

func cmdMQTTAnswers(ts *goscript.TestScript, args []string) error {
	fs := flag.NewFlagSet("mqtt-answers", flag.ContinueOnError)
	timeout := timeoutFlag(fs)
	settle := fs.Duration("settle", 0, "")
	orderFile := fs.String("order", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return ErrUsage
	}
	want, err := strconv.Atoi(fs.Arg(0))
	if err != nil || want < 0 {
		return fmt.Errorf("%w: %q is not a count", ErrUsage, fs.Arg(0))
	}
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	st := state(ts)
	st.mu.Lock()
	ids := append([]string(nil), st.flood...)
	st.mu.Unlock()

	d := timeoutOr(*timeout, waitTimeout)
	ctx, cancel := context.WithTimeout(scriptContext(ts), d)
	defer cancel()
	// Wait until every id is answered (or the timeout), re-counting at
	// each new message.
	s.Await(ctx, 0, func(sim.Message) bool { return countAnswers(s, ids).missing == 0 })
	if *settle > 0 {
		sctx, scancel := context.WithTimeout(scriptContext(ts), *settle)
		<-sctx.Done()
		scancel()
	}
	stats := countAnswers(s, ids)
	fmt.Fprintln(ts.Stdout(), stats)
	var problems []string
	if stats.sent != want {
		problems = append(problems, fmt.Sprintf("sent %d, want %d", stats.sent, want))
	}
	if stats.missing > 0 {
		problems = append(problems, fmt.Sprintf("%d unanswered after %v", stats.missing, d))
	}
	if stats.duplicated > 0 {
		problems = append(problems, fmt.Sprintf("%d duplicate answers", stats.duplicated))
	}
	if *orderFile != "" {
		b, err := os.ReadFile(ts.MkAbs(*orderFile))
		if err != nil {
			return err
		}
		if err := sameOrder(strings.Fields(string(b)), answerOrder(s, ids)); err != nil {
			problems = append(problems, err.Error())
		} else {
			fmt.Fprintln(ts.Stdout(), "in order")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func cmdBrokerStop(ts *goscript.TestScript, args []string) error {
	fs := flag.NewFlagSet("broker-stop", flag.ContinueOnError)
	lose := fs.Bool("lose-sessions", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return ErrUsage
	}
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	return s.StopBroker(*lose)
}

// topicMatch reports whether topic matches an MQTT filter (+ and #).
func topicMatch(filter, topic string) bool {
	f := strings.Split(filter, "/")
	t := strings.Split(topic, "/")
	for i, part := range f {
		switch {
		case part == "#":
			return true
		case i >= len(t):
			return false
		case part != "+" && part != t[i]:
			return false
		}
	}
	return len(f) == len(t)
}
