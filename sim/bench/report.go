package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Report writes the matrix as Markdown tables: per case the medians over
// the repetitions of a, b and yggd, the ratio of yggd to ceiling b
// (median, and per repetition: each ratio is taken within one repetition,
// where a, b and yggd ran back to back), and the goals of the perf issue,
// met or not. It returns ErrGoalsMissed when one was not. With a baseline
// or 0.1.5 (--upstream), a table puts each beside yggd; the idle case has
// a table of its own. 0.1.5's failures are listed, but are no goal.
func Report(w io.Writer, runs []MatrixRun) error {
	byCase := map[string]map[System][]MatrixRun{}
	var order []string
	for _, r := range runs {
		if byCase[r.Case] == nil {
			byCase[r.Case] = map[System][]MatrixRun{}
			order = append(order, r.Case)
		}
		byCase[r.Case][r.System] = append(byCase[r.Case][r.System], r)
	}
	fmt.Fprintln(w, "| case | a msgs/s | b msgs/s | yggd msgs/s | yggd/b | per rep | p50 b / yggd | p99 b / yggd | CPU/msg b / yggd (workers) | yggd sys/msg | yggd peak RSS | yggd fsyncs/msg |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, id := range order {
		sys := byCase[id]
		y := sys[SysYggd]
		ratios := perRep(sys[SysPipeline], y, func(r *Result) float64 { return r.MsgsPerSec })
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s (%s) | %s | %s | %s |\n", id,
			rate(sys[SysRelay]), rate(sys[SysPipeline]), rate(y), ratio(median(ratios)), ratioList(ratios),
			dur(sys[SysPipeline], func(r *Result) time.Duration { return r.P50 }), dur(y, func(r *Result) time.Duration { return r.P50 }),
			dur(sys[SysPipeline], func(r *Result) time.Duration { return r.P99 }), dur(y, func(r *Result) time.Duration { return r.P99 }),
			cpu(sys[SysPipeline]), cpu(y), workerCPU(y), sysCPU(y), peak(y), fsyncs(y))
	}

	diskTable(w, byCase, order)

	if hasBase := slices.ContainsFunc(runs, func(r MatrixRun) bool { return r.System == SysBase }); hasBase {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| case | base msgs/s | yggd msgs/s | yggd/base | per rep | p50 base / yggd | CPU/msg base / yggd (workers base / yggd) |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
		for _, id := range order {
			sys := byCase[id]
			base, y := sys[SysBase], sys[SysYggd]
			if len(base) == 0 {
				continue
			}
			ratios := perRep(base, y, func(r *Result) float64 { return r.MsgsPerSec })
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s / %s | %s / %s (%s / %s) |\n", id, rate(base), rate(y),
				ratio(median(ratios)), ratioList(ratios),
				dur(base, func(r *Result) time.Duration { return r.P50 }), dur(y, func(r *Result) time.Duration { return r.P50 }),
				cpu(base), cpu(y), workerCPU(base), workerCPU(y))
		}
	}

	upstreamTable(w, order, byCase)
	idleTable(w, byCase["idle"])

	fmt.Fprintln(w)
	fmt.Fprintln(w, "| goal | target | measured (median) | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	missed := false
	goal := func(name, target, measured string, ok bool) {
		mark := "yes"
		if !ok {
			mark, missed = "**no**", true
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", name, target, measured, mark)
	}
	has := func(id string) bool { return len(byCase[id][SysYggd]) > 0 }
	ratioGoal := func(id string) {
		if has(id) && len(byCase[id][SysPipeline]) > 0 {
			r := median(perRep(byCase[id][SysPipeline], byCase[id][SysYggd], func(r *Result) float64 { return r.MsgsPerSec }))
			goal(id+" throughput", "≥ 0.80 × b", ratio(r), r >= 0.80)
		}
	}
	ratioGoal("thru")
	if has("lat") {
		for _, q := range latencies {
			r := median(perRep(byCase["lat"][SysPipeline], byCase["lat"][SysYggd], q.f))
			goal("lat "+q.name, "≤ 1.3 × b", ratio(r), r <= 1.3)
		}
	}
	if has("thru") {
		c := medianProc(byCase["thru"][SysYggd], func(r *Result) float64 { return perMsg(r) })
		goal("cpu (as thru)", "≤ 130 µs/msg", fmt.Sprintf("%.0f µs", c), c <= 130)
	}
	for _, id := range []string{"payload-4k", "payload-64k", "payload-64k-w1"} {
		if !has(id) {
			continue
		}
		ratioGoal(id)
		// Per KiB is the cost the payload adds: CPU per message above that
		// of 100 B messages at the same window (thru, or lat at window 1).
		ref := "thru"
		if y := byCase[id][SysYggd]; len(y) > 0 && y[0].Result != nil && y[0].Result.Window == 1 {
			ref = "lat"
		}
		if !has(ref) {
			continue
		}
		// Each repetition's payload run is paired with its own reference
		// run: they ran minutes apart at most, under the same load.
		base := medianProc(byCase[ref][SysYggd], perMsg)
		c := medianProc(byCase[id][SysYggd], perMsg)
		var reps []float64
		for _, yr := range byCase[id][SysYggd] {
			for _, br := range byCase[ref][SysYggd] {
				if br.Rep == yr.Rep && yr.Result != nil && br.Result != nil {
					reps = append(reps, (perMsg(yr.Result)-perMsg(br.Result))/(float64(yr.Result.Size-br.Result.Size)/1024))
				}
			}
		}
		perKiB := median(reps)
		goal(id+" cpu", "≤ 12 µs/KiB", fmt.Sprintf("%.1f µs/KiB, per rep %s (%.0f µs/msg, %s: %.0f)", perKiB, ratioList(reps), c, ref, base), perKiB <= 12)
	}
	if has("payload-64k") {
		// The SDK's echo worker against yggd, both peak RSS, in each run.
		y := byCase["payload-64k"][SysYggd]
		var reps []float64
		for _, r := range y {
			if r.Result != nil && r.Result.Proc != nil && r.Result.Proc.PeakRSS > 0 {
				reps = append(reps, float64(r.Result.Proc.WorkerPeakRSS)/float64(r.Result.Proc.PeakRSS))
			}
		}
		mib := func(f func(*ProcStats) int64) float64 {
			return medianProc(y, func(r *Result) float64 { return float64(f(r.Proc)) / (1 << 20) })
		}
		ratio := median(reps)
		goal("payload-64k worker RSS", "≤ 1.5 × yggd's", fmt.Sprintf("%.2f, per rep %s (echo-worker %.1f MiB, yggd %.1f MiB)", ratio, ratioList(reps),
			mib(func(p *ProcStats) int64 { return p.WorkerPeakRSS }), mib(func(p *ProcStats) int64 { return p.PeakRSS })), ratio <= 1.5)
	}
	ratioGoal("workers-16")
	footprintGoals(byCase, order, goal)
	if has("workers-1") && has("workers-16") {
		rss := func(id string) float64 {
			return medianProc(byCase[id][SysYggd], func(r *Result) float64 { return float64(r.Proc.RSSEnd) / (1 << 20) })
		}
		per := (rss("workers-16") - rss("workers-1")) / 15
		goal("workers RSS", "≤ +0.5 MiB/worker", fmt.Sprintf("%+.2f MiB/worker (%.1f → %.1f MiB)", per, rss("workers-1"), rss("workers-16")), per <= 0.5)
	}
	if has("detached-1m") {
		r := medianOf(byCase["detached-1m"][SysYggd], func(r *Result) float64 { return r.MsgsPerSec })
		goal("detached 1 MiB round trips", "≥ 150/s", fmt.Sprintf("%.0f/s", r), r >= 150)
	}
	if has("idle") {
		// 0.1.5 on this machine (issue 17): yggd 14.9 MiB, with its echo
		// worker 26.3 MiB.
		y := byCase["idle"][SysYggd]
		idle := func(f func(*IdleStats) int64) float64 {
			return medianProc(y, func(r *Result) float64 {
				if r.Proc.Idle == nil {
					return 0
				}
				return mib(f(r.Proc.Idle))
			})
		}
		own, both := idle(func(s *IdleStats) int64 { return s.RSS }), idle(func(s *IdleStats) int64 { return s.RSS + s.WorkerRSS })
		ownUp, bothUp := "0.1.5: 14.9", "0.1.5: 26.3"
		if up := byCase["idle"][SysUpstream]; hasIdle(up) {
			ownUp = fmt.Sprintf("0.1.5 here: %.1f", mib(int64(idleOf(up, func(s *IdleStats) int64 { return s.RSS }))))
			bothUp = fmt.Sprintf("0.1.5 here: %.1f", mib(int64(idleOf(up, func(s *IdleStats) int64 { return s.RSS + s.WorkerRSS }))))
		}
		goal("idle RSS, yggd", "≤ 15 MiB ("+ownUp+")", fmt.Sprintf("%.1f MiB", own), own > 0 && own <= 15)
		goal("idle RSS, yggd + echo worker", "≤ 26 MiB ("+bothUp+")", fmt.Sprintf("%.1f MiB", both), both > 0 && both <= 26)
	}
	if has("soak-100b") {
		y := byCase["soak-100b"][SysYggd]
		pk := medianProc(y, func(r *Result) float64 { return float64(r.Proc.PeakRSS) / (1 << 20) })
		goal("soak 100 B peak RSS", "≤ 32 MiB", fmt.Sprintf("%.1f MiB", pk), pk <= 32)
		gr := medianProc(y, func(r *Result) float64 { return float64(r.Proc.RSSEnd-r.Proc.RSSTenth) / (1 << 20) })
		goal("soak 100 B growth 100k→1M", "≤ 2 MiB", fmt.Sprintf("%+.1f MiB", gr), gr <= 2)
	}
	if has("soak-64k") {
		pk := medianProc(byCase["soak-64k"][SysYggd], func(r *Result) float64 { return float64(r.Proc.PeakRSS) / (1 << 20) })
		goal("soak 64 KiB peak RSS", "≤ 96 MiB", fmt.Sprintf("%.1f MiB", pk), pk <= 96)
	}
	// Robustness, over every run but 0.1.5's.
	var problems, upstream []string
	var logBytes int64
	for _, r := range runs {
		tag := fmt.Sprintf("rep %d %s %s", r.Rep, r.Case, r.System)
		var p []string
		if r.Error != "" {
			p = append(p, tag+": "+r.Error)
		}
		if len(r.WorkerLeft) > 0 {
			p = append(p, fmt.Sprintf("%s: workers left after SIGTERM: %v", tag, r.WorkerLeft))
		}
		if r.ExitErr != "" {
			p = append(p, tag+": exit: "+r.ExitErr)
		}
		if r.System == SysUpstream {
			upstream = append(upstream, p...)
		} else {
			problems = append(problems, p...)
		}
		if r.System.thisBuild() && r.Result != nil && r.Result.Proc != nil {
			logBytes += r.Result.Proc.LogBytes
		}
	}
	goal("robust", "0 lost, 0 dup, no stall, pings answered, no worker left", fmt.Sprintf("%d runs, %d problems", len(runs), len(problems)), len(problems) == 0)
	goal("log at info", "0 B per successful message", fmt.Sprintf("%d B in all yggd and yggd-tmpfs runs", logBytes), logBytes == 0)
	for _, p := range problems {
		fmt.Fprintf(w, "\n- %s", p)
	}
	for _, p := range upstream {
		fmt.Fprintf(w, "\n- (not a goal) %s", p)
	}
	if len(problems)+len(upstream) > 0 {
		fmt.Fprintln(w)
	}
	if missed {
		return ErrGoalsMissed
	}
	return nil
}

// latencies are the quantiles that latency goals judge.
var latencies = []struct {
	name string
	f    func(*Result) float64
}{{"p50", func(r *Result) float64 { return float64(r.P50) }}, {"p99", func(r *Result) float64 { return float64(r.P99) }}}

// upstreamTable puts 0.1.5 beside yggd, case by case (the idle case has
// its own table): rates, latencies, CPU and peak RSS, and yggd/0.1.5 per
// repetition. A case 0.1.5 skipped says why.
func upstreamTable(w io.Writer, order []string, byCase map[string]map[System][]MatrixRun) {
	if !slices.ContainsFunc(order, func(id string) bool {
		return len(byCase[id][SysUpstream]) > 0 && !hasIdle(byCase[id][SysYggd])
	}) {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | 0.1.5 msgs/s | yggd msgs/s | yggd/0.1.5 | per rep | p50 0.1.5 / yggd | p99 0.1.5 / yggd | CPU/msg 0.1.5 / yggd (workers 0.1.5 / yggd) | peak RSS 0.1.5 / yggd |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, id := range order {
		up, y := byCase[id][SysUpstream], byCase[id][SysYggd]
		if len(up) == 0 || hasIdle(y) {
			continue
		}
		if up[0].Skipped != "" {
			fmt.Fprintf(w, "| %s | skipped: %s | %s | | | | | | |\n", id, up[0].Skipped, rate(y))
			continue
		}
		ratios := perRep(up, y, func(r *Result) float64 { return r.MsgsPerSec })
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s (%s / %s) | %s / %s |\n", id, rate(up), rate(y),
			ratio(median(ratios)), ratioList(ratios),
			dur(up, func(r *Result) time.Duration { return r.P50 }), dur(y, func(r *Result) time.Duration { return r.P50 }),
			dur(up, func(r *Result) time.Duration { return r.P99 }), dur(y, func(r *Result) time.Duration { return r.P99 }),
			cpu(up), cpu(y), workerCPU(up), workerCPU(y), peak(up), peak(y))
	}
}

// idleTable is the idle case, medians over the repetitions: yggd, and
// 0.1.5 beside it with yggd/0.1.5 per repetition when it ran.
func idleTable(w io.Writer, sys map[System][]MatrixRun) {
	y, up := sys[SysYggd], sys[SysUpstream]
	if !hasIdle(y) {
		return
	}
	withUp := hasIdle(up)
	head := fmt.Sprintf("idle %s (median)", time.Duration(idleOf(y, func(s *IdleStats) int64 { return int64(s.For) })))
	fmt.Fprintln(w)
	if withUp {
		fmt.Fprintf(w, "| %s | yggd | 0.1.5 | yggd/0.1.5 | per rep |\n", head)
		fmt.Fprintln(w, "|---|---|---|---|---|")
	} else {
		fmt.Fprintf(w, "| %s | yggd |\n", head)
		fmt.Fprintln(w, "|---|---|")
	}
	mibs := func(v float64) string { return fmt.Sprintf("%.1f MiB", mib(int64(v))) }
	count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	ms := func(v float64) string { return fmt.Sprintf("%.0f ms", v/float64(time.Millisecond)) }
	rows := []struct {
		name   string
		f      func(*IdleStats) int64
		format func(float64) string
	}{
		{"yggd RSS", func(s *IdleStats) int64 { return s.RSS }, mibs},
		{"of which anonymous", func(s *IdleStats) int64 { return s.RSSAnon }, mibs},
		{"echo worker RSS", func(s *IdleStats) int64 { return s.WorkerRSS }, mibs},
		{"together", func(s *IdleStats) int64 { return s.RSS + s.WorkerRSS }, mibs},
		{"threads, yggd + worker", func(s *IdleStats) int64 { return int64(s.Threads + s.WorkerThreads) }, count},
		{"CPU while idle, yggd + worker", func(s *IdleStats) int64 { return int64(s.CPU + s.WorkerCPU) }, ms},
		{"context switches while idle, yggd + worker", func(s *IdleStats) int64 { return s.CtxSwitches + s.WorkerCtxSwitches }, count},
	}
	for _, row := range rows {
		if !withUp {
			fmt.Fprintf(w, "| %s | %s |\n", row.name, row.format(idleOf(y, row.f)))
			continue
		}
		ratios := perRep(up, y, func(r *Result) float64 {
			if r.Proc == nil || r.Proc.Idle == nil {
				return 0
			}
			return float64(row.f(r.Proc.Idle))
		})
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", row.name, row.format(idleOf(y, row.f)), row.format(idleOf(up, row.f)),
			ratio(median(ratios)), ratioList(ratios))
	}
}

// hasIdle reports whether one of runs measured an idle daemon.
func hasIdle(runs []MatrixRun) bool {
	return slices.ContainsFunc(runs, func(r MatrixRun) bool {
		return r.Result != nil && r.Result.Proc != nil && r.Result.Proc.Idle != nil
	})
}

// idleOf is the median of f over the runs' idle figures.
func idleOf(runs []MatrixRun, f func(*IdleStats) int64) float64 {
	var v []float64
	for _, r := range runs {
		if r.Result != nil && r.Result.Proc != nil && r.Result.Proc.Idle != nil {
			v = append(v, float64(f(r.Result.Proc.Idle)))
		}
	}
	return median(v)
}

// perRep returns f(yggd)/f(b) for each repetition that has both.
func perRep(b, y []MatrixRun, f func(*Result) float64) []float64 {
	var out []float64
	for _, yr := range y {
		for _, br := range b {
			if br.Rep == yr.Rep && br.Result != nil && yr.Result != nil && f(br.Result) > 0 {
				out = append(out, f(yr.Result)/f(br.Result))
			}
		}
	}
	return out
}

func perMsg(r *Result) float64 {
	if r.Proc == nil {
		return 0
	}
	return float64(r.Proc.CPUPerMsg) / float64(time.Microsecond)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func medianOf(runs []MatrixRun, f func(*Result) float64) float64 {
	var v []float64
	for _, r := range runs {
		if r.Result != nil {
			v = append(v, f(r.Result))
		}
	}
	return median(v)
}

// medianProc is medianOf over the runs that have /proc figures.
func medianProc(runs []MatrixRun, f func(*Result) float64) float64 {
	var v []float64
	for _, r := range runs {
		if r.Result != nil && r.Result.Proc != nil {
			v = append(v, f(r.Result))
		}
	}
	return median(v)
}

func rate(runs []MatrixRun) string {
	if len(runs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", medianOf(runs, func(r *Result) float64 { return r.MsgsPerSec }))
}

func dur(runs []MatrixRun, f func(*Result) time.Duration) string {
	if len(runs) == 0 {
		return "–"
	}
	return us(time.Duration(medianOf(runs, func(r *Result) float64 { return float64(f(r)) })))
}

func cpu(runs []MatrixRun) string {
	if len(runs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", medianProc(runs, perMsg))
}

func workerCPU(runs []MatrixRun) string {
	if len(runs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", medianProc(runs, func(r *Result) float64 {
		return float64(r.Proc.WorkerPerMsg) / float64(time.Microsecond)
	}))
}

func sysCPU(runs []MatrixRun) string {
	if len(runs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", medianProc(runs, func(r *Result) float64 {
		return float64(r.Proc.SysPerMsg) / float64(time.Microsecond)
	}))
}

func peak(runs []MatrixRun) string {
	if len(runs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", medianProc(runs, func(r *Result) float64 { return float64(r.Proc.PeakRSS) / (1 << 20) }))
}

// fsyncs is the median of the runs' journal syncs per message, "–" when
// they report none.
func fsyncs(runs []MatrixRun) string {
	var v []float64
	for _, r := range runs {
		if r.FsyncsPerMsg > 0 {
			v = append(v, r.FsyncsPerMsg)
		}
	}
	if len(v) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", median(v))
}

func ratio(r float64) string {
	if r == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", r)
}

func ratioList(v []float64) string {
	s := make([]string, len(v))
	for i, r := range v {
		s[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(s, " ")
}

// us formats a duration for a table.
func us(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
