package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/testscript"
)

// TestPage runs the scripts in testdata/page: the sim's web page in a real
// headless Chromium, against the real yggd and echo worker. They have the
// whole script environment plus the page commands below. Debian's
// chromium package provides the browser.
func TestPage(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
	}
	p := goscript.Params{
		Dir:                 "testdata/page",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       updateGolden(),
		Cmds:                pageCommands(),
	}
	if err := testscript.Setup(&p); err != nil {
		t.Fatal(err)
	}
	goscript.Run(t, p)
}

// pageWait is how long the page commands wait for the page by default.
const pageWait = 30 * time.Second

// browsers maps each running script to its browser; the script's Defer
// closes it and removes the entry.
var browsers sync.Map // *goscript.TestScript → *browser

func browserOf(ts *goscript.TestScript) (*browser, error) {
	b, ok := browsers.Load(ts)
	if !ok {
		return nil, errors.New("no browser: run the browser command first")
	}
	return b.(*browser), nil
}

// pageCommand is one page command: its usage, whether "!" makes sense,
// and its body, which returns an error.
type pageCommand struct {
	usage     string
	negatable bool
	run       func(ts *goscript.TestScript, neg bool, args []string) error
}

// pageCommands are the commands that drive the page:
//
//	browser url
//		start a headless Chromium (closed by the script's Defer) and open url
//	page-text [-timeout=d] selector regexp
//		wait until the text of the first element matching the CSS selector
//		matches regexp, and write that text to stdout
//	page-count [-timeout=d] selector n
//		wait until exactly n elements match the selector
//	page-fill selector text
//		type text into an input or textarea, replacing what it held
//	page-click selector
//		click the element with the mouse (it must be visible, enabled and
//		not covered)
//	page-log [regexp]      (! allowed)
//		succeed if the page has logged an error or warning (a refusal by
//		its Content-Security-Policy, a script exception, a failed load)
//		matching regexp (default: any); write them all to stdout
func pageCommands() map[string]func(*goscript.TestScript, bool, []string) {
	cmds := map[string]pageCommand{
		"browser":    {"browser url", false, cmdBrowser},
		"page-text":  {"page-text [-timeout=d] selector regexp", false, cmdPageText},
		"page-count": {"page-count [-timeout=d] selector n", false, cmdPageCount},
		"page-fill":  {"page-fill selector text", false, cmdPageFill},
		"page-click": {"page-click selector", false, cmdPageClick},
		"page-log":   {"page-log [regexp]", true, cmdPageLog},
	}
	out := map[string]func(*goscript.TestScript, bool, []string){}
	for name, c := range cmds {
		out[name] = testscript.Command(name, c.usage, c.negatable, func(ts *goscript.TestScript, args []string) error {
			return c.run(ts, testscript.Negated(ts), args)
		})
	}
	return out
}

func cmdBrowser(ts *goscript.TestScript, _ bool, args []string) error {
	if len(args) != 1 {
		return testscript.ErrUsage
	}
	if _, loaded := browsers.Load(ts); loaded {
		return errors.New("a browser is already running")
	}
	// The profile lives outside $WORK: it is large, and Chromium puts
	// sockets in it.
	dir, err := os.MkdirTemp("", "chromium")
	if err != nil {
		return fmt.Errorf("make a profile directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pageWait)
	defer cancel()
	b, err := startBrowser(ctx, "chromium", dir)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	browsers.Store(ts, b)
	ts.Defer(func() {
		browsers.Delete(ts)
		b.close()
		os.RemoveAll(dir)
	})
	return b.navigate(ctx, args[0])
}

// pageFlags parses -timeout and the two arguments (selector, expectation)
// of page-text and page-count, and returns those and a context
// bounded by the timeout.
func pageFlags(name string, args []string) (context.Context, context.CancelFunc, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	timeout := fs.Duration("timeout", pageWait, "")
	if err := fs.Parse(args); err != nil || *timeout <= 0 || fs.NArg() != 2 {
		return nil, nil, nil, testscript.ErrUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	return ctx, cancel, fs.Args(), nil
}

func cmdPageText(ts *goscript.TestScript, _ bool, args []string) error {
	ctx, cancel, args, err := pageFlags("page-text", args)
	if err != nil {
		return err
	}
	defer cancel()
	re, err := regexp.Compile(args[1])
	if err != nil {
		return fmt.Errorf("%w: %v", testscript.ErrUsage, err)
	}
	var text *string
	return pollPage(ctx, ts, args[0], `(() => { const e = document.querySelector(`+jsString(args[0])+`); return e ? e.textContent : null })()`, &text,
		func() error {
			switch {
			case text == nil:
				return fmt.Errorf("no element matches %s", args[0])
			case !re.MatchString(*text):
				return fmt.Errorf("the text of %s does not match %q: %q", args[0], re, *text)
			}
			fmt.Fprintln(ts.Stdout(), *text)
			return nil
		})
}

func cmdPageCount(ts *goscript.TestScript, _ bool, args []string) error {
	ctx, cancel, args, err := pageFlags("page-count", args)
	if err != nil {
		return err
	}
	defer cancel()
	want, err := strconv.Atoi(args[1])
	if err != nil || want < 0 {
		return testscript.ErrUsage
	}
	var n int
	return pollPage(ctx, ts, args[0], `document.querySelectorAll(`+jsString(args[0])+`).length`, &n, func() error {
		if n != want {
			return fmt.Errorf("%d elements match %s, want %d", n, args[0], want)
		}
		return nil
	})
}

// pollPage evaluates expr into out every 50 ms until check accepts what it
// saw (nil) or ctx ends; then it returns the latest reason check or the
// evaluation gave for selector.
func pollPage(ctx context.Context, ts *goscript.TestScript, selector, expr string, out any, check func() error) error {
	b, err := browserOf(ts)
	if err != nil {
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := fmt.Errorf("%s: not evaluated", selector)
	for {
		switch err := b.eval(ctx, expr, out); {
		case err != nil && ctx.Err() == nil:
			last = fmt.Errorf("%s: %w", selector, err)
		case err != nil:
		default:
			if last = check(); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return last
		case <-tick.C:
		}
	}
}

func cmdPageFill(ts *goscript.TestScript, _ bool, args []string) error {
	if len(args) != 2 {
		return testscript.ErrUsage
	}
	b, err := browserOf(ts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), pageWait)
	defer cancel()
	return b.fill(ctx, args[0], args[1])
}

func cmdPageClick(ts *goscript.TestScript, _ bool, args []string) error {
	if len(args) != 1 {
		return testscript.ErrUsage
	}
	b, err := browserOf(ts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), pageWait)
	defer cancel()
	return b.click(ctx, args[0])
}

func cmdPageLog(ts *goscript.TestScript, _ bool, args []string) error {
	if len(args) > 1 {
		return testscript.ErrUsage
	}
	re := regexp.MustCompile(".")
	if len(args) == 1 {
		var err error
		if re, err = regexp.Compile(args[0]); err != nil {
			return fmt.Errorf("%w: %v", testscript.ErrUsage, err)
		}
	}
	b, err := browserOf(ts)
	if err != nil {
		return err
	}
	logs := b.Logs()
	var matched []string
	for _, l := range logs {
		fmt.Fprintln(ts.Stdout(), l)
		if re.MatchString(l) {
			matched = append(matched, l)
		}
	}
	if len(matched) == 0 {
		return fmt.Errorf("the page logged nothing matching %q (%d entries)", re, len(logs))
	}
	ts.Logf("the page logged:\n%s", strings.Join(matched, "\n"))
	return nil
}
