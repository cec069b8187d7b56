// Package echoworker is the echo-worker program, importable so that the e2e suite can run
// the real program (not yet written).
package echoworker

import (
	"fmt"
	"os"
)

// Main runs echo-worker with os.Args and returns the exit code.
func Main() int {
	fmt.Fprintln(os.Stderr, "echo-worker: not yet")
	return 2
}
