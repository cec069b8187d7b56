package systemd

import (
	"errors"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/fakes/dbusd"
)

func mustStart(t *testing.T, s *Server) *dbus.Conn {
	t.Helper()
	d := dbusd.MustStart(t)
	s.Bus = d.Addr()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return d.MustConnect(t)
}

// runJob calls method and waits for the JobRemoved of the job it returns.
func runJob(t *testing.T, c *dbus.Conn, method, unit string) string {
	t.Helper()
	sigs := make(chan *dbus.Signal, 16)
	c.Signal(sigs)
	defer c.RemoveSignal(sigs)
	if err := c.AddMatchSignal(dbus.WithMatchInterface(ManagerIntf), dbus.WithMatchMember("JobRemoved")); err != nil {
		t.Fatal(err)
	}
	var job dbus.ObjectPath
	if err := c.Object(BusName, ManagerPath).Call(ManagerIntf+"."+method, 0, unit, "replace").Store(&job); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case sig := <-sigs:
			if sig.Name == ManagerIntf+".JobRemoved" && sig.Body[1].(dbus.ObjectPath) == job {
				return sig.Body[3].(string)
			}
		case <-deadline:
			t.Fatalf("no JobRemoved for %s", job)
		}
	}
}

func activeState(t *testing.T, c *dbus.Conn, unit string) string {
	t.Helper()
	v, err := c.Object(BusName, UnitPath(unit)).GetProperty(UnitIntf + ".ActiveState")
	if err != nil {
		t.Fatal(err)
	}
	return v.Value().(string)
}

func TestEnableStartStopDisable(t *testing.T) {
	s := &Server{}
	c := mustStart(t, s)
	m := c.Object(BusName, ManagerPath)

	var carries bool
	var changes []Change
	if err := m.Call(ManagerIntf+".EnableUnitFiles", 0, []string{"yggd.service"}, false, true).Store(&carries, &changes); err != nil {
		t.Fatal(err)
	}
	if want := []Change{{"symlink", "/etc/systemd/system/multi-user.target.wants/yggd.service", "/usr/lib/systemd/system/yggd.service"}}; !carries || !cmp.Equal(changes, want) {
		t.Errorf("EnableUnitFiles = %v, %v; want true, %v", carries, changes, want)
	}
	if err := m.Call(ManagerIntf+".Reload", 0).Err; err != nil {
		t.Fatal(err)
	}
	if r := runJob(t, c, "StartUnit", "yggd.service"); r != "done" {
		t.Errorf("start result %q, want done", r)
	}
	if got := activeState(t, c, "yggd.service"); got != "active" {
		t.Errorf("ActiveState after start = %q", got)
	}
	if r := runJob(t, c, "StopUnit", "yggd.service"); r != "done" {
		t.Errorf("stop result %q, want done", r)
	}
	if err := m.Call(ManagerIntf+".DisableUnitFiles", 0, []string{"yggd.service"}, false).Store(&changes); err != nil || len(changes) != 1 {
		t.Errorf("DisableUnitFiles = %v, %v", changes, err)
	}
	if st, _ := s.Unit("yggd.service"); st != (UnitState{"inactive", "disabled"}) {
		t.Errorf("state %+v", st)
	}

	var got []string
	for _, c := range s.Calls() {
		got = append(got, c.String())
	}
	want := []string{
		"EnableUnitFiles [yggd.service] false true",
		"Reload",
		"StartUnit yggd.service replace",
		"StopUnit yggd.service replace",
		"DisableUnitFiles [yggd.service] false",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestJobFails(t *testing.T) {
	s := &Server{JobResult: func(method, unit string) string {
		if method == "StartUnit" {
			return ResultFailed
		}
		return ""
	}}
	c := mustStart(t, s)
	if r := runJob(t, c, "StartUnit", "yggd.service"); r != "failed" {
		t.Errorf("result %q, want failed", r)
	}
	if got := activeState(t, c, "yggd.service"); got != "failed" {
		t.Errorf("ActiveState = %q, want failed", got)
	}
}

func TestSettle(t *testing.T) {
	s := &Server{Settle: func(unit string) (time.Duration, string) { return 50 * time.Millisecond, "failed" }}
	c := mustStart(t, s)
	if r := runJob(t, c, "StartUnit", "yggd.service"); r != "done" {
		t.Errorf("result %q, want done", r)
	}
	// Still on its way when the job has ended, then failed.
	if got := activeState(t, c, "yggd.service"); got != "activating" {
		t.Errorf("ActiveState at JobRemoved = %q, want activating", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for activeState(t, c, "yggd.service") != "failed" {
		if time.Now().After(deadline) {
			t.Fatalf("ActiveState = %q, never failed", activeState(t, c, "yggd.service"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUnknownUnit(t *testing.T) {
	c := mustStart(t, &Server{})
	m := c.Object(BusName, ManagerPath)
	err := m.Call(ManagerIntf+".EnableUnitFiles", 0, []string{"nope.service"}, false, true).Err
	var de dbus.Error
	if !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.FileNotFound" {
		t.Errorf("enable unknown: %v, want FileNotFound", err)
	}
	err = m.Call(ManagerIntf+".StartUnit", 0, "nope.service", "replace").Err
	if !errors.As(err, &de) || de.Name != "org.freedesktop.systemd1.NoSuchUnit" {
		t.Errorf("start unknown: %v, want NoSuchUnit", err)
	}
}

func TestUnitPath(t *testing.T) {
	for in, want := range map[string]dbus.ObjectPath{
		"yggd.service":  "/org/freedesktop/systemd1/unit/yggd_2eservice",
		"rhcd.service":  "/org/freedesktop/systemd1/unit/rhcd_2eservice",
		"1a-b@c.socket": "/org/freedesktop/systemd1/unit/_31a_2db_40c_2esocket",
	} {
		if got := UnitPath(in); got != want {
			t.Errorf("UnitPath(%q) = %q, want %q", in, got, want)
		}
	}
}
