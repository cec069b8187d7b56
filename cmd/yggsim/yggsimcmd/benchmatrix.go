package yggsimcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/sim/bench"
)

func init() { hidden["bench-matrix"] = runBenchMatrix }

const benchMatrixUsage = `
Usage: yggsim bench-matrix --bin DIR [--baseline DIR] [--upstream DIR] [--tmpfs DIR] [--reps 5] [--cases a,b] [--soak] [--json FILE]
       yggsim bench-matrix --report FILE

The driver of "make bench" (hidden). It starts one embedded broker (the
sim's, with the ACL open and recording off as far as it goes), then for
each repetition and each case runs ceiling a (yggsim ceiling-relay),
ceiling b (yggsim ceiling-pipeline with echo-worker) and yggd back to back
as separate processes from DIR, loads each with the bench load generator,
stops each with SIGTERM and checks that no worker is left. It prints one
line per run, then Markdown tables of medians, per-repetition ratios to
ceiling b, and the goals. --soak runs the long cases instead. Exit status
1 when a goal is missed. In thru and in the cases with one message in
flight, ceiling bj (ceiling-pipeline --journal: b plus the syncs yggd
pays) runs after b. In thru, lat and payload-64k-w1 yggd runs again
with its state directory on tmpfs ("yggd-tmpfs", in --tmpfs DIR): what
yggd costs apart from its disk. --baseline adds another build of
yggd ("base"), --upstream yggdrasil 0.1.5 built by mk/build-upstream.sh
("0.1.5"), both after yggd in each case where yggd runs.
`

func runBenchMatrix(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench-matrix", benchMatrixUsage, stdout, stderr)
	bin := fs.String("bin", "", "`directory` with yggd, yggsim and echo-worker")
	baseline := fs.String("baseline", "", "`directory` with another build of yggd and echo-worker, measured beside it as \"base\"")
	upstream := fs.String("upstream", "", "`directory` with yggdrasil 0.1.5 from mk/build-upstream.sh, measured beside it as \"0.1.5\"")
	tmpfs := fs.String("tmpfs", "/dev/shm", "a `directory` on tmpfs for yggd-tmpfs's state (not tmpfs: yggd-tmpfs is skipped)")
	reps := fs.Int("reps", 5, "repetitions")
	cases := fs.String("cases", "", "comma-separated case `ids` (default all)")
	soak := fs.Bool("soak", false, "run the soak cases")
	jsonOut := fs.String("json", "", "write every run as JSON to this `file`")
	report := fs.String("report", "", "print the tables of the runs saved in this JSON `file` (from --json) and exit")
	if _, err := parse(fs, args, stdout); err != nil {
		return err
	}
	if *report != "" {
		b, err := os.ReadFile(*report)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		var runs []bench.MatrixRun
		if err := json.Unmarshal(b, &runs); err != nil {
			return fmt.Errorf("bench: %s: %w", *report, err)
		}
		if err := bench.Report(stdout, runs); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		return nil
	}
	if *bin == "" {
		return fmt.Errorf("%w: --bin is required", ErrUsage)
	}
	all := bench.DefaultCases()
	if *soak {
		all = bench.SoakCases()
	}
	if *cases != "" {
		want := strings.Split(*cases, ",")
		all = slices.DeleteFunc(all, func(c bench.Case) bool { return !slices.Contains(want, c.ID) })
		if len(all) == 0 {
			return fmt.Errorf("%w: no case among %q", ErrUsage, *cases)
		}
	}
	start := time.Now()
	fmt.Fprintf(stdout, "bench: %s, %s/%s, %d CPUs, %d repetitions\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), *reps)
	m := &bench.Matrix{Bin: *bin, Baseline: *baseline, Upstream: *upstream, Tmpfs: *tmpfs, Reps: *reps, Cases: all, Log: stdout}
	runs, err := m.Run(ctx)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(runs, "", "  ")
		if werr := os.WriteFile(*jsonOut, b, 0o644); werr != nil {
			return werr
		}
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(stdout, "\nbench: done in %s\n\n", time.Since(start).Round(time.Second))
	if err := bench.Report(stdout, runs); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
