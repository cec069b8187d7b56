// Package check is ygg check: a self-test of the host in the manner of
// Azure IoT Edge's iotedge check. It reads yggd's configuration file with
// yggd's own code (yggdrasil/config), judges the identity files and the
// worker files by yggd's own rules, tries the broker, asks the running yggd
// on its control socket and RHSM on D-Bus, and reports each check as ok,
// warning, error or skipped, with one line of advice when it is not ok.
//
// It never disturbs a running yggd: its test connection to the broker uses
// the client id yggdrasil.CheckClientSuffix appended to the host's, with a
// clean session, so yggd's session (and the messages the broker keeps for
// it) is never taken over; see Topics.
package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

// Status is the outcome of one check.
type Status string

const (
	OK      Status = "ok"
	Warning Status = "warning" // works, but something should be fixed
	Error   Status = "error"   // yggd cannot work as configured
	Skipped Status = "skipped" // an earlier check failed, or it does not apply
)

// Result is one check. Its JSON keys are a documented interface.
type Result struct {
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	Advice  string `json:"advice,omitempty"` // one line, when not ok
}

// Version is the version of Report; fields are added, never renamed or
// removed, while it stays 1.
const Version = 1

// Report is what ygg check --format json prints.
type Report struct {
	Version int      `json:"version"`
	Config  string   `json:"config"` // the file checked; "" when none
	Checks  []Result `json:"checks"`
}

// Failed reports whether any check is an error.
func (r Report) Failed() bool {
	for _, c := range r.Checks {
		if c.Status == Error {
			return true
		}
	}
	return false
}

// Env is what the checks read besides the files the configuration names.
type Env struct {
	ConfigFile string // the file to check; "" for yggd's default when it exists
	Euid       int    // this process's effective uid
	Now        func() time.Time
	Timeout    time.Duration // for each network step; 0 means 10 s
	// Status asks yggd's control socket at path.
	Status func(ctx context.Context, path string) (control.Status, error)
	// RHSMConsumer returns RHSM's consumer id ("" when not registered).
	RHSMConsumer func(ctx context.Context) (string, error)
	// ProcessUID returns the uid a process runs as.
	ProcessUID func(pid int) (int, bool)
	Unit       string // yggd's systemd unit, for advice
}

func ok(name, format string, args ...any) Result {
	return Result{Name: name, Status: OK, Message: fmt.Sprintf(format, args...)}
}

func warning(name, advice, format string, args ...any) Result {
	return Result{Name: name, Status: Warning, Message: fmt.Sprintf(format, args...), Advice: advice}
}

func failed(name, advice, format string, args ...any) Result {
	return Result{Name: name, Status: Error, Message: fmt.Sprintf(format, args...), Advice: advice}
}

func skipped(name, format string, args ...any) Result {
	return Result{Name: name, Status: Skipped, Message: fmt.Sprintf(format, args...)}
}

// Run runs every check, in the order the report lists them.
func Run(ctx context.Context, env Env) Report {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Timeout <= 0 {
		env.Timeout = 10 * time.Second
	}
	cfg, res := Config(env.ConfigFile)
	r := Report{Version: Version, Config: cfg.File, Checks: []Result{res}}
	if res.Status == Error {
		for _, name := range []string{NameCertificate, NameKeyFile, NameValidity, NameClientID, NameBroker, NameTopics,
			NameWorkerDir, NameWorkerFiles, NameYggd, NameYggdWorkers, NameRHSM} {
			r.Checks = append(r.Checks, skipped(name, "needs a configuration that yggd accepts"))
		}
		return r
	}

	// yggd first: whether it is connected decides how a refusal of the
	// check's own connection is read, and it tells yggd's uid.
	sctx, cancel := context.WithTimeout(ctx, env.Timeout)
	st, stErr := env.Status(sctx, cfg.ControlSocketPath())
	cancel()
	yggdUID := env.Euid
	if stErr == nil && env.ProcessUID != nil {
		if uid, ok := env.ProcessUID(st.PID); ok {
			yggdUID = uid
		}
	}
	var yggd *control.Status
	if stErr == nil {
		yggd = &st
	}

	id, idRes := Identity(cfg, env.Now(), yggdUID)
	r.Checks = append(r.Checks, idRes...)
	brokerRes, reachable := Brokers(ctx, cfg, id, env.Timeout)
	r.Checks = append(r.Checks, brokerRes...)
	r.Checks = append(r.Checks, Topics(ctx, cfg, id, reachable, yggd, env.Timeout))
	r.Checks = append(r.Checks, WorkerDir(cfg.WorkerDir, yggdUID)...)
	r.Checks = append(r.Checks, Yggd(cfg.ControlSocketPath(), yggd, stErr, id.ClientID, env.Unit)...)
	var consumer string
	var rhsmErr error
	if id.Leaf != nil && env.RHSMConsumer != nil {
		rctx, cancel := context.WithTimeout(ctx, env.Timeout)
		consumer, rhsmErr = env.RHSMConsumer(rctx)
		cancel()
	}
	r.Checks = append(r.Checks, RHSM(cfg.CertFile, id, consumer, rhsmErr))
	return r
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteTable writes r as one line a check (status, name, message), each
// advice on the line below, and a summary.
func WriteTable(w io.Writer, r Report) error {
	counts := map[Status]int{}
	var b strings.Builder
	for _, c := range r.Checks {
		counts[c.Status]++
		fmt.Fprintf(&b, "%-8s %-16s %s\n", c.Status, c.Name, c.Message)
		if c.Advice != "" {
			fmt.Fprintf(&b, "%-8s %-16s advice: %s\n", "", "", c.Advice)
		}
	}
	fmt.Fprintf(&b, "\n%d ok, %d warnings, %d errors, %d skipped\n", counts[OK], counts[Warning], counts[Error], counts[Skipped])
	_, err := io.WriteString(w, b.String())
	return err
}
