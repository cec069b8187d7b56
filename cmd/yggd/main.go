// Command yggd: see the package doc of yggdcmd, or run "yggd --help".
package main

import (
	"os"

	"github.com/ygglab/yggdrasil/cmd/yggd/yggdcmd"
)

func main() { os.Exit(yggdcmd.Main()) }
