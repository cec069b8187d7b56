// Package yggcmd is the ygg program, importable so that the e2e suite can run
// the real program (not yet written).
package yggcmd

import (
	"fmt"
	"os"
)

// Main runs ygg with os.Args and returns the exit code.
func Main() int {
	fmt.Fprintln(os.Stderr, "ygg: not yet")
	return 2
}
