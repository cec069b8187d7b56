package yggsimcmd

import (
	"context"
	"io"
)

// hidden are the subcommands that "make bench" uses and that the usage
// does not list: the reference ceilings, the bench worker and the matrix
// driver. Each has --help.
var hidden = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{}
