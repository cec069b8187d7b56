package testscript

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

// controlCommands returns the commands about yggd's control socket.
func controlCommands() map[string]command {
	return map[string]command{
		"control-wait": {
			usage:     "control-wait [-timeout d] regexp",
			negatable: true,
			run:       controlWait,
		},
	}
}

// controlWait polls GET /v1/status on $RUNTIME_DIRECTORY/control.sock
// until its JSON (indented, as ygg prints it) matches regexp, and prints
// the last document read.
func controlWait(ts *goscript.TestScript, args []string) error {
	timeout := 10 * time.Second
	if isNegated(ts) {
		timeout = 2 * time.Second
	}
	args, err := flags("control-wait", args, func(fs *flag.FlagSet) { fs.DurationVar(&timeout, "timeout", timeout, "") })
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return ErrUsage
	}
	re, err := regexp.Compile(args[0])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	c := control.Dial(filepath.Join(ts.Getenv("RUNTIME_DIRECTORY"), "control.sock"))
	var last []byte
	err = poll(ts, timeout, func() error {
		st, err := c.Status(scriptContext(ts))
		if err != nil {
			return err
		}
		last, _ = json.MarshalIndent(st, "", "  ")
		if !re.Match(last) {
			return fmt.Errorf("no match for %q in the last status:\n%s", re, last)
		}
		return nil
	})
	if err == nil {
		io.WriteString(ts.Stdout(), string(last)+"\n")
	}
	return err
}
