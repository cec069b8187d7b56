package dbusd

import (
	"context"
	"errors"
	"testing"
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
