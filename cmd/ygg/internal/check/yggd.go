package check

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

// Yggd checks the running yggd through its control socket at path (st
// its status, or err why there is none): it answers, is connected, runs
// with the configuration's identity, and its workers run with their
// handlers registered.
func Yggd(path string, st *control.Status, err error, clientID, unit string) []Result {
	if st == nil {
		skip := skipped(NameYggdWorkers, "needs yggd's answer")
		switch {
		case errors.Is(err, control.ErrNotRunning):
			return []Result{failed(NameYggd, fmt.Sprintf("start it (systemctl start %s); journalctl -u %s says why it stopped", unit, unit),
				"yggd is not running: nothing answers on %s", path), skip}
		case errors.Is(err, control.ErrNotAllowed):
			return []Result{failed(NameYggd, "run ygg check as root", "yggd's control socket %s: %v", path, err), skip}
		}
		return []Result{failed(NameYggd, fmt.Sprintf("journalctl -u %s says what yggd does", unit), "yggd's control socket %s: %v", path, err), skip}
	}
	var res Result
	c := st.Connection
	switch {
	case c.State == control.StateOffline:
		res = failed(NameYggd, fmt.Sprintf("restart it (systemctl restart %s)", unit), "yggd (pid %d) is offline: a disconnect command asked it", st.PID)
	case c.State != control.StateConnected:
		last := ""
		if c.LastError != "" {
			last = " (last error: " + c.LastError + ")"
		}
		res = failed(NameYggd, fmt.Sprintf("see the checks above and journalctl -u %s", unit), "yggd (pid %d) is not connected: %s%s", st.PID, c.State, last)
	case clientID != "" && st.Identity.ClientID != clientID:
		res = warning(NameYggd, fmt.Sprintf("restart it (systemctl restart %s) to use the configuration's", unit),
			"yggd (pid %d) is connected as %s, but the configuration's identity is %s", st.PID, st.Identity.ClientID, clientID)
	default:
		res = ok(NameYggd, "yggd (pid %d) is connected to %s as %s since %s", st.PID, c.Broker, st.Identity.ClientID, c.ConnectedSince.UTC().Format(time.RFC3339))
	}
	return []Result{res, yggdWorkers(st.Workers, unit)}
}

// yggdWorkers checks the workers yggd reports: none failing, and each
// running one with its handlers registered.
func yggdWorkers(ws []control.Worker, unit string) Result {
	var failing, unregistered, running []string
	for _, w := range ws {
		name := w.Name
		if name == "" {
			continue // a handler registered by no supervised worker
		}
		switch {
		case w.Failing():
			why := w.State
			if w.LastExit != "" {
				why += ", last " + w.LastExit
			}
			failing = append(failing, fmt.Sprintf("%s (%s, %d restarts)", name, why, w.Restarts))
		case w.State == control.WorkerRunning && len(w.Handlers) == 0:
			unregistered = append(unregistered, name)
		case w.State == control.WorkerRunning:
			running = append(running, name+" ("+strings.Join(w.Handlers, ",")+")")
		}
	}
	switch {
	case len(failing) > 0:
		return failed(NameYggdWorkers, fmt.Sprintf("journalctl -u %s shows the worker's output; fix the worker or remove its file", unit),
			"failing: %s", strings.Join(failing, "; "))
	case len(unregistered) > 0:
		return warning(NameYggdWorkers, fmt.Sprintf("journalctl -u %s shows the worker's output", unit),
			"running but with no handler registered: %s", strings.Join(unregistered, ", "))
	case len(running) == 0:
		return ok(NameYggdWorkers, "no worker runs")
	}
	return ok(NameYggdWorkers, "running with handlers registered: %s", strings.Join(running, ", "))
}

// RHSM checks that the host's RHSM registration is the certificate's: the
// consumer id is its CN. RHSM out of reach is a warning (the host may not
// use RHSM); not registered, or registered as another consumer, an error.
func RHSM(certFile string, id Ident, consumer string, err error) Result {
	switch {
	case id.Leaf == nil:
		return skipped(NameRHSM, "needs a certificate that loads")
	case err != nil:
		return warning(NameRHSM, "check that rhsm.service runs (systemctl status rhsm), unless this host does not use RHSM",
			"RHSM cannot be asked: %v", err)
	case consumer == "":
		return failed(NameRHSM, "register the host (ygg register)", "the host is not registered with RHSM, but %s names consumer %s", certFile, id.ClientID)
	case consumer != id.ClientID:
		return failed(NameRHSM, "register again (ygg register), or set cert-file to RHSM's consumer certificate",
			"RHSM's consumer is %s, but the certificate's CN is %s", consumer, id.ClientID)
	}
	return ok(NameRHSM, "registered with RHSM as consumer %s, the certificate's CN", consumer)
}
