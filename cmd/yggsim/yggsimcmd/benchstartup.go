package yggsimcmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"github.com/ygglab/yggdrasil/sim"
	"github.com/ygglab/yggdrasil/sim/bench"
)

func init() { hidden["bench-startup"] = runBenchStartup }

const benchStartupUsage = `
Usage: yggsim bench-startup --bin DIR [--baseline DIR] [--n 30]

The start-up case of "make bench" (hidden). It starts one embedded broker,
then starts yggd from DIR (and from the baseline DIR, interleaved) N times
each, with an empty worker directory and fresh runtime and state
directories, measures the time from exec to its retained online status on
the broker, and stops it with SIGTERM. It prints one line per start, then a
Markdown table of the medians and the spread, and the goal (median at most
40 ms). Exit status 1 when the goal is missed.
`

func runBenchStartup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench-startup", benchStartupUsage, stdout, stderr)
	bin := fs.String("bin", "", "`directory` with yggd")
	baseline := fs.String("baseline", "", "`directory` with another build of yggd, measured beside it as \"base\"")
	n := fs.Int("n", 30, "starts of each build")
	if _, err := parse(fs, args, stdout); err != nil {
		return err
	}
	if *bin == "" || *n < 1 {
		return fmt.Errorf("%w: --bin is required and --n must be at least 1", ErrUsage)
	}
	s := &sim.Server{OpenACL: true, TLSAddr: sim.Off, APIAddr: sim.Off, JournalLimit: 1, HistoryLimit: 1,
		Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		return fmt.Errorf("bench-startup: %w", err)
	}
	defer s.Close()
	builds := map[string]string{"yggd": *bin}
	if *baseline != "" {
		builds["base"] = *baseline
	}
	fmt.Fprintf(stdout, "bench-startup: %s, %s/%s, %d CPUs, %d starts each\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), *n)
	st := &bench.Startup{Broker: s.BrokerURL(), Builds: builds, N: *n, Log: stdout}
	results, err := st.Run(ctx)
	if err != nil {
		return fmt.Errorf("bench-startup: %w", err)
	}
	fmt.Fprintln(stdout)
	if !bench.ReportStartup(stdout, results) {
		return fmt.Errorf("bench-startup: %w", bench.ErrGoalsMissed)
	}
	return nil
}
