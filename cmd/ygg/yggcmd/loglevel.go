package yggcmd

import (
	"context"
	"fmt"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

// logLevels are the names yggd's log level takes, for help and completion;
// yggd decides which it accepts.
var logLevels = []string{"error", "warn", "info", "debug", "trace"}

// runLogLevel prints the running yggd's log level, or sets it to the
// argument and prints the level in force.
func runLogLevel(ctx context.Context, a *app, p *parsed) error {
	path, err := a.controlSocket(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := control.Dial(path)
	var level string
	if len(p.args) == 0 {
		level, err = c.LogLevel(ctx)
	} else {
		level, err = c.SetLogLevel(ctx, p.args[0])
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, level)
	return nil
}
