package bench

import (
	"fmt"
	"io"
	"time"
)

// The durable ceiling bj in the report: with one message in flight, yggd
// pays two synced writes per message that b does not, so its figures are
// set beside both b and bj.

// durableTable writes yggd beside b and bj for the cases where bj ran.
func durableTable(w io.Writer, byCase map[string]map[System][]MatrixRun, order []string) {
	header := false
	for _, id := range order {
		sys := byCase[id]
		b, bj, y := sys[SysPipeline], sys[SysDurable], sys[SysYggd]
		if len(bj) == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| case | b msgs/s | bj msgs/s | yggd msgs/s | yggd/b | yggd/bj | per rep yggd/bj | p50 b / bj / yggd | p99 b / bj / yggd | CPU/msg b / bj / yggd |")
			fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
			header = true
		}
		mps := func(r *Result) float64 { return r.MsgsPerSec }
		p50 := func(r *Result) time.Duration { return r.P50 }
		p99 := func(r *Result) time.Duration { return r.P99 }
		vsBJ := perRep(bj, y, mps)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s / %s / %s | %s / %s / %s |\n", id,
			rate(b), rate(bj), rate(y), ratio(median(perRep(b, y, mps))), ratio(median(vsBJ)), ratioList(vsBJ),
			dur(b, p50), dur(bj, p50), dur(y, p50), dur(b, p99), dur(bj, p99), dur(y, p99), cpu(b), cpu(bj), cpu(y))
	}
}

// oneInFlightGoals adds issue 17's goals for one message in flight
// (≥ 0.95 × msgs/s, p50 and p99 ≤ 1.1 ×) against b and against bj, for
// each case where yggd and that ceiling ran with a window of 1.
func oneInFlightGoals(byCase map[string]map[System][]MatrixRun, order []string, goal func(name, target, measured string, ok bool)) {
	for _, id := range order {
		y := byCase[id][SysYggd]
		if len(y) == 0 || y[0].Result == nil || y[0].Result.Window != 1 || len(byCase[id][SysDurable]) == 0 {
			continue
		}
		for _, ref := range []System{SysPipeline, SysDurable} {
			c := byCase[id][ref]
			if len(c) == 0 {
				continue
			}
			r := median(perRep(c, y, func(r *Result) float64 { return r.MsgsPerSec }))
			goal(fmt.Sprintf("%s msgs/s vs %s", id, ref), fmt.Sprintf("≥ 0.95 × %s", ref), ratio(r), r >= 0.95)
			for _, q := range []struct {
				name string
				f    func(*Result) float64
			}{{"p50", func(r *Result) float64 { return float64(r.P50) }}, {"p99", func(r *Result) float64 { return float64(r.P99) }}} {
				r := median(perRep(c, y, q.f))
				goal(fmt.Sprintf("%s %s vs %s", id, q.name, ref), fmt.Sprintf("≤ 1.1 × %s", ref), ratio(r), r > 0 && r <= 1.1)
			}
		}
	}
}
