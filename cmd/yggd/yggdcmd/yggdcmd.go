// Package yggdcmd is the yggd program, importable so that the e2e suite can run
// the real program (not yet written).
package yggdcmd

import (
	"fmt"
	"os"
)

// Main runs yggd with os.Args and returns the exit code.
func Main() int {
	fmt.Fprintln(os.Stderr, "yggd: not yet")
	return 2
}
