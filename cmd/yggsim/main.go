// Command yggsim: see the package doc of yggsimcmd, or run "yggsim --help".
package main

import (
	"os"

	"github.com/ygglab/yggdrasil/cmd/yggsim/yggsimcmd"
)

func main() { os.Exit(yggsimcmd.Main()) }
