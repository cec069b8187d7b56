package testscript

import (
	"fmt"
	"os"

	goscript "github.com/rogpeppe/go-internal/testscript"
)

// genCommands returns the commands that write files from the archive's
// templates.
func genCommands() map[string]command {
	return map[string]command{
		"cpenv": {
			usage: "cpenv src dst",
			run:   cmdCpenv,
		},
	}
}

// cmdCpenv copies an archive file to dst with its $VARS expanded, as cmpenv
// expands them, for configuration files that must name the script's broker
// or directories.
func cmdCpenv(ts *goscript.TestScript, args []string) error {
	if len(args) != 2 {
		return ErrUsage
	}
	text := os.Expand(ts.ReadFile(args[0]), ts.Getenv)
	if err := os.WriteFile(ts.MkAbs(args[1]), []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", args[1], err)
	}
	return nil
}
