// Package systemd is a fake of systemd's D-Bus Manager (org.freedesktop.systemd1)
// for tests and the demo: the calls that ygg makes to enable, start, stop and
// disable a unit and to reload, answered the way systemd answers them. Start
// and stop return a job path and then emit JobNew and JobRemoved with the
// job's result (whether or not anyone subscribed), and each unit is an object
// whose org.freedesktop.systemd1.Unit properties (ActiveState, SubState,
// LoadState, UnitFileState, …) follow. Every call is recorded so that tests
// can assert on what was asked of systemd. See docs/rhsm-dbus.md §9.
package systemd

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
)

// Names of the real service.
const (
	BusName     = "org.freedesktop.systemd1"
	ManagerPath = "/org/freedesktop/systemd1"
	ManagerIntf = "org.freedesktop.systemd1.Manager"
	UnitIntf    = "org.freedesktop.systemd1.Unit"
)

// Job results, as in JobRemoved.
const (
	ResultDone       = "done"
	ResultFailed     = "failed"
	ResultTimeout    = "timeout"
	ResultCanceled   = "canceled"
	ResultDependency = "dependency"
)

// UnitPath returns the object path of a unit: every byte that is not an
// ASCII letter or digit (and a leading digit) becomes _ and two hex digits.
func UnitPath(name string) dbus.ObjectPath {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return dbus.ObjectPath(ManagerPath + "/unit/" + b.String())
}

// Call is one Manager method call, with its arguments.
type Call struct {
	Method string
	Args   []any
}

// String prints the call as "Method arg arg…", e.g.
// "EnableUnitFiles [yggd.service] false true".
func (c Call) String() string {
	parts := []string{c.Method}
	for _, a := range c.Args {
		parts = append(parts, fmt.Sprint(a))
	}
	return strings.Join(parts, " ")
}

// Change is one entry of EnableUnitFiles' and DisableUnitFiles' a(sss).
type Change struct {
	Type        string // "symlink" or "unlink"
	Filename    string
	Destination string
}

// Server is the fake systemd. The zero value works: Start connects to the
// system bus (DBUS_SYSTEM_BUS_ADDRESS) and knows one unit, yggd.service,
// disabled and inactive, whose jobs all succeed.
type Server struct {
	// Bus is the address of the bus to serve on; "" means the system bus.
	Bus string
	// Units are the installed unit files; nil means ["yggd.service"].
	Units []string
	// JobResult decides the result of each job ("StartUnit", "StopUnit",
	// "RestartUnit"); nil, or "", means "done".
	JobResult func(method, unit string) string
	// JobDelay is how long a job runs before JobRemoved (a slow
	// "activating" phase).
	JobDelay time.Duration
	// Settle, if set, decides what a unit does after a start job that
	// ends "done": it is still "activating" when JobRemoved is emitted,
	// and after delay it becomes state ("active", "failed", "inactive").
	// A state of "failed" is a service that dies right after its start
	// job, a long delay one that never gets ready.
	Settle func(unit string) (delay time.Duration, state string)
	// Logger logs each call (nil = discarded).
	Logger *slog.Logger

	mu      sync.Mutex
	conn    *dbus.Conn
	units   map[string]*unit
	calls   []Call
	nextJob uint32
	wg      sync.WaitGroup
	closing chan struct{}
	closed  bool
}

// loadError is the (ss) LoadError property: error name and message.
type loadError struct{ Name, Message string }

type unit struct {
	name    string
	enabled bool
	props   *prop.Properties
}

// Start connects to the bus, exports the Manager and the units and takes the
// name org.freedesktop.systemd1.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil || s.closed {
		return errors.New("start systemd: already started")
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	s.Logger = s.Logger.With("component", "fake-systemd")
	s.closing = make(chan struct{})
	var conn *dbus.Conn
	var err error
	if s.Bus == "" {
		conn, err = dbus.ConnectSystemBus()
	} else {
		conn, err = dbus.Connect(s.Bus)
	}
	if err != nil {
		return fmt.Errorf("start systemd: connect bus: %w", err)
	}
	s.conn = conn
	fail := func(err error) error {
		conn.Close()
		s.conn = nil
		return fmt.Errorf("start systemd: %w", err)
	}
	m := &manager{s}
	if err := conn.Export(m, ManagerPath, ManagerIntf); err != nil {
		return fail(err)
	}
	names := s.Units
	if names == nil {
		names = []string{"yggd.service"}
	}
	s.units = map[string]*unit{}
	var children []introspect.Node
	for _, name := range names {
		u := &unit{name: name}
		props, err := prop.Export(conn, UnitPath(name), prop.Map{UnitIntf: {
			"Id":            {Value: name, Emit: prop.EmitTrue},
			"Names":         {Value: []string{name}, Emit: prop.EmitTrue},
			"Description":   {Value: "fake " + name, Emit: prop.EmitTrue},
			"LoadState":     {Value: "loaded", Emit: prop.EmitTrue},
			"LoadError":     {Value: loadError{}, Emit: prop.EmitTrue},
			"ActiveState":   {Value: "inactive", Emit: prop.EmitTrue},
			"SubState":      {Value: "dead", Emit: prop.EmitTrue},
			"UnitFileState": {Value: "disabled", Emit: prop.EmitTrue},
		}})
		if err != nil {
			return fail(fmt.Errorf("export unit %s: %w", name, err))
		}
		u.props = props
		s.units[name] = u
		node := &introspect.Node{Name: string(UnitPath(name)), Interfaces: []introspect.Interface{
			prop.IntrospectData, introspect.IntrospectData,
			{Name: UnitIntf, Properties: props.Introspection(UnitIntf)},
		}}
		if err := conn.Export(introspect.NewIntrospectable(node), UnitPath(name), "org.freedesktop.DBus.Introspectable"); err != nil {
			return fail(err)
		}
		children = append(children, introspect.Node{Name: strings.TrimPrefix(string(UnitPath(name)), ManagerPath+"/")})
	}
	node := &introspect.Node{Name: ManagerPath, Children: children, Interfaces: []introspect.Interface{
		introspect.IntrospectData,
		{Name: ManagerIntf, Methods: introspect.Methods(m), Signals: []introspect.Signal{
			{Name: "JobNew", Args: []introspect.Arg{{Name: "id", Type: "u"}, {Name: "job", Type: "o"}, {Name: "unit", Type: "s"}}},
			{Name: "JobRemoved", Args: []introspect.Arg{{Name: "id", Type: "u"}, {Name: "job", Type: "o"}, {Name: "unit", Type: "s"}, {Name: "result", Type: "s"}}},
			{Name: "UnitFilesChanged"},
			{Name: "Reloading", Args: []introspect.Arg{{Name: "active", Type: "b"}}},
		}},
	}}
	if err := conn.Export(introspect.NewIntrospectable(node), ManagerPath, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fail(err)
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return fail(fmt.Errorf("request name %s: %w", BusName, err))
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		return fail(fmt.Errorf("request name %s: already owned", BusName))
	}
	return nil
}

// Close stops the running jobs, waits for them and leaves the bus. It is safe
// to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.closing != nil {
		close(s.closing)
	}
	conn := s.conn
	s.mu.Unlock()
	s.wg.Wait()
	if conn != nil {
		conn.Close()
	}
	return nil
}

// Calls returns the Manager calls received so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// UnitState is what the fake knows of a unit.
type UnitState struct {
	ActiveState   string // active, inactive, failed, activating, deactivating
	UnitFileState string // enabled, disabled
}

// Unit returns the state of a unit; ok is false for an unknown unit.
func (s *Server) Unit(name string) (state UnitState, ok bool) {
	s.mu.Lock()
	u := s.units[name]
	s.mu.Unlock()
	if u == nil {
		return UnitState{}, false
	}
	return UnitState{
		ActiveState:   u.props.GetMust(UnitIntf, "ActiveState").(string),
		UnitFileState: u.props.GetMust(UnitIntf, "UnitFileState").(string),
	}, true
}

func (s *Server) record(method string, args ...any) {
	s.mu.Lock()
	s.calls = append(s.calls, Call{Method: method, Args: args})
	s.mu.Unlock()
	s.Logger.Info("call", "method", method, "args", args)
}

func (s *Server) unit(name string) (*unit, *dbus.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.units[name]; u != nil {
		return u, nil
	}
	return nil, dbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + name + " not found."})
}

// subState is the sub-state a service shows in each active state.
var subState = map[string]string{
	"active":       "running",
	"activating":   "start",
	"deactivating": "stop",
	"inactive":     "dead",
	"failed":       "failed",
}

func (u *unit) setActive(active, sub string) {
	u.props.SetMust(UnitIntf, "ActiveState", active)
	u.props.SetMust(UnitIntf, "SubState", sub)
}

// manager is the exported org.freedesktop.systemd1.Manager.
type manager struct{ s *Server }

func (m *manager) job(method, name, mode string) (dbus.ObjectPath, *dbus.Error) {
	s := m.s
	s.record(method, name, mode)
	u, derr := s.unit(name)
	if derr != nil {
		return "", derr
	}
	switch mode {
	case "replace", "fail", "isolate", "ignore-dependencies", "ignore-requirements":
	default:
		return "", dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{"Job mode " + mode + " invalid."})
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", dbus.MakeFailedError(errors.New("systemd is shutting down"))
	}
	s.nextJob++
	id := s.nextJob
	s.wg.Add(1)
	s.mu.Unlock()
	path := dbus.ObjectPath(fmt.Sprintf("%s/job/%d", ManagerPath, id))
	starting := method != "StopUnit"
	if starting {
		u.setActive("activating", "start")
	} else {
		u.setActive("deactivating", "stop")
	}
	result := ResultDone
	if s.JobResult != nil {
		if r := s.JobResult(method, name); r != "" {
			result = r
		}
	}
	go func() { // the job runs after the reply, as in systemd
		defer s.wg.Done()
		s.conn.Emit(ManagerPath, ManagerIntf+".JobNew", id, path, name)
		if s.JobDelay > 0 {
			t := time.NewTimer(s.JobDelay)
			select {
			case <-t.C:
			case <-s.closing:
				t.Stop()
				result = ResultCanceled
			}
		}
		switch {
		case starting && result == ResultDone && s.Settle != nil:
			delay, state := s.Settle(name)
			s.conn.Emit(ManagerPath, ManagerIntf+".JobRemoved", id, path, name, result)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
				u.setActive(state, subState[state])
			case <-s.closing:
				t.Stop()
			}
			return
		case starting && result == ResultDone:
			u.setActive("active", "running")
		case starting:
			u.setActive("failed", "failed")
		case result == ResultDone:
			u.setActive("inactive", "dead")
		default:
			u.setActive("failed", "failed")
		}
		s.conn.Emit(ManagerPath, ManagerIntf+".JobRemoved", id, path, name, result)
	}()
	return path, nil
}

func (m *manager) StartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.job("StartUnit", name, mode)
}

func (m *manager) StopUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.job("StopUnit", name, mode)
}

func (m *manager) RestartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.job("RestartUnit", name, mode)
}

func (m *manager) EnableUnitFiles(files []string, runtime, force bool) (bool, []Change, *dbus.Error) {
	m.s.record("EnableUnitFiles", files, runtime, force)
	changes, err := m.s.setEnabled(files, true, runtime)
	return err == nil, changes, err
}

func (m *manager) DisableUnitFiles(files []string, runtime bool) ([]Change, *dbus.Error) {
	m.s.record("DisableUnitFiles", files, runtime)
	return m.s.setEnabled(files, false, runtime)
}

func (s *Server) setEnabled(files []string, enable, runtime bool) ([]Change, *dbus.Error) {
	var us []*unit
	for _, f := range files {
		u, err := s.unit(f)
		if err != nil {
			return nil, dbus.NewError("org.freedesktop.DBus.Error.FileNotFound", []any{"Unit file " + f + " does not exist."})
		}
		us = append(us, u)
	}
	dir := "/etc/systemd/system"
	if runtime {
		dir = "/run/systemd/system"
	}
	changes := []Change{}
	for _, u := range us {
		s.mu.Lock()
		was := u.enabled
		u.enabled = enable
		s.mu.Unlock()
		link := dir + "/multi-user.target.wants/" + u.name
		switch {
		case enable && !was:
			changes = append(changes, Change{"symlink", link, "/usr/lib/systemd/system/" + u.name})
			u.props.SetMust(UnitIntf, "UnitFileState", "enabled")
		case !enable && was:
			changes = append(changes, Change{"unlink", link, ""})
			u.props.SetMust(UnitIntf, "UnitFileState", "disabled")
		}
	}
	if len(changes) > 0 {
		s.conn.Emit(ManagerPath, ManagerIntf+".UnitFilesChanged")
	}
	return changes, nil
}

func (m *manager) Reload() *dbus.Error {
	m.s.record("Reload")
	m.s.conn.Emit(ManagerPath, ManagerIntf+".Reloading", true)
	m.s.conn.Emit(ManagerPath, ManagerIntf+".Reloading", false)
	return nil
}

func (m *manager) GetUnit(name string) (dbus.ObjectPath, *dbus.Error) {
	m.s.record("GetUnit", name)
	if _, err := m.s.unit(name); err != nil {
		return "", err
	}
	return UnitPath(name), nil
}

func (m *manager) LoadUnit(name string) (dbus.ObjectPath, *dbus.Error) {
	m.s.record("LoadUnit", name)
	if _, err := m.s.unit(name); err != nil {
		return "", err
	}
	return UnitPath(name), nil
}

func (m *manager) GetUnitFileState(file string) (string, *dbus.Error) {
	m.s.record("GetUnitFileState", file)
	u, err := m.s.unit(file)
	if err != nil {
		return "", dbus.NewError("org.freedesktop.DBus.Error.FileNotFound", []any{"No such file or directory"})
	}
	return u.props.GetMust(UnitIntf, "UnitFileState").(string), nil
}

func (m *manager) Subscribe() *dbus.Error {
	m.s.record("Subscribe")
	return nil
}

func (m *manager) Unsubscribe() *dbus.Error {
	m.s.record("Unsubscribe")
	return nil
}
