package dbusd

import (
	"context"
	"errors"
	"testing"

	"github.com/godbus/dbus/v5"
)

// MustStart starts a private bus for a test and closes it when the test
// ends; it skips the test when dbus-daemon is not installed, and fails it
// on any other error.
func MustStart(tb testing.TB) *Daemon {
	tb.Helper()
	d := &Daemon{}
	if err := d.Start(context.Background()); errors.Is(err, ErrNotInstalled) {
		tb.Skip(err)
	} else if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// MustConnect opens a client connection to the bus for a test and closes
// it when the test ends.
func (d *Daemon) MustConnect(tb testing.TB) *dbus.Conn {
	tb.Helper()
	c, err := dbus.Connect(d.Addr())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
