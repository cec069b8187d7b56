package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/ygglab/yggdrasil/fakes/logbuf"
)

// This file is a small client of the Chrome DevTools Protocol, enough to
// drive the sim's page in a headless Chromium: start the browser, open a
// page, evaluate script, type and click as a user would, and collect what
// the browser logs. chromedp would do the same, but chromedp v0.23 and
// cdproto (the whole generated protocol) are 41,000 lines of Go in 4 MB,
// plus a JSON module, for the nine protocol methods used here; the one
// dependency this needs, gorilla/websocket, was already in the module
// graph through paho.

// browser is a headless Chromium driven over one page's DevTools socket.
type browser struct {
	cmd    *exec.Cmd
	dir    string
	exited chan struct{}  // closed when cmd has been waited for
	stderr *logbuf.Buffer // chromium's stderr, read on failure
	cdp    *cdpConn

	mu   sync.Mutex
	logs []string // errors and warnings: console, log entries, exceptions
}

// startBrowser starts chromium (a path or a name on $PATH) headless with a
// fresh profile in dir, listening for DevTools on a loopback port the
// kernel picks, and connects to its blank page.
func startBrowser(ctx context.Context, chromium, dir string) (*browser, error) {
	args := []string{
		"--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-default-apps", "--mute-audio", "--password-store=basic",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--user-data-dir=" + dir, "--window-size=1280,1000", "about:blank",
	}
	if os.Geteuid() == 0 {
		args = append([]string{"--no-sandbox"}, args...) // Chromium's sandbox refuses to run as root
	}
	b := &browser{dir: dir, exited: make(chan struct{}), stderr: &logbuf.Buffer{}}
	b.cmd = exec.Command(chromium, args...)
	b.cmd.Stdout, b.cmd.Stderr = b.stderr, b.stderr
	// Its own process group, so that closing it ends its zygote and
	// renderers too.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	go func() {
		b.cmd.Wait()
		close(b.exited)
	}()
	wsURL, err := b.awaitPage(ctx)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("start chromium: %w\nits output:\n%s", err, b.stderr.String())
	}
	if b.cdp, err = dialCDP(ctx, wsURL, b.event); err != nil {
		b.close()
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		if err := b.cdp.call(ctx, m, nil, nil); err != nil {
			b.close()
			return nil, fmt.Errorf("start chromium: %w", err)
		}
	}
	return b, nil
}

// awaitPage waits for the DevToolsActivePort file chromium writes in its
// profile, then for its page target, and returns the page's socket URL.
func (b *browser) awaitPage(ctx context.Context) (string, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if u, err := b.pageURL(ctx); err == nil {
			return u, nil
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for its DevTools page: %w (last: %v)", ctx.Err(), last)
		case <-b.exited:
			return "", fmt.Errorf("chromium exited: %v", b.cmd.ProcessState)
		case <-tick.C:
		}
	}
}

func (b *browser) pageURL(ctx context.Context) (string, error) {
	port, err := os.ReadFile(filepath.Join(b.dir, "DevToolsActivePort"))
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(string(port), "\n")
	req, err := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:"+strings.TrimSpace(first)+"/json/list", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var targets []struct {
		Type string `json:"type"`
		URL  string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		return "", fmt.Errorf("decode /json/list: %w", err)
	}
	for _, t := range targets {
		if t.Type == "page" && t.URL != "" {
			return t.URL, nil
		}
	}
	return "", errors.New("no page target yet")
}

// event records what the page logs at warning level or above, and its
// uncaught exceptions: a refusal by the Content-Security-Policy shows up
// here as a log entry.
func (b *browser) event(method string, params json.RawMessage) {
	var line string
	switch method {
	case "Log.entryAdded":
		var p struct {
			Entry struct {
				Source, Level, Text, URL string
			} `json:"entry"`
		}
		if json.Unmarshal(params, &p) != nil || (p.Entry.Level != "error" && p.Entry.Level != "warning") {
			return
		}
		line = fmt.Sprintf("log %s %s: %s %s", p.Entry.Level, p.Entry.Source, p.Entry.Text, p.Entry.URL)
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string            `json:"type"`
			Args []json.RawMessage `json:"args"`
		}
		if json.Unmarshal(params, &p) != nil || (p.Type != "error" && p.Type != "warning" && p.Type != "assert") {
			return
		}
		line = fmt.Sprintf("console %s: %s", p.Type, bytes.Join(bytesOf(p.Args), []byte(" ")))
	case "Runtime.exceptionThrown":
		var p struct {
			Details struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		json.Unmarshal(params, &p)
		line = fmt.Sprintf("exception: %s %s", p.Details.Text, p.Details.Exception.Description)
	default:
		return
	}
	b.mu.Lock()
	b.logs = append(b.logs, line)
	b.mu.Unlock()
}

// Logs returns what the page has logged at warning level or above.
func (b *browser) Logs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.logs...)
}

// navigate opens url and waits until the page has loaded.
func (b *browser) navigate(ctx context.Context, url string) error {
	var res struct {
		ErrorText string `json:"errorText"`
	}
	if err := b.cdp.call(ctx, "Page.navigate", map[string]any{"url": url}, &res); err != nil {
		return fmt.Errorf("navigate to %s: %w", url, err)
	}
	if res.ErrorText != "" {
		return fmt.Errorf("navigate to %s: %s", url, res.ErrorText)
	}
	_, err := b.await(ctx, `document.readyState === "complete" && location.href !== "about:blank"`)
	if err != nil {
		return fmt.Errorf("navigate to %s: wait for the load: %w", url, err)
	}
	return nil
}

// eval evaluates a JavaScript expression in the page and decodes its
// value (awaiting it if it is a promise) into v, if v is not nil.
func (b *browser) eval(ctx context.Context, expr string, v any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := b.cdp.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res)
	if err != nil {
		return err
	}
	if res.Exception != nil {
		return fmt.Errorf("evaluate: %s %s", res.Exception.Text, res.Exception.Exception.Description)
	}
	if v == nil || len(res.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(res.Result.Value, v)
}

// await evaluates expr until it returns something truthy, which it
// returns as JSON, or until ctx ends.
func (b *browser) await(ctx context.Context, expr string) (json.RawMessage, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		var v json.RawMessage
		err := b.eval(ctx, "(() => { const v = ("+expr+"); return v ? v : null })()", &v)
		if err == nil && len(v) > 0 && string(v) != "null" {
			return v, nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), last)
			}
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// click clicks the middle of the element selector names with the mouse,
// as a user would: it must be visible and not covered.
func (b *browser) click(ctx context.Context, selector string) error {
	var pt struct {
		X, Y  float64
		Error string
	}
	err := b.eval(ctx, `(() => {
		const e = document.querySelector(`+jsString(selector)+`);
		if (!e) return {error: "no element"};
		e.scrollIntoView({block: "center"});
		const r = e.getBoundingClientRect();
		if (r.width === 0 || r.height === 0) return {error: "not visible"};
		const x = r.left + r.width / 2, y = r.top + r.height / 2;
		const at = document.elementFromPoint(x, y);
		if (at !== e && !e.contains(at)) return {error: "covered by " + (at ? at.tagName : "nothing")};
		if (e.disabled) return {error: "disabled"};
		return {x, y};
	})()`, &pt)
	if err != nil {
		return fmt.Errorf("click %s: %w", selector, err)
	}
	if pt.Error != "" {
		return fmt.Errorf("click %s: %s", selector, pt.Error)
	}
	for _, typ := range []string{"mouseMoved", "mousePressed", "mouseReleased"} {
		p := map[string]any{"type": typ, "x": pt.X, "y": pt.Y}
		if typ != "mouseMoved" {
			p["button"], p["clickCount"] = "left", 1
		}
		if err := b.cdp.call(ctx, "Input.dispatchMouseEvent", p, nil); err != nil {
			return fmt.Errorf("click %s: %w", selector, err)
		}
	}
	return nil
}

// fill replaces the text of the input or textarea selector names by
// typing text into it.
func (b *browser) fill(ctx context.Context, selector, text string) error {
	var errText string
	err := b.eval(ctx, `(() => {
		const e = document.querySelector(`+jsString(selector)+`);
		if (!e) return "no element";
		e.focus();
		if (document.activeElement !== e) return "cannot focus";
		e.select();
		return "";
	})()`, &errText)
	if err == nil && errText != "" {
		err = errors.New(errText)
	}
	if err == nil {
		// Typing nothing over a selection does not clear it; deleting does.
		err = b.cdp.call(ctx, "Input.dispatchKeyEvent", map[string]any{"type": "keyDown", "key": "Delete", "code": "Delete", "windowsVirtualKeyCode": 46}, nil)
	}
	if err == nil {
		err = b.cdp.call(ctx, "Input.dispatchKeyEvent", map[string]any{"type": "keyUp", "key": "Delete", "code": "Delete", "windowsVirtualKeyCode": 46}, nil)
	}
	if err == nil && text != "" {
		err = b.cdp.call(ctx, "Input.insertText", map[string]any{"text": text}, nil)
	}
	if err != nil {
		return fmt.Errorf("fill %s: %w", selector, err)
	}
	return nil
}

// close ends the browser: politely over DevTools, then its whole process
// group, and removes nothing (the profile lives in the caller's directory).
// It may be called more than once.
func (b *browser) close() {
	if b.cdp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		b.cdp.call(ctx, "Browser.close", nil, nil)
		cancel()
		b.cdp.close()
	}
	select {
	case <-b.exited:
		return
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.exited
}

// cdpConn is one DevTools WebSocket: calls are matched to their replies by
// id, and events go to a callback run on the reading goroutine.
type cdpConn struct {
	ws      *websocket.Conn
	onEvent func(method string, params json.RawMessage)
	done    chan struct{} // closed when the reader ends

	wmu sync.Mutex // serializes writes

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpReply
	err     error // why the reader ended
}

type cdpReply struct {
	Result json.RawMessage
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
}

func dialCDP(ctx context.Context, url string, onEvent func(string, json.RawMessage)) (*cdpConn, error) {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial devtools: %w", err)
	}
	c := &cdpConn{ws: ws, onEvent: onEvent, done: make(chan struct{}), pending: map[int64]chan cdpReply{}}
	go c.read()
	return c, nil
}

func (c *cdpConn) read() {
	defer close(c.done)
	for {
		var msg struct {
			ID     int64           `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			cdpReply
		}
		_, r, err := c.ws.NextReader()
		if err == nil {
			err = json.NewDecoder(r).Decode(&msg)
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		if msg.Method != "" {
			c.onEvent(msg.Method, msg.Params)
			continue
		}
		c.mu.Lock()
		ch := c.pending[msg.ID]
		delete(c.pending, msg.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- msg.cdpReply
		}
	}
}

// call sends method with params and decodes the result into result (if
// not nil).
func (c *cdpConn) call(ctx context.Context, method string, params, result any) error {
	ch := make(chan cdpReply, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return fmt.Errorf("%s: connection closed: %w", method, c.err)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	if params == nil {
		params = struct{}{}
	}
	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	c.wmu.Lock()
	err = c.ws.WriteMessage(websocket.TextMessage, msg)
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	case rep, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: connection closed", method)
		}
		if rep.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, rep.Error.Message, rep.Error.Code)
		}
		if result != nil && len(rep.Result) > 0 {
			if err := json.Unmarshal(rep.Result, result); err != nil {
				return fmt.Errorf("%s: decode result: %w", method, err)
			}
		}
		return nil
	}
}

// close closes the socket and waits for the reader.
func (c *cdpConn) close() {
	c.ws.Close()
	<-c.done
}

func bytesOf(raw []json.RawMessage) [][]byte {
	out := make([][]byte, len(raw))
	for i, r := range raw {
		out[i] = r
	}
	return out
}
