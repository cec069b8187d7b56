package bench

import (
	"strings"
	"testing"
	"time"
)

func TestReportUpstream(t *testing.T) {
	thru := func(rep int, sys System, rate float64, p50 time.Duration) MatrixRun {
		return MatrixRun{Rep: rep, Case: "thru", System: sys, Result: &Result{MsgsPerSec: rate, P50: p50, P99: 2 * p50,
			Proc: &ProcStats{CPUPerMsg: 100 * time.Microsecond, WorkerPerMsg: 50 * time.Microsecond, PeakRSS: 20 << 20}}}
	}
	idle := func(rep int, sys System, rss, worker int64) MatrixRun {
		return MatrixRun{Rep: rep, Case: "idle", System: sys, Result: &Result{MsgsPerSec: 1, Proc: &ProcStats{
			Idle: &IdleStats{For: time.Minute, RSS: rss << 20, RSSAnon: 2 << 20, WorkerRSS: worker << 20,
				Threads: 9, WorkerThreads: 7, CPU: 40 * time.Millisecond, CtxSwitches: 600}}}}
	}
	runs := []MatrixRun{
		thru(1, SysYggd, 4000, time.Millisecond), thru(1, SysUpstream, 1000, 4*time.Millisecond),
		{Rep: 1, Case: "detached-1m", System: SysYggd, Result: &Result{MsgsPerSec: 80}},
		{Rep: 1, Case: "detached-1m", System: SysUpstream, Skipped: "no detached directive"},
		idle(1, SysYggd, 13, 9), idle(1, SysUpstream, 15, 11),
		thru(2, SysYggd, 3000, time.Millisecond), thru(2, SysUpstream, 1500, 4*time.Millisecond),
		idle(2, SysYggd, 13, 9), idle(2, SysUpstream, 15, 11),
		{Rep: 2, Case: "idle", System: SysUpstream, Error: "bench: stalled"},
	}
	out := reportHas(t, runs,
		"| thru | 1250 | 3500 | 3.00 | 4.00 2.00 | 4ms / 1ms | 8ms / 2ms | 100 µs / 100 µs (50 µs / 50 µs) | 20.0 MiB / 20.0 MiB |\n",
		"| detached-1m | skipped: no detached directive | 80 | | | | | | |\n",
		"| idle 1m0s (median) | yggd | 0.1.5 | yggd/0.1.5 | per rep |\n",
		"| yggd RSS | 13.0 MiB | 15.0 MiB | 0.87 | 0.87 0.87 |\n",
		"| together | 22.0 MiB | 26.0 MiB | 0.85 | 0.85 0.85 |\n",
		"| idle RSS, yggd + echo worker | ≤ 26 MiB (0.1.5 here: 26.0) | 22.0 MiB | yes |\n",
		"| robust | 0 lost, 0 dup, no stall, pings answered, no worker left | 11 runs, 0 problems | yes |\n",
		"- (not a goal) rep 2 idle 0.1.5: bench: stalled")
	if strings.Contains(out, "| idle | 1 | 1 |") {
		t.Errorf("the idle case is in the 0.1.5 table too:\n%s", out)
	}
}

func TestReportIdleWithoutUpstream(t *testing.T) {
	runs := []MatrixRun{{Rep: 1, Case: "idle", System: SysYggd, Result: &Result{Proc: &ProcStats{
		Idle: &IdleStats{For: time.Minute, RSS: 13 << 20, WorkerRSS: 9 << 20}}}}}
	out := reportHas(t, runs, "| idle 1m0s (median) | yggd |\n", "| together | 22.0 MiB |\n", "(0.1.5: 26.3)")
	if strings.Contains(out, "0.1.5 msgs/s") {
		t.Errorf("a 0.1.5 table without 0.1.5:\n%s", out)
	}
}

func TestReportIdleOnlyUpstream(t *testing.T) {
	run := func(sys System) MatrixRun {
		return MatrixRun{Rep: 1, Case: "idle", System: sys, Result: &Result{Proc: &ProcStats{
			Idle: &IdleStats{For: time.Minute, RSS: 13 << 20, WorkerRSS: 9 << 20}}}}
	}
	var b strings.Builder
	Report(&b, []MatrixRun{run(SysYggd), run(SysUpstream)})
	out := b.String()
	if strings.Contains(out, "0.1.5 msgs/s") {
		t.Errorf("an empty 0.1.5 table for the idle case alone:\n%s", out)
	}
	if !strings.Contains(out, "| together | 22.0 MiB | 22.0 MiB | 1.00 | 1.00 |\n") {
		t.Errorf("no idle row for both:\n%s", out)
	}
}

func TestReportDisk(t *testing.T) {
	run := func(rep int, id string, sys System, window int, rate float64, p50 time.Duration) MatrixRun {
		return MatrixRun{Rep: rep, Case: id, System: sys, Result: &Result{Window: window, MsgsPerSec: rate, P50: p50, P99: 2 * p50,
			Proc: &ProcStats{CPUPerMsg: 100 * time.Microsecond}}}
	}
	var runs []MatrixRun
	for rep := 1; rep <= 2; rep++ {
		runs = append(runs,
			run(rep, "lat", SysPipeline, 1, 1000, time.Millisecond),
			run(rep, "lat", SysDurable, 1, 500, 2*time.Millisecond),
			run(rep, "lat", SysYggd, 1, 480, 2100*time.Microsecond),
			run(rep, "lat", SysTmpfs, 1, 960, 1050*time.Microsecond),
			run(rep, "thru", SysPipeline, 64, 8000, 8*time.Millisecond),
			run(rep, "thru", SysDurable, 64, 6000, 11*time.Millisecond),
			run(rep, "thru", SysYggd, 64, 6400, 10*time.Millisecond))
	}
	runs = append(runs, MatrixRun{Rep: 1, Case: "thru", System: SysTmpfs, Skipped: "no tmpfs for its state"},
		run(2, "thru", SysTmpfs, 64, 7800, 8*time.Millisecond))
	out := reportHas(t, runs,
		"| lat | 1000 | 500 | 960 | 480 | 0.96 | 0.96 0.96 | 0.96 | 0.96 0.96 | 0.50 | 1ms / 2ms / 1.05ms / 2.1ms |",
		"| thru | 8000 | 6000 | 7800 | 6400 | 0.97 | 0.97 | 1.07 | 1.07 1.07 | 0.82 |",
		"| lat msgs/s, yggd vs b | ≥ 0.95 × b | 0.48 | **no** |\n",
		"| lat p50, yggd vs bj | ≤ 1.1 × bj | 1.05 | yes |\n",
		"| lat msgs/s, yggd-tmpfs vs b | ≥ 0.95 × b | 0.96 | yes |\n",
		"| lat p99, yggd-tmpfs vs b | ≤ 1.1 × b | 1.05 | yes |\n",
		"| thru msgs/s, yggd vs b | ≥ 0.95 × b | 0.80 | **no** |\n",
		"| thru msgs/s, yggd vs bj | ≥ 0.95 × bj | 1.07 | yes |\n",
		"| thru msgs/s, yggd-tmpfs vs b | ≥ 0.95 × b | 0.97 | yes |\n")
	if strings.Contains(out, "thru p50, yggd") {
		t.Errorf("latency goals for 64 in flight:\n%s", out)
	}
}

// reportHas writes the report of runs and checks that it holds each of
// want; it returns the report.
func reportHas(t *testing.T, runs []MatrixRun, want ...string) string {
	t.Helper()
	var b strings.Builder
	Report(&b, runs)
	out := b.String()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q; it is:\n%s", w, out)
		}
	}
	return out
}
