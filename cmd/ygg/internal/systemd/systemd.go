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
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	busName     = "org.freedesktop.systemd1"
	managerPath = "/org/freedesktop/systemd1"
	managerIntf = "org.freedesktop.systemd1.Manager"
	unitIntf    = "org.freedesktop.systemd1.Unit"
)

// JobError is a start or stop job that did not end in "done".
type JobError struct {
	Unit   string
	Verb   string // "start" or "stop"
	Result string // job result: failed, timeout, canceled, dependency…
}

func (e *JobError) Error() string {
	return fmt.Sprintf("%s %s: job %s; run 'systemctl status %s' and 'journalctl -u %s' to see why",
		e.Verb, e.Unit, e.Result, e.Unit, e.Unit)
}

// UnitStateError is a unit that did not become active after its start job
// ended "done": it failed or stopped at once, or was still on its way when
// the wait ended.
type UnitStateError struct {
	Unit   string
	State  string        // the last ActiveState read: failed, inactive, activating…
	Waited time.Duration // set when the wait ended before the unit settled
}

func (e *UnitStateError) Error() string {
	what := fmt.Sprintf("%s did not become active: it is %s", e.Unit, e.State)
	if e.Waited > 0 {
		what = fmt.Sprintf("%s did not become active within %s: it is still %s", e.Unit, e.Waited, e.State)
	}
	return fmt.Sprintf("%s; run 'systemctl status %s' and 'journalctl -u %s' to see why", what, e.Unit, e.Unit)
}

// DefaultActiveTimeout is how long Start waits for a unit to become active
// once its start job is done. With Type=notify the job itself waits for
// the service's READY=1, so this is rarely more than a moment.
const DefaultActiveTimeout = 30 * time.Second

// activePoll is how often Start reads the unit's state while it waits.
const activePoll = 100 * time.Millisecond

// State is what ygg shows of a unit.
type State struct {
	LoadState     string // loaded, not-found, …
	ActiveState   string // active, inactive, failed, …
	SubState      string
	UnitFileState string // enabled, disabled, …
}

// Client calls systemd over conn, a connection to the system bus.
type Client struct {
	conn *dbus.Conn
	// ActiveTimeout bounds Start's wait for the unit to become active
	// after its start job (default DefaultActiveTimeout).
	ActiveTimeout time.Duration
}

// New returns a client on conn.
func New(conn *dbus.Conn) *Client { return &Client{conn: conn, ActiveTimeout: DefaultActiveTimeout} }

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

// Start starts unit, waits for the job, then waits until the unit is
// active: a *JobError when the job did not end "done", a *UnitStateError
// when the unit then failed, stopped, or was not active within
// ActiveTimeout. A unit that has reached active is not watched further.
func (c *Client) Start(ctx context.Context, unit string) error {
	if err := c.job(ctx, "StartUnit", "start", unit); err != nil {
		return err
	}
	timeout := c.ActiveTimeout
	if timeout <= 0 {
		timeout = DefaultActiveTimeout
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(activePoll)
	defer tick.Stop()
	for {
		st, err := c.State(ctx, unit)
		if err != nil {
			return err
		}
		switch st.ActiveState {
		case "active":
			return nil
		case "activating", "reloading", "deactivating", "refreshing":
			// On its way (or restarting, sub-state auto-restart): wait.
		default: // failed, inactive, maintenance…
			return &UnitStateError{Unit: unit, State: st.ActiveState}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start %s: wait until active: %w", unit, ctx.Err())
		case <-deadline.C:
			return &UnitStateError{Unit: unit, State: st.ActiveState, Waited: timeout}
		case <-tick.C:
		}
	}
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
