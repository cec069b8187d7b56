package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// The disk in the report. yggd pays two synced writes a message that b
// does not (in series with one message in flight, shared among messages
// with many), so its figures are set beside b, beside bj (b plus exactly
// those writes) and beside yggd-tmpfs (yggd whose writes cost nothing):
// yggd-tmpfs / b is yggd's own cost, yggd / bj the price of its disk
// against the least a pipeline would pay for it.

// diskTable writes b, bj, yggd-tmpfs and yggd side by side for the cases
// where bj or yggd-tmpfs ran.
func diskTable(w io.Writer, byCase map[string]map[System][]MatrixRun, order []string) {
	header := false
	mps := func(r *Result) float64 { return r.MsgsPerSec }
	for _, id := range order {
		sys := byCase[id]
		b, bj, t, y := sys[SysPipeline], sys[SysDurable], ran(sys[SysTmpfs]), sys[SysYggd]
		if len(bj) == 0 && len(t) == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| case | b msgs/s | bj msgs/s | yggd-tmpfs msgs/s | yggd msgs/s | yggd-tmpfs/b | per rep | yggd/bj | per rep | yggd/yggd-tmpfs | p50 b / bj / yggd-tmpfs / yggd | p99 b / bj / yggd-tmpfs / yggd | CPU/msg b / bj / yggd-tmpfs / yggd |")
			fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
			header = true
		}
		four := func(f func([]MatrixRun) string) string {
			return strings.Join([]string{f(b), f(bj), f(t), f(y)}, " / ")
		}
		p50 := func(r []MatrixRun) string { return dur(r, func(r *Result) time.Duration { return r.P50 }) }
		p99 := func(r []MatrixRun) string { return dur(r, func(r *Result) time.Duration { return r.P99 }) }
		tb, ybj := perRep(b, t, mps), perRep(bj, y, mps)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", id,
			rate(b), rate(bj), rate(t), rate(y), ratio(median(tb)), ratioList(tb), ratio(median(ybj)), ratioList(ybj),
			ratio(median(perRep(t, y, mps))), four(p50), four(p99), four(cpu))
	}
}

// ran drops the runs that were skipped.
func ran(runs []MatrixRun) []MatrixRun {
	var out []MatrixRun
	for _, r := range runs {
		if r.Skipped == "" {
			out = append(out, r)
		}
	}
	return out
}

// footprintGoals adds issue 17's goals against the ceilings: with one
// message in flight, ≥ 0.95 × msgs/s and p50 and p99 ≤ 1.1 ×, for yggd
// against b and against bj, and for yggd-tmpfs against b; with 64 in
// flight (thru), ≥ 0.95 × msgs/s for the same three pairs.
func footprintGoals(byCase map[string]map[System][]MatrixRun, order []string, goal func(name, target, measured string, ok bool)) {
	pairs := []struct{ sys, ref System }{{SysYggd, SysPipeline}, {SysYggd, SysDurable}, {SysTmpfs, SysPipeline}}
	for _, id := range order {
		y := byCase[id][SysYggd]
		if len(y) == 0 || y[0].Result == nil {
			continue
		}
		oneInFlight := y[0].Result.Window == 1
		if !oneInFlight && id != "thru" {
			continue
		}
		for _, p := range pairs {
			c, s := byCase[id][p.ref], ran(byCase[id][p.sys])
			if len(c) == 0 || len(s) == 0 {
				continue
			}
			name := func(q string) string { return fmt.Sprintf("%s %s, %s vs %s", id, q, p.sys, p.ref) }
			r := median(perRep(c, s, func(r *Result) float64 { return r.MsgsPerSec }))
			goal(name("msgs/s"), fmt.Sprintf("≥ 0.95 × %s", p.ref), ratio(r), r >= 0.95)
			if !oneInFlight {
				continue
			}
			for _, q := range latencies {
				r := median(perRep(c, s, q.f))
				goal(name(q.name), fmt.Sprintf("≤ 1.1 × %s", p.ref), ratio(r), r > 0 && r <= 1.1)
			}
		}
	}
}
