// Command ygg: see the package doc of yggcmd, or run "ygg --help".
package main

import (
	"os"

	"github.com/ygglab/yggdrasil/cmd/ygg/yggcmd"
)

func main() { os.Exit(yggcmd.Main()) }
