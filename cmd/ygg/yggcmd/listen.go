package yggcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

// runListen prints the running yggd's events as they happen.
func runListen(ctx context.Context, a *app, p *parsed) error {
	count := func(flag string) (int, error) {
		v := p.get(flag)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, usagef("listen: --%s: %q is not a count", flag, v)
		}
		return n, nil
	}
	last, err := count("last")
	if err != nil {
		return err
	}
	max, err := count("count")
	if err != nil {
		return err
	}
	path, err := a.controlSocket(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	asJSON := p.get("format") == "json"
	seen := 0
	follow := p.get("no-follow") != "true"
	return control.Dial(path).Events(ctx, last, follow, func(ev control.Event) {
		if max > 0 && seen == max {
			return
		}
		seen++
		if asJSON {
			printEventJSON(a.stdout, ev)
		} else {
			printEvent(a.stdout, ev)
		}
		if seen == max {
			cancel()
		}
	})
}

func printEventJSON(w io.Writer, ev control.Event) {
	b, _ := json.Marshal(ev)
	fmt.Fprintf(w, "%s\n", b)
}

// printEvent prints ev on one line: time, kind, then what it is about.
func printEvent(w io.Writer, ev control.Event) {
	var what []string
	add := func(s ...string) {
		for _, x := range s {
			if x != "" {
				what = append(what, x)
			}
		}
	}
	switch ev.Kind {
	case control.EventWorker:
		if ev.Worker != nil {
			add(ev.Worker.Name, ev.Worker.State)
			if ev.Worker.PID != 0 {
				add("pid " + strconv.Itoa(ev.Worker.PID))
			}
			if ev.Worker.State == control.WorkerBackoff {
				add("after " + ev.Worker.LastExit)
			}
		}
	case control.EventConnection:
		if c := ev.Connection; c != nil {
			add(c.State, c.Broker)
			if c.State != control.StateConnected && c.LastError != "" {
				add("(" + c.LastError + ")")
			}
		}
	case control.EventDropped:
		add(strconv.Itoa(ev.Count) + " events not shown: this listener fell behind")
	default:
		add(ev.MessageID, ev.Directive)
		if ev.ResponseTo != "" {
			add("answers " + ev.ResponseTo)
		}
		if ev.PID != 0 {
			add("pid " + strconv.Itoa(ev.PID))
		}
		if ev.Code != "" {
			add(ev.Code + ": " + ev.Error)
		}
		if ev.Local {
			add("(local)")
		}
	}
	fmt.Fprintf(w, "%s %-10s %s\n", ev.Time.Local().Format("15:04:05.000"), ev.Kind, strings.Join(what, " "))
}
