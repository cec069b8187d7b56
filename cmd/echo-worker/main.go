// Command echo-worker: see the package doc of echoworker, or run "echo-worker --help".
package main

import (
	"os"

	"github.com/ygglab/yggdrasil/cmd/echo-worker/echoworker"
)

func main() { os.Exit(echoworker.Main()) }
