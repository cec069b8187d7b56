package yggsimcmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/yggdrasil"
)

// apiClient calls the sim's API.
type apiClient struct {
	base string
	http *http.Client
}

// apiFlag adds --api, defaulting to $YGGSIM_API or the serve default.
func apiFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("YGGSIM_API")
	if def == "" {
		def = defaultAPI
	}
	return fs.String("api", def, "`URL` of the sim's API (default $YGGSIM_API or "+defaultAPI+")")
}

// do sends a request and decodes a 2xx JSON answer into out; any other
// status becomes an error carrying the API's detail.
func (c apiClient) do(ctx context.Context, method, path string, body any, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.base, "/")+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if psk := os.Getenv("YGGSIM_PSK"); psk != "" && strings.HasPrefix(path, sim.CloudConnectorPath) {
		req.Header.Set("x-rh-cloud-connector-client-id", "yggsim")
		req.Header.Set("x-rh-cloud-connector-psk", psk)
		req.Header.Set("x-rh-cloud-connector-org-id", orDefault(os.Getenv("YGGSIM_ORG_ID"), "000001"))
		req.Header.Set("x-rh-cloud-connector-account", orDefault(os.Getenv("YGGSIM_ACCOUNT"), "0000001"))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e sim.APIError
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		switch {
		case json.Unmarshal(b, &e) == nil && e.Detail != "" && e.Title == e.Detail:
			return fmt.Errorf("%d %s", e.Status, e.Detail) // cloud-connector repeats the title as the detail
		case e.Detail != "":
			return &e
		case len(bytes.TrimSpace(b)) > 0:
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

const hostsUsage = `
Usage: yggsim hosts [--api URL] [--json]

List the hosts the sim has seen, with the state of their latest
connection-status, when they were last heard from, their workers
(dispatchers) and how many negative acknowledgements they sent.
`

func runHosts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("hosts", hostsUsage, stdout, stderr)
	api := apiFlag(fs)
	asJSON := fs.Bool("json", false, "print the hosts as JSON")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: hosts takes no arguments", ErrUsage)
	}
	var hosts []sim.Host
	if err := (apiClient{*api, http.DefaultClient}).do(ctx, "GET", sim.SimPath+"/hosts", nil, &hosts); err != nil {
		return fmt.Errorf("hosts: %w", err)
	}
	if *asJSON {
		return printJSON(stdout, hosts)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tLAST SEEN\tDISPATCHERS\tNACKS")
	for _, h := range hosts {
		var d map[string]any
		json.Unmarshal(h.Dispatchers, &d)
		names := make([]string, 0, len(d))
		for k := range d {
			names = append(names, k)
		}
		state := h.State
		if state == "" {
			state = "unknown"
		}
		seen := "-"
		if !h.LastSeen.IsZero() {
			seen = h.LastSeen.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", h.ID, state, seen, strings.Join(slices.Sorted(slices.Values(names)), ","), len(h.Nacks))
	}
	return tw.Flush()
}

const waitUsage = `
Usage: yggsim wait HOST [--dispatcher NAME] [--timeout D] [--api URL]

Wait until HOST's latest connection-status is online (and, with
--dispatcher, lists that worker), then print its state and workers. Exits 1
when the timeout passes first. Useful in scripts, before sending.
`

func runWait(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("wait", waitUsage, stdout, stderr)
	api := apiFlag(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait")
	dispatcher := fs.String("dispatcher", "", "also wait for this worker `name` in the host's dispatchers")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: wait takes one HOST", ErrUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := apiClient{*api, http.DefaultClient}
	var last string
	for {
		var h sim.Host
		err := c.do(ctx, "GET", sim.SimPath+"/hosts/"+url.PathEscape(pos[0]), nil, &h)
		if err == nil {
			var workers map[string]json.RawMessage
			json.Unmarshal(h.Dispatchers, &workers)
			_, has := workers[*dispatcher]
			if h.Online() && (*dispatcher == "" || has) {
				fmt.Fprintf(stdout, "%s %s %s\n", h.ID, h.State, strings.Join(slices.Sorted(maps.Keys(workers)), ","))
				return nil
			}
			last = "state " + strconv.Quote(h.State)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait %s: not online within %v (%s)", pos[0], *timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

const pingUsage = `
Usage: yggsim ping [--api URL] [--timeout D] [--json] HOST

Send a ping command to HOST on its control/in topic and wait for the pong
event; print the round-trip time. Fails if HOST is not online or no pong
arrives within the timeout.
`

func runPing(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ping", pingUsage, stdout, stderr)
	api := apiFlag(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the pong")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: ping takes one HOST", ErrUsage)
	}
	var res sim.PingResult
	path := sim.SimPath + "/hosts/" + url.PathEscape(pos[0]) + "/ping?timeout=" + timeout.String()
	if err := (apiClient{*api, http.DefaultClient}).do(ctx, "POST", path, nil, &res); err != nil {
		return fmt.Errorf("ping %s: %w", pos[0], err)
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "pong from %s in %v\n", pos[0], res.RTT)
	return nil
}

const sendUsage = `
Usage: yggsim send [flags] HOST --directive D [--content C] [--metadata k=v]... [--wait [--all [--count N]]]

Send a data message to HOST through the cloud-connector API (POST
/api/cloud-connector/v2/connections/HOST/message) and print its message
id. The content C is "@file" (the file's contents), "-" (standard input) or
a literal; if it is valid JSON it is sent as is, otherwise as a JSON
string. With --wait, wait for the answer on HOST's data/out topic (the
data message whose response_to is the id) and print its content (the whole
message with --json). With --all (which implies --wait), print every answer
as it arrives until --timeout passes, or until N answers came with
--count N.

An answer that is a negative acknowledgement (metadata "yggdrasil-error":
the host could not deliver the message) is printed, and send exits 1 with
its code and text; so does --all when any answer was one, or none came.

Examples:
  yggsim send host1 --directive echo --content '"hello"' --wait
  yggsim send host1 --directive playbook --content @play.yml --metadata return_url=http://127.0.0.1:8481/r
  yggsim send host1 --directive stream --all --count 3 --timeout 1m
`

// metadataFlag collects repeated k=v values.
type metadataFlag map[string]string

func (m metadataFlag) String() string { return "" }

func (m metadataFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("metadata %q is not key=value", v)
	}
	m[k] = val
	return nil
}

// readContent resolves --content to JSON.
func readContent(c string, stdin io.Reader) (json.RawMessage, error) {
	var b []byte
	switch {
	case c == "-":
		var err error
		if b, err = io.ReadAll(stdin); err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
	case strings.HasPrefix(c, "@"):
		var err error
		if b, err = os.ReadFile(c[1:]); err != nil {
			return nil, err
		}
	default:
		b = []byte(c)
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && json.Valid(t) {
		return json.RawMessage(t), nil
	}
	s, _ := json.Marshal(string(b))
	return s, nil
}

// stdin is where "send --content -" reads; tests replace it.
var stdin io.Reader = os.Stdin

func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("send", sendUsage, stdout, stderr)
	api := apiFlag(fs)
	directive := fs.String("directive", "", "the `directive` (the worker's handler name); required")
	contentArg := fs.String("content", "", "the content: @file, - or a literal")
	metadata := metadataFlag{}
	fs.Var(metadata, "metadata", "a `key=value` of metadata (repeatable)")
	wait := fs.Bool("wait", false, "wait for the answer and print it")
	all := fs.Bool("all", false, "wait for every answer until the timeout (or --count) and print each")
	count := fs.Int("count", 0, "with --all, stop after `N` answers")
	timeout := fs.Duration("timeout", 30*time.Second, "how long --wait and --all wait")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *directive == "" {
		return fmt.Errorf("%w: send takes one HOST and --directive", ErrUsage)
	}
	if *count < 0 || *count > 0 && !*all {
		return fmt.Errorf("%w: send --count N needs --all and N > 0", ErrUsage)
	}
	var payload json.RawMessage
	if *contentArg != "" {
		if payload, err = readContent(*contentArg, stdin); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	c := apiClient{*api, http.DefaultClient}
	var since int64
	if *all {
		var info sim.Info
		if err := c.do(ctx, "GET", sim.SimPath+"/info", nil, &info); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		since = info.LastSeq
	}
	var id struct {
		ID string `json:"id"`
	}
	body := map[string]any{"directive": *directive, "payload": payload, "metadata": map[string]string(metadata)}
	if err := c.do(ctx, "POST", sim.CloudConnectorPath+"/v2/connections/"+url.PathEscape(pos[0])+"/message", body, &id); err != nil {
		return fmt.Errorf("send to %s: %w", pos[0], err)
	}
	switch {
	case *all:
		return awaitAnswers(ctx, *api, pos[0], id.ID, since, *count, *timeout, *asJSON, stdout)
	case !*wait:
		if *asJSON {
			return printJSON(stdout, id)
		}
		fmt.Fprintln(stdout, id.ID)
		return nil
	}
	var answer sim.Message
	if err := c.do(ctx, "GET", sim.SimPath+"/answers/"+url.PathEscape(id.ID)+"?timeout="+timeout.String(), nil, &answer); err != nil {
		return fmt.Errorf("send to %s: wait for the answer to %s: %w", pos[0], id.ID, err)
	}
	if nack := printAnswer(stdout, answer, *asJSON); nack != "" {
		return fmt.Errorf("send to %s: %s refused %s: %s", pos[0], pos[0], id.ID, nack)
	}
	return nil
}

// printAnswer prints an answer's content (the whole message with asJSON)
// and returns "code: text" when it is a negative acknowledgement.
func printAnswer(stdout io.Writer, m sim.Message, asJSON bool) (nack string) {
	var d struct {
		Metadata map[string]string `json:"metadata"`
		Content  json.RawMessage   `json:"content"`
	}
	err := json.Unmarshal(m.Payload, &d)
	switch {
	case asJSON:
		printJSON(stdout, m)
	case err != nil:
		stdout.Write(m.Payload)
		fmt.Fprintln(stdout)
	default:
		fmt.Fprintf(stdout, "%s\n", d.Content)
	}
	code := d.Metadata[yggdrasil.MetadataError]
	if code == "" {
		return ""
	}
	var c struct {
		Message string `json:"message"`
	}
	json.Unmarshal(d.Content, &c)
	return "negative acknowledgement " + code + ": " + c.Message
}

// awaitAnswers prints every answer to id recorded after since, as it
// arrives, until count answers came (0: until the timeout). It fails when
// none came or any was a negative acknowledgement.
func awaitAnswers(ctx context.Context, api, host, id string, since int64, count int, timeout time.Duration, asJSON bool, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var n int
	var nacks []string
	err := streamEvents(ctx, api, since, func(m sim.Message) bool {
		if m.Kind != yggdrasil.KindData || m.Dir != yggdrasil.DirOut || m.ResponseTo != id {
			return true
		}
		n++
		if nack := printAnswer(stdout, m, asJSON); nack != "" {
			nacks = append(nacks, nack)
		}
		return count == 0 || n < count
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("send to %s: wait for the answers to %s: %w", host, id, err)
	}
	switch {
	case len(nacks) > 0:
		return fmt.Errorf("send to %s: %s refused %s: %s", host, host, id, strings.Join(nacks, "; "))
	case n == 0:
		return fmt.Errorf("send to %s: no answer to %s within %v", host, id, timeout)
	case count > 0 && n < count:
		return fmt.Errorf("send to %s: %d answers to %s within %v, want %d", host, n, id, timeout, count)
	}
	return nil
}

// streamEvents calls visit with every message the sim records after since
// (GET /api/sim/events), until visit returns false, the stream ends or
// ctx ends.
func streamEvents(ctx context.Context, api string, since int64, visit func(sim.Message) bool) error {
	for {
		more, err := streamPage(ctx, api, &since, visit)
		if err != nil || !more {
			return err
		}
	}
}

// maxEventLine is the longest line of the event stream read: a message's
// encoding fits the sim's journal bound (it keeps no payload whose
// encoding does not), 64 MiB by default, and the buffer grows only as far
// as the messages need.
const maxEventLine = sim.DefaultJournalMaxBytes + 64<<10

// streamPage reads one stream of /events from since on, advancing since
// past each message, until visit returns false (more false) or the sim
// ends a page of history with "event: more" (more true: ask again from
// since). "reset" (since was beyond the sim's latest message: it
// restarted) moves since back to before the oldest message held; other
// events that are not messages ("behind": messages dropped before they
// could be read) are skipped.
func streamPage(ctx context.Context, api string, since *int64, visit func(sim.Message) bool) (more bool, err error) {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s%s/events?since=%d", strings.TrimRight(api, "/"), sim.SimPath, *since), nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("events: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), maxEventLine)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			event = ""
			continue
		}
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			if event == "more" {
				return true, nil
			}
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if ok && event == "reset" {
			// since was beyond the sim's latest message (it restarted):
			// the stream goes on from its oldest message held.
			var r struct {
				OldestSeq int64 `json:"oldest_seq"`
			}
			if err := json.Unmarshal([]byte(data), &r); err != nil {
				return false, fmt.Errorf("decode reset event: %w", err)
			}
			*since = max(0, r.OldestSeq-1)
			continue
		}
		if !ok || (event != "" && event != "message") {
			continue
		}
		var m sim.Message
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			return false, fmt.Errorf("decode event: %w", err)
		}
		*since = m.Seq
		if !visit(m) {
			return false, nil
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return false, fmt.Errorf("read events: an event beyond %d bytes (a sim whose journal bound is larger)", 4<<20)
	}
	return false, sc.Err()
}

const watchUsage = `
Usage: yggsim watch [--api URL] [--since N] [--json]

Print every MQTT message the sim sees, as it happens, until interrupted:
one line per message ("#seq topic qos=… from=… N bytes") followed by its
payload, or one JSON object per line with --json. --since N starts after
the message with sequence number N (0 replays everything recorded).
`

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("watch", watchUsage, stdout, stderr)
	api := apiFlag(fs)
	since := fs.Int64("since", -1, "start after this sequence number (default: only new messages)")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: watch takes no arguments", ErrUsage)
	}
	c := apiClient{*api, http.DefaultClient}
	if *since < 0 {
		var info sim.Info
		if err := c.do(ctx, "GET", sim.SimPath+"/info", nil, &info); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		*since = info.LastSeq
	}
	err = streamEvents(ctx, *api, *since, func(m sim.Message) bool {
		printMessage(stdout, m, *asJSON)
		return true
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("watch: %w", err)
	}
	return nil
}

// printMessage prints a recorded message: a line ("#seq topic qos=…
// from=… N bytes") and its payload, or one JSON object a line.
func printMessage(w io.Writer, m sim.Message, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(m)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintf(w, "%s\n  %s\n", m, m.Payload)
}

const historyUsage = `
Usage: yggsim history [--api URL] [--json] HOST

Print the messages the sim recorded to and from HOST, oldest first (GET
/api/sim/hosts/HOST/messages, page by page; the sim keeps the latest
200 by default, as long as its journal holds them): one line per message ("#seq topic qos=… from=… N bytes")
followed by its payload, or one JSON object per line with --json. Fails if
the sim has never seen HOST.
`

func runHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("history", historyUsage, stdout, stderr)
	api := apiFlag(fs)
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: history takes one HOST", ErrUsage)
	}
	c := apiClient{*api, http.DefaultClient}
	for since := int64(0); ; {
		var page sim.MessagePage
		path := fmt.Sprintf("%s/hosts/%s/messages?since=%d", sim.SimPath, url.PathEscape(pos[0]), since)
		if err := c.do(ctx, "GET", path, nil, &page); err != nil {
			return fmt.Errorf("history %s: %w", pos[0], err)
		}
		for _, m := range page.Messages {
			printMessage(stdout, m, *asJSON)
		}
		if !page.More || page.Next <= since {
			return nil
		}
		since = page.Next
	}
}

const certUsage = `
Usage: yggsim cert [--state DIR] --out DIR HOST-ID

Issue a client certificate whose CN is HOST-ID, signed by the sim's CA kept
in the state directory (created on first use), and write DIR/cert.pem,
DIR/key.pem and DIR/ca.pem (the CA certificate). Run yggd with them to
connect to "yggsim serve --state" over TLS without RHSM:

  yggsim cert --state ~/.local/state/yggsim --out ./host1 host1
  yggd --broker ssl://127.0.0.1:8883 --cert-file host1/cert.pem --key-file host1/key.pem --ca-root host1/ca.pem
`

func runCert(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cert", certUsage, stdout, stderr)
	state := fs.String("state", os.Getenv("YGGSIM_STATE"), "state `directory` of the CA (default $YGGSIM_STATE); required")
	out := fs.String("out", "", "output `directory`; required")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *state == "" || *out == "" {
		return fmt.Errorf("%w: cert takes one HOST-ID, --state (or $YGGSIM_STATE) and --out", ErrUsage)
	}
	ca, err := sim.OpenCA(*state)
	if err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	if err := writeCert(ca, pos[0], *out); err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	fmt.Fprintf(stdout, "%s\n%s\n%s\n", filepath.Join(*out, "cert.pem"), filepath.Join(*out, "key.pem"), filepath.Join(*out, "ca.pem"))
	return nil
}
