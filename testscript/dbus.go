package testscript

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/fakes/dbusd"
	"github.com/ygglab/yggdrasil/fakes/rhsm"
	"github.com/ygglab/yggdrasil/fakes/systemd"
	"github.com/ygglab/yggdrasil/yggdrasil/facts"
)

// dbusState is one script's private bus and fakes.
type dbusState struct {
	rhsm    *rhsm.Server
	systemd *systemd.Server
}

var dbusStates sync.Map // *goscript.TestScript → *dbusState

func dbusOf(ts *goscript.TestScript) (*dbusState, error) {
	if st, ok := dbusStates.Load(ts); ok {
		return st.(*dbusState), nil
	}
	return nil, errors.New("no D-Bus fakes: run the rhsm command first")
}

// rhsmModes are the words the rhsm command takes.
var rhsmModes = map[string]string{
	"ok":         "RHSM accepts admin/secret and the activation key ygg-key of org acme; systemd jobs succeed",
	"reject":     "RHSM refuses every registration with the entitlement server's bad-credentials message",
	"registered": "the host is already registered (org acme) when the script starts",
	"slow":       "RHSM takes a second to answer Register and Unregister",
	"job-fail":   "systemd start jobs of yggd.service end in \"failed\"",
	"unit-fail":  "systemd start jobs of yggd.service end \"done\" while the unit is still activating, and it fails half a second later",
}

// dbusCommands returns the commands that start a private system bus with the
// RHSM and systemd fakes and inspect what they were asked.
func dbusCommands() map[string]command {
	return map[string]command{
		"rhsm": {
			usage: "rhsm [ok|reject|registered|slow|job-fail|unit-fail]...",
			run:   cmdRHSM,
		},
		"rhsm-consumer": {
			usage:     "rhsm-consumer",
			negatable: true,
			run:       cmdRHSMConsumer,
		},
		"rhsm-calls": {
			usage: "rhsm-calls",
			run:   cmdRHSMCalls,
		},
		"systemd-calls": {
			usage: "systemd-calls",
			run:   cmdSystemdCalls,
		},
	}
}

// cmdRHSM starts a private dbus-daemon with the fake RHSM
// (com.redhat.RHSM1, com.redhat.RHSM1.Facts) and the fake systemd on it,
// and points DBUS_SYSTEM_BUS_ADDRESS at it. Consumer certificates go to
// $WORK/pki/consumer and are signed by the sim's CA when the broker command
// ran first (so that yggd can connect with them), else by a throwaway CA.
func cmdRHSM(ts *goscript.TestScript, args []string) error {
	modes := map[string]bool{}
	for _, a := range args {
		if _, ok := rhsmModes[a]; !ok {
			return fmt.Errorf("%w: unknown mode %q", ErrUsage, a)
		}
		modes[a] = true
	}
	if _, err := dbusOf(ts); err == nil {
		return errors.New("rhsm already started")
	}
	work := ts.Getenv("WORK")
	logFile, err := os.Create(filepath.Join(work, "dbus.log"))
	if err != nil {
		return fmt.Errorf("create dbus log: %w", err)
	}
	ts.Defer(func() { logFile.Close() })
	logger := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))

	bus := &dbusd.Daemon{Logger: logger}
	if err := bus.Start(scriptContext(ts)); err != nil {
		return err
	}
	ts.Defer(func() { bus.Close() })

	consumerDir := filepath.Join(work, "pki", "consumer")
	r := &rhsm.Server{Bus: bus.Addr(), ConsumerDir: consumerDir, Logger: logger}
	if s, err := simOf(ts); err == nil {
		r.Issue = s.CertificateAuthority().IssueClient
	}
	if modes["reject"] {
		r.Hook = func(c rhsm.Call) error {
			if strings.Contains(c.Method, ".Register.Register") {
				return rhsm.ErrBadCredentials()
			}
			return nil
		}
	}
	if modes["slow"] {
		r.Delay = time.Second
	}
	if err := r.Start(); err != nil {
		return err
	}
	ts.Defer(func() { r.Close() })

	sd := &systemd.Server{Bus: bus.Addr(), Logger: logger}
	if modes["job-fail"] {
		sd.JobResult = func(method, unit string) string {
			if method == "StartUnit" {
				return systemd.ResultFailed
			}
			return ""
		}
	}
	if modes["unit-fail"] {
		sd.Settle = func(unit string) (time.Duration, string) { return 500 * time.Millisecond, "failed" }
	}
	if err := sd.Start(); err != nil {
		return err
	}
	ts.Defer(func() { sd.Close() })

	if modes["registered"] {
		if _, err := r.RegisterConsumer("acme"); err != nil {
			return err
		}
	}
	dbusStates.Store(ts, &dbusState{rhsm: r, systemd: sd})
	ts.Defer(func() { dbusStates.Delete(ts) })

	host, _ := os.Hostname()
	ts.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Addr())
	ts.Setenv("RHSM_CONSUMER_DIR", consumerDir)
	ts.Setenv("YGG_HOSTNAME", host)
	ts.Setenv("RHSM_CONSUMER_ID", r.UUID())
	return nil
}

// cmdRHSMConsumer succeeds when the host is registered with a consistent
// identity: cert.pem and key.pem in $RHSM_CONSUMER_DIR form a pair and the
// certificate's CN is the consumer id RHSM reports. It sets
// RHSM_CONSUMER_ID. Negated, it asserts that the host is not registered and
// that both files are gone.
func cmdRHSMConsumer(ts *goscript.TestScript, args []string) error {
	if len(args) != 0 {
		return ErrUsage
	}
	st, err := dbusOf(ts)
	if err != nil {
		return err
	}
	dir := st.rhsm.Dir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	uuid := st.rhsm.UUID()
	ts.Setenv("RHSM_CONSUMER_ID", uuid)
	if uuid == "" {
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Stat(f); err == nil {
				return fmt.Errorf("not registered, but %s is still there", f)
			}
		}
		return errors.New("not registered")
	}
	cn, err := facts.CertCN(certFile)
	if err != nil {
		return err
	}
	if cn != uuid {
		return fmt.Errorf("certificate CN %q is not the consumer id %q", cn, uuid)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fmt.Errorf("cert.pem and key.pem: %w", err)
	}
	ts.Logf("registered: consumer %s", uuid)
	return nil
}

// cmdRHSMCalls prints the RHSM calls, one a line: "method(signature)", with
// " private" for those on the private registration connection.
func cmdRHSMCalls(ts *goscript.TestScript, args []string) error {
	return printCalls(ts, args, func(st *dbusState) []fmt.Stringer { return stringers(st.rhsm.Calls()) })
}

// cmdSystemdCalls prints the systemd Manager calls, one a line, e.g.
// "EnableUnitFiles [yggd.service] false true".
func cmdSystemdCalls(ts *goscript.TestScript, args []string) error {
	return printCalls(ts, args, func(st *dbusState) []fmt.Stringer { return stringers(st.systemd.Calls()) })
}

func printCalls(ts *goscript.TestScript, args []string, calls func(*dbusState) []fmt.Stringer) error {
	if len(args) != 0 {
		return ErrUsage
	}
	st, err := dbusOf(ts)
	if err != nil {
		return err
	}
	w := ts.Stdout() // even when empty: "stdout" then looks at this command
	for _, c := range calls(st) {
		fmt.Fprintln(w, c)
	}
	return nil
}

func stringers[T fmt.Stringer](calls []T) []fmt.Stringer {
	out := make([]fmt.Stringer, len(calls))
	for i, c := range calls {
		out[i] = c
	}
	return out
}
