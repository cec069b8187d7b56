package yggsimcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/ygglab/yggdrasil/sim/bench"
)

func init() { hidden["bench-sustained"] = runBenchSustained }

const benchSustainedUsage = `
Usage: yggsim bench-sustained --bin DIR [--count 1000000] [--every N] [--json FILE]

The driver of "make bench-sustained" (hidden). It runs "yggsim serve" from
DIR as its own process (ACL open, journal at its default bounds unless
--journal-max-bytes or --journal-max-messages), yggd and echo-worker behind
it, and loads yggd at full speed (--window in flight, --size bytes) for
--count round trips. It prints the rate of every --every round trips
(default count/10) with the sim's resident memory, then the goals: the
last window's rate at least 0.8 × the first's, and the sim's peak RSS
under twice its journal's byte bound plus 64 MiB. Exit status 1 when a
goal is missed.
`

func runBenchSustained(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench-sustained", benchSustainedUsage, stdout, stderr)
	su := bench.Sustained{Log: stdout}
	fs.StringVar(&su.Bin, "bin", "", "`directory` with yggd, yggsim and echo-worker")
	fs.IntVar(&su.Count, "count", 1_000_000, "round `trips`")
	fs.IntVar(&su.Every, "every", 0, "round `trips` a window (default count/10)")
	fs.IntVar(&su.Window, "window", 64, "messages in `flight`")
	fs.IntVar(&su.Size, "size", 100, "content `bytes`")
	fs.Int64Var(&su.JournalMaxBytes, "journal-max-bytes", 0, "the sim's journal bound in `bytes` (default serve's)")
	fs.IntVar(&su.JournalLimit, "journal-max-messages", 0, "the sim's journal bound in `messages` (default serve's)")
	jsonOut := fs.String("json", "", "write the result as JSON to this `file`")
	if _, err := parse(fs, args, stdout); err != nil {
		return err
	}
	if su.Bin == "" {
		return fmt.Errorf("%w: --bin is required", ErrUsage)
	}
	fmt.Fprintf(stdout, "bench-sustained: %s, %s/%s, %d CPUs\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	res, err := su.Run(ctx)
	if res != nil {
		bench.WriteSustained(stdout, res)
		if *jsonOut != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(*jsonOut, b, 0o644); werr != nil {
				return errors.Join(err, werr)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("bench-sustained: %w", err)
	}
	return nil
}
