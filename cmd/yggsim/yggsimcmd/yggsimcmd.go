// Package yggsimcmd is the yggsim program, importable so that the e2e suite can run
// the real program (not yet written).
package yggsimcmd

import (
	"fmt"
	"os"
)

// Main runs yggsim with os.Args and returns the exit code.
func Main() int {
	fmt.Fprintln(os.Stderr, "yggsim: not yet")
	return 2
}
