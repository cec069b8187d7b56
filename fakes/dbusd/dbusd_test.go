package dbusd

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/godbus/dbus/v5"
)

// mustStart starts a private bus for t, skipping when dbus-daemon is absent.
func mustStart(t *testing.T) *Daemon {
	t.Helper()
	d := &Daemon{}
	if err := d.Start(context.Background()); errors.Is(err, ErrNotInstalled) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDaemon(t *testing.T) {
	d := mustStart(t)
	conn, err := dbus.Connect(d.Addr())
	if err != nil {
		t.Fatalf("connect %s: %v", d.Addr(), err)
	}
	defer conn.Close()
	reply, err := conn.RequestName("com.example.Test", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("request name: got %v, %v; want primary owner", reply, err)
	}
	var names []string
	if err := conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range names {
		found = found || n == "com.example.Test"
	}
	if !found {
		t.Errorf("ListNames = %v, want com.example.Test in it", names)
	}

	dir := d.dir
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still there after Close (stat: %v)", dir, err)
	}
	if _, err := dbus.Connect(d.Addr()); err == nil {
		t.Errorf("connect after Close succeeded")
	}
}

func TestSystemBusAddressFromEnv(t *testing.T) {
	d := mustStart(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", d.Addr())
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		t.Fatalf("ConnectSystemBus with DBUS_SYSTEM_BUS_ADDRESS=%s: %v", d.Addr(), err)
	}
	conn.Close()
}

func TestStartMissingProgram(t *testing.T) {
	d := &Daemon{Program: "/nonexistent/dbus-daemon"}
	if err := d.Start(context.Background()); err == nil {
		d.Close()
		t.Fatal("Start succeeded with a missing program")
	}
}
