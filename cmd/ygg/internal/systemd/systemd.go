// Package systemd is ygg's client of the systemd Manager on the system bus:
// enable and disable unit files, reload, start and stop a unit and wait for
// the job to finish (the JobRemoved signal), and read a unit's state. It
// makes the calls go-systemd makes for ygg 0.1.x and rhc
// (docs/rhsm-dbus.md §9).
package systemd

import (
	"context"
	"fmt"
	"strings"

	"github.com/godbus/dbus/v5"
)

const (
	busName     = "org.freedesktop.systemd1"
	managerPath = "/org/freedesktop/systemd1"
	managerIntf = "org.freedesktop.systemd1.Manager"
	unitIntf    = "org.freedesktop.systemd1.Unit"
)

// JobError is a start or stop job that did not end in "done", or a unit that
// is not active after a successful start job.
type JobError struct {
	Unit   string
	Verb   string // "start" or "stop"
	Result string // job result: failed, timeout, canceled, dependency…; or the ActiveState
}

func (e *JobError) Error() string {
	return fmt.Sprintf("%s %s: job %s; run 'systemctl status %s' and 'journalctl -u %s' to see why",
		e.Verb, e.Unit, e.Result, e.Unit, e.Unit)
}

// State is what ygg shows of a unit.
type State struct {
	LoadState     string // loaded, not-found, …
	ActiveState   string // active, inactive, failed, …
	SubState      string
	UnitFileState string // enabled, disabled, …
}

// Client calls systemd over conn, a connection to the system bus.
type Client struct{ conn *dbus.Conn }

// New returns a client on conn.
func New(conn *dbus.Conn) *Client { return &Client{conn: conn} }

func (c *Client) manager() dbus.BusObject { return c.conn.Object(busName, managerPath) }

type change struct{ Type, Filename, Destination string }

// Enable enables unit (runtime false, force true, as ygg 0.1.x does) and
// reports whether anything changed.
func (c *Client) Enable(ctx context.Context, unit string) (changed bool, err error) {
	var carries bool
	var changes []change
	if err := c.manager().CallWithContext(ctx, managerIntf+".EnableUnitFiles", 0, []string{unit}, false, true).Store(&carries, &changes); err != nil {
		return false, fmt.Errorf("enable %s: %w", unit, err)
	}
	return len(changes) > 0, nil
}

// Disable disables unit and reports whether anything changed.
func (c *Client) Disable(ctx context.Context, unit string) (changed bool, err error) {
	var changes []change
	if err := c.manager().CallWithContext(ctx, managerIntf+".DisableUnitFiles", 0, []string{unit}, false).Store(&changes); err != nil {
		return false, fmt.Errorf("disable %s: %w", unit, err)
	}
	return len(changes) > 0, nil
}

// Reload makes systemd reload its unit files (daemon-reload).
func (c *Client) Reload(ctx context.Context) error {
	if err := c.manager().CallWithContext(ctx, managerIntf+".Reload", 0).Err; err != nil {
		return fmt.Errorf("reload systemd: %w", err)
	}
	return nil
}

// Start starts unit, waits for the job, and checks that the unit is active.
func (c *Client) Start(ctx context.Context, unit string) error {
	if err := c.job(ctx, "StartUnit", "start", unit); err != nil {
		return err
	}
	st, err := c.State(ctx, unit)
	if err != nil {
		return err
	}
	if st.ActiveState != "active" {
		return &JobError{Unit: unit, Verb: "start", Result: "done but the unit is " + st.ActiveState}
	}
	return nil
}

// Stop stops unit and waits for the job.
func (c *Client) Stop(ctx context.Context, unit string) error {
	return c.job(ctx, "StopUnit", "stop", unit)
}

// job calls method (mode "replace") and waits for the JobRemoved of the job
// it returns. The match is added before the call, so a signal that overtakes
// the reply is not lost.
func (c *Client) job(ctx context.Context, method, verb, unit string) error {
	match := []dbus.MatchOption{dbus.WithMatchObjectPath(managerPath), dbus.WithMatchInterface(managerIntf), dbus.WithMatchMember("JobRemoved")}
	if err := c.conn.AddMatchSignalContext(ctx, match...); err != nil {
		return fmt.Errorf("%s %s: watch jobs: %w", verb, unit, err)
	}
	defer c.conn.RemoveMatchSignal(match...)
	sigs := make(chan *dbus.Signal, 64)
	c.conn.Signal(sigs)
	defer c.conn.RemoveSignal(sigs)

	var job dbus.ObjectPath
	if err := c.manager().CallWithContext(ctx, managerIntf+"."+method, 0, unit, "replace").Store(&job); err != nil {
		return fmt.Errorf("%s %s: %w", verb, unit, err)
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s: wait for job %s: %w", verb, unit, job, ctx.Err())
		case sig, ok := <-sigs:
			if !ok {
				return fmt.Errorf("%s %s: wait for job %s: connection closed", verb, unit, job)
			}
			if sig.Name != managerIntf+".JobRemoved" || len(sig.Body) != 4 {
				continue
			}
			if path, _ := sig.Body[1].(dbus.ObjectPath); path != job {
				continue
			}
			if result, _ := sig.Body[3].(string); result != "done" {
				return &JobError{Unit: unit, Verb: verb, Result: result}
			}
			return nil
		}
	}
}

// UnitPath returns the object path of unit.
func UnitPath(unit string) dbus.ObjectPath {
	var b strings.Builder
	for i := 0; i < len(unit); i++ {
		ch := unit[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' && i > 0 {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "_%02x", ch)
		}
	}
	return dbus.ObjectPath(managerPath + "/unit/" + b.String())
}

// State reads the unit's properties.
func (c *Client) State(ctx context.Context, unit string) (State, error) {
	var props map[string]dbus.Variant
	err := c.conn.Object(busName, UnitPath(unit)).CallWithContext(ctx, "org.freedesktop.DBus.Properties.GetAll", 0, unitIntf).Store(&props)
	if err != nil {
		return State{}, fmt.Errorf("read state of %s: %w", unit, err)
	}
	str := func(k string) string { s, _ := props[k].Value().(string); return s }
	return State{LoadState: str("LoadState"), ActiveState: str("ActiveState"), SubState: str("SubState"), UnitFileState: str("UnitFileState")}, nil
}
