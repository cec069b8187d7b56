package yggcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ygglab/yggdrasil/cmd/ygg/internal/rhsm"
	"github.com/ygglab/yggdrasil/cmd/ygg/internal/systemd"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/build"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/facts"
)

// statusReport is what status prints; its JSON keys are a documented
// interface.
type statusReport struct {
	Hostname      string `json:"hostname"`
	Registered    bool   `json:"registered"`
	ConsumerID    string `json:"consumer_id"`
	RHSMError     string `json:"rhsm_error,omitempty"`
	Unit          string `json:"unit"`
	ActiveState   string `json:"active_state"`
	UnitFileState string `json:"unit_file_state"`
	Running       bool   `json:"yggd_running"`
	UnitError     string `json:"unit_error,omitempty"`
	// ControlSocket is where yggd was asked; Yggd is its answer (see
	// yggdrasil/control: versioned), YggdError why there is none.
	ControlSocket string          `json:"control_socket"`
	Yggd          *control.Status `json:"yggd,omitempty"`
	YggdError     string          `json:"yggd_error,omitempty"`
}

func runStatus(ctx context.Context, a *app, p *parsed) error {
	r := statusReport{Hostname: hostname(), Unit: build.UnitName()}
	if conn, err := systemBus(); err != nil {
		r.RHSMError, r.UnitError = err.Error(), err.Error()
	} else {
		defer conn.Close()
		if uuid, err := rhsm.New(conn).UUID(ctx); err != nil {
			r.RHSMError = err.Error()
		} else {
			r.ConsumerID, r.Registered = uuid, uuid != ""
		}
		if st, err := systemd.New(conn).State(ctx, r.Unit); err != nil {
			r.UnitError = err.Error()
		} else {
			r.ActiveState, r.UnitFileState, r.Running = st.ActiveState, st.UnitFileState, st.ActiveState == "active"
		}
	}

	path, st, err := a.yggdStatus(ctx, p)
	r.ControlSocket, r.Yggd = path, st
	if err != nil {
		r.YggdError = err.Error()
	}

	if p.get("format") == "json" {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintf(a.stdout, "%s\n", b)
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "Host:\t%s\n", r.Hostname)
		switch {
		case r.RHSMError != "":
			fmt.Fprintf(tw, "Registration:\tunknown (%s)\n", r.RHSMError)
		case r.Registered:
			fmt.Fprintf(tw, "Registration:\tregistered (consumer %s)\n", r.ConsumerID)
		default:
			fmt.Fprintf(tw, "Registration:\tnot registered\n")
		}
		if r.UnitError != "" {
			fmt.Fprintf(tw, "%s:\tunknown (%s)\n", r.Unit, r.UnitError)
		} else {
			fmt.Fprintf(tw, "%s:\t%s (%s)\n", r.Unit, r.ActiveState, r.UnitFileState)
		}
		if st == nil {
			fmt.Fprintf(tw, "Connection:\tunknown (%s)\n", r.YggdError)
			tw.Flush()
		} else {
			fmt.Fprintf(tw, "Connection:\t%s\n", connectionText(st.Connection, time.Now()))
			fmt.Fprintf(tw, "Client id:\t%s\n", st.Identity.ClientID)
			if !st.Identity.NotAfter.IsZero() {
				fmt.Fprintf(tw, "Certificate:\t%s, valid until %s\n", st.Identity.Subject, st.Identity.NotAfter.Local().Format(time.DateTime))
			}
			fmt.Fprintf(tw, "Answer queue:\t%d (%d bytes), %d dropped\n", st.Queue.Answers, st.Queue.Bytes, st.Queue.Dropped)
			tw.Flush()
			fmt.Fprintln(a.stdout)
			writeWorkers(a.stdout, st.Workers)
		}
	}
	if !r.Registered || !r.Running || !yggdHealthy(st) {
		return errSilent
	}
	return nil
}

// factSources builds the facts' sources from the flags and YGG_FACTS_ROOT.
func (a *app) factSources(p *parsed) facts.Sources {
	root := p.get("root")
	if root == "" {
		root = a.getenv("YGG_FACTS_ROOT")
	}
	return facts.Sources{Root: root, ConsumerCert: p.get("consumer-cert")}
}

func (a *app) collect(p *parsed) yggdrasil.CanonicalFacts {
	f, errs := facts.Collect(a.factSources(p))
	for _, err := range errs {
		fmt.Fprintf(a.stderr, "%s: warning: %v\n", build.ShortName, err)
	}
	return f
}

func runFacts(ctx context.Context, a *app, p *parsed) error {
	f := a.collect(p)
	if p.get("format") == "json" {
		b, _ := json.MarshalIndent(f, "", "  ")
		fmt.Fprintf(a.stdout, "%s\n", b)
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"insights_id", f.InsightsID},
		{"machine_id", f.MachineID},
		{"bios_uuid", f.BIOSUUID},
		{"subscription_manager_id", f.SubscriptionManagerID},
		{"ip_addresses", strings.Join(f.IPAddresses, ", ")},
		{"mac_addresses", strings.Join(f.MACAddresses, ", ")},
		{"fqdn", f.FQDN},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

func runCanonicalFacts(ctx context.Context, a *app, p *parsed) error {
	b, err := json.Marshal(a.collect(p))
	if err != nil {
		return fmt.Errorf("encode facts: %w", err)
	}
	_, err = a.stdout.Write(b)
	return err
}
