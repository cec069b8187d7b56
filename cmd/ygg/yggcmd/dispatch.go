package yggcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

// runDispatch sends a data message to a local worker through yggd's
// control socket and prints the worker's answers.
func runDispatch(ctx context.Context, a *app, p *parsed) error {
	req := control.DispatchRequest{Directive: p.get("directive"), Answers: 1, Timeout: p.get("timeout")}
	if strings.TrimSpace(req.Directive) == "" {
		return usagef("dispatch: --directive is required")
	}
	if v := p.get("answers"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return usagef("dispatch: --answers: %q is not a count", v)
		}
		req.Answers = n
	}
	if p.get("no-wait") == "true" {
		req.Answers = 0
	}
	wait := control.DefaultDispatchWait
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 || d > control.MaxDispatchWait {
			return usagef("dispatch: --timeout: %q is not a duration such as 30s or 5m, up to %s", req.Timeout, control.MaxDispatchWait)
		}
		wait = d
	}
	content, err := a.dispatchContent(p)
	if err != nil {
		return err
	}
	req.Content = content
	for _, kv := range p.getList("metadata") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usagef("dispatch: --metadata: %q is not KEY=VALUE", kv)
		}
		if req.Metadata == nil {
			req.Metadata = map[string]string{}
		}
		req.Metadata[k] = v
	}
	format := p.get("format")
	path, err := a.controlSocket(p)
	if err != nil {
		return err
	}
	// yggd ends the exchange at the timeout; the margin is for a yggd
	// that stops answering.
	ctx, cancel := context.WithTimeout(ctx, wait+control.DefaultDispatchWait)
	defer cancel()
	var failure error
	err = control.Dial(path).Dispatch(ctx, req, func(l control.DispatchLine) {
		if format == "json" {
			b, _ := json.Marshal(l)
			fmt.Fprintf(a.stdout, "%s\n", b)
		}
		switch l.Kind {
		case control.DispatchDelivered:
			fmt.Fprintf(a.stderr, "delivered %s to %s\n", l.MessageID, req.Directive)
		case control.DispatchAnswer:
			if format != "json" {
				printAnswer(a.stdout, l.Answer)
			}
		case control.DispatchRejected:
			failure = fmt.Errorf("message %s refused: %s: %s", l.MessageID, l.Code, l.Error)
		case control.DispatchTimeout:
			failure = fmt.Errorf("message %s: timed out: %s", l.MessageID, l.Error)
		}
	})
	if err != nil {
		return err
	}
	return failure
}

// dispatchContent reads --content or --content-file: JSON as it is, any
// other text as a JSON string.
func (a *app) dispatchContent(p *parsed) (json.RawMessage, error) {
	text, file := p.get("content"), p.get("content-file")
	var b []byte
	switch {
	case text != "" && file != "":
		return nil, usagef("dispatch: give --content or --content-file, not both")
	case file == "-":
		var err error
		if b, err = io.ReadAll(a.stdin); err != nil {
			return nil, fmt.Errorf("read content from stdin: %w", err)
		}
	case file != "":
		var err error
		if b, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("read content: %w", err)
		}
	case text == "":
		return json.RawMessage("null"), nil
	default:
		b = []byte(text)
	}
	if json.Valid(b) {
		return b, nil
	}
	s, _ := json.Marshal(string(b))
	return s, nil
}

// printAnswer prints an answer's content on one line, and its metadata
// after it when it has some.
func printAnswer(w io.Writer, answer json.RawMessage) {
	var d struct {
		Metadata map[string]string `json:"metadata"`
		Content  json.RawMessage   `json:"content"`
	}
	if err := json.Unmarshal(answer, &d); err != nil {
		fmt.Fprintf(w, "%s\n", answer)
		return
	}
	var line bytes.Buffer
	if err := json.Compact(&line, d.Content); err != nil {
		line.Reset()
		line.Write(d.Content)
	}
	fmt.Fprintln(w, line.String())
	for _, k := range slices.Sorted(maps.Keys(d.Metadata)) {
		fmt.Fprintf(w, "  %s=%s\n", k, d.Metadata[k])
	}
}
