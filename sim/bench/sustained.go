package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/ygglab/yggdrasil/sim"
)

// Sustained is the sustained-load benchmark: yggd behind a real "yggsim
// serve" process (its ACL open, its journal at its default bounds), loaded
// at full speed for Count round trips. It shows whether the sim keeps up
// with yggd for as long as it runs: the rate of each Every round trips
// (the last within 0.8 × the first), and the sim's resident memory, which
// must stay under its bound.
type Sustained struct {
	Bin    string // directory holding yggd, yggsim and echo-worker
	Count  int    // round trips; default 1,000,000
	Every  int    // round trips a window; default Count/10
	Window int    // messages in flight; default 64
	Size   int    // content bytes; default 100

	// JournalMaxBytes and JournalLimit are passed to serve; 0 leaves its
	// defaults.
	JournalMaxBytes int64
	JournalLimit    int

	Log io.Writer // progress lines; nil: none
}

// SustainedWindow is the rate over one window of round trips.
type SustainedWindow struct {
	Upto       int     `json:"upto"` // answers so far, warm-up included
	MsgsPerSec float64 `json:"msgs_per_sec"`
	SimRSS     int64   `json:"sim_rss"` // the sim's resident memory at the window's end
}

// SustainedResult is what a sustained run measured.
type SustainedResult struct {
	Run          MatrixRun         `json:"run"`
	Windows      []SustainedWindow `json:"windows"`
	Ratio        float64           `json:"ratio"` // the last window's rate over the first's
	SimRSSStart  int64             `json:"sim_rss_start"`
	SimPeakRSS   int64             `json:"sim_peak_rss"` // VmHWM
	SimRSSBound  int64             `json:"sim_rss_bound"`
	SimJournal   sim.JournalStats  `json:"sim_journal"`
	SimCPU       time.Duration     `json:"sim_cpu_ns"`
	SimCPUPerMsg time.Duration     `json:"sim_cpu_per_msg_ns"`
}

// The goals of the sustained benchmark.
const (
	sustainedMinRatio = 0.8
	// The sim's resident memory may reach its journal's bound twice (the
	// Go heap grows to twice what is live before it collects) plus a base
	// for the broker, the runtime and the sessions.
	sustainedRSSBase = 64 << 20
)

// Run starts the sim and yggd, loads them, and stops them. The error is
// ErrGoalsMissed when the run completed but a goal was missed.
func (su *Sustained) Run(ctx context.Context) (*SustainedResult, error) {
	if su.Count <= 0 {
		su.Count = 1_000_000
	}
	if su.Every <= 0 {
		su.Every = max(1, su.Count/10)
	}
	if su.Window <= 0 {
		su.Window = 64
	}
	if su.Size <= 0 {
		su.Size = 100
	}
	logf := func(format string, args ...any) {
		if su.Log != nil {
			fmt.Fprintf(su.Log, format+"\n", args...)
		}
	}
	bin, err := filepath.Abs(su.Bin)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "yggsustained-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	// The sim, as a separate process, as a user runs it.
	addrFile := filepath.Join(work, "addr.json")
	args := []string{"serve", "--mqtt", "127.0.0.1:0", "--mqtts", "off", "--api", "127.0.0.1:0", "--content", "off",
		"--open-acl", "--addr-file", addrFile, "--log-level", "warn"}
	if su.JournalMaxBytes > 0 {
		args = append(args, "--journal-max-bytes", strconv.FormatInt(su.JournalMaxBytes, 10))
	}
	if su.JournalLimit > 0 {
		args = append(args, "--journal-max-messages", strconv.Itoa(su.JournalLimit))
	}
	serve := exec.Command(filepath.Join(bin, "yggsim"), args...)
	serve.Env = append(os.Environ(), "YGGSIM_STATE=")
	simLog, err := os.Create(filepath.Join(work, "sim.log"))
	if err != nil {
		return nil, err
	}
	defer simLog.Close()
	serve.Stdout, serve.Stderr = simLog, simLog
	serve.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := serve.Start(); err != nil {
		return nil, fmt.Errorf("sustained: start the sim: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			serve.Process.Kill()
			<-exited
		}
	}()
	addrs, err := awaitAddrFile(ctx, addrFile, exited)
	if err != nil {
		return nil, fmt.Errorf("sustained: %w (sim log: %s)", err, simLog.Name())
	}
	info, err := simInfo(ctx, addrs.API)
	if err != nil {
		return nil, fmt.Errorf("sustained: %w", err)
	}
	pid := serve.Process.Pid
	res := &SustainedResult{SimRSSStart: statusBytes(pid, "VmRSS"),
		SimRSSBound: 2*info.Journal.MaxBytes + sustainedRSSBase}
	cpu0, _ := ProcCPU(pid)
	logf("sustained: sim pid %d, journal bounds %d messages, %.0f MiB; RSS %.1f MiB; %d round trips, windows of %d",
		pid, info.Journal.Limit, mib(info.Journal.MaxBytes), mib(res.SimRSSStart), su.Count, su.Every)

	var (
		lastN    = -1
		lastT    time.Time
		nextMark = su.Every
	)
	progress := func(n, total int) {
		now := time.Now()
		if lastN < 0 {
			lastN, lastT = n, now
			return
		}
		if n < nextMark && n < total {
			return
		}
		w := SustainedWindow{Upto: n, MsgsPerSec: float64(n-lastN) / now.Sub(lastT).Seconds(),
			SimRSS: statusBytes(pid, "VmRSS")}
		res.Windows = append(res.Windows, w)
		logf("sustained: %8d round trips  %7.0f msgs/s  sim RSS %6.1f MiB", w.Upto, w.MsgsPerSec, mib(w.SimRSS))
		lastN, lastT = n, now
		for nextMark <= n {
			nextMark += su.Every
		}
	}
	m := &Matrix{Bin: bin}
	c := Case{ID: "sustained", Window: su.Window, Size: su.Size, Count: su.Count, Progress: progress}
	res.Run = m.runOne(ctx, addrs.MQTT, filepath.Join(work, "host"), 1, c, SysYggd)

	cpu, _ := ProcCPU(pid)
	res.SimCPU = cpu - cpu0
	res.SimPeakRSS = statusBytes(pid, "VmHWM")
	if info, err := simInfo(ctx, addrs.API); err == nil {
		res.SimJournal = info.Journal
	}
	if r := res.Run.Result; r != nil && r.Answered > 0 {
		res.SimCPUPerMsg = res.SimCPU / time.Duration(r.Answered)
	}
	if n := len(res.Windows); n >= 2 && res.Windows[0].MsgsPerSec > 0 {
		res.Ratio = res.Windows[n-1].MsgsPerSec / res.Windows[0].MsgsPerSec
	}
	if res.Run.Error != "" {
		return res, fmt.Errorf("sustained: %s", res.Run.Error)
	}
	if res.Ratio < sustainedMinRatio || res.SimPeakRSS > res.SimRSSBound {
		return res, ErrGoalsMissed
	}
	return res, nil
}

// WriteSustained prints a sustained result for people, with its goals.
func WriteSustained(w io.Writer, res *SustainedResult) {
	if r := res.Run.Result; r != nil {
		fmt.Fprintf(w, "yggd: %d round trips in %s: %.0f msgs/s, p50 %s p99 %s; lost %d, duplicated %d\n",
			r.Answered, r.Elapsed.Round(time.Second), r.MsgsPerSec, us(r.P50), us(r.P99), r.Lost, r.Duplicated)
	}
	fmt.Fprintf(w, "| window (round trips) | msgs/s | sim RSS MiB |\n|---|---|---|\n")
	for _, win := range res.Windows {
		fmt.Fprintf(w, "| ≤ %d | %.0f | %.1f |\n", win.Upto, win.MsgsPerSec, mib(win.SimRSS))
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(w, "rate, last window / first: %.2f (goal ≥ %.1f: %s)\n", res.Ratio, sustainedMinRatio, verdict(res.Ratio >= sustainedMinRatio))
	fmt.Fprintf(w, "sim RSS: %.1f MiB at start, peak %.1f MiB (goal ≤ %.0f MiB: %s)\n",
		mib(res.SimRSSStart), mib(res.SimPeakRSS), mib(res.SimRSSBound), verdict(res.SimPeakRSS <= res.SimRSSBound))
	j := res.SimJournal
	fmt.Fprintf(w, "sim journal: %d messages, %.1f MiB held, %d dropped; sim CPU %s/msg\n",
		j.Messages, mib(j.Bytes), j.Dropped, us(res.SimCPUPerMsg))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// awaitAddrFile waits for serve's --addr-file.
func awaitAddrFile(ctx context.Context, name string, exited <-chan error) (addrs struct{ MQTT, API string }, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		b, rerr := os.ReadFile(name)
		if rerr == nil {
			var a struct {
				MQTT string `json:"mqtt"`
				API  string `json:"api"`
			}
			if err := json.Unmarshal(b, &a); err != nil {
				return addrs, fmt.Errorf("read the sim's addresses: %w", err)
			}
			addrs.MQTT, addrs.API = a.MQTT, a.API
			return addrs, nil
		}
		select {
		case err := <-exited:
			return addrs, fmt.Errorf("the sim exited: %v", err)
		case <-ctx.Done():
			return addrs, fmt.Errorf("wait for the sim's addresses: %w", errors.Join(ctx.Err(), rerr))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func simInfo(ctx context.Context, api string) (sim.Info, error) {
	var info sim.Info
	req, err := http.NewRequestWithContext(ctx, "GET", api+sim.SimPath+"/info", nil)
	if err != nil {
		return info, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return info, fmt.Errorf("sim info: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return info, fmt.Errorf("sim info: %w", err)
	}
	return info, nil
}
