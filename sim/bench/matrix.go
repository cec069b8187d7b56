package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ygglab/yggdrasil/sim"
)

// System is a host implementation that the matrix measures.
type System string

// The systems, in the order each case runs them.
const (
	SysRelay    System = "a"    // ceiling a: yggsim ceiling-relay
	SysPipeline System = "b"    // ceiling b: yggsim ceiling-pipeline
	SysYggd     System = "yggd" // the daemon under test
	// SysBase is another build of yggd and echo-worker (Matrix.Baseline),
	// measured beside the one under test: a change's cost, side by side.
	SysBase System = "base"
	// SysUpstream is yggdrasil 0.1.5 (Matrix.Upstream), built by
	// mk/build-upstream.sh with its deadlock fixed, with its own yggd and
	// echo worker, measured beside yggd where it can run (upstreamSkip).
	SysUpstream System = "0.1.5"
)

// SysDurable is ceiling bj: b with a durable journal (yggsim
// ceiling-pipeline --journal); it runs after b in the cases with one
// message in flight and in those with Case.Tmpfs (thru), where yggd's
// disk is split from its own cost.
const SysDurable System = "bj"

// SysTmpfs is yggd itself, the same build, with its state directory on
// tmpfs (Matrix.Tmpfs), where the journal's syncs cost nothing: beside
// yggd it tells what yggd costs apart from its disk. It runs after yggd
// in the cases with Case.Tmpfs (see tmpfs.go).
const SysTmpfs System = "yggd-tmpfs"

// yggd reports whether s is a yggd of this project's (this build, on
// disk or on tmpfs, or another build): one the matrix starts with yggd's
// flags and whose log it reads.
func (s System) yggd() bool { return s == SysYggd || s == SysBase || s == SysTmpfs }

// thisBuild reports whether s is the yggd under test, whose runs count in
// its goals (log at info).
func (s System) thisBuild() bool { return s == SysYggd || s == SysTmpfs }

// Case is one workload of the matrix.
type Case struct {
	ID       string
	Window   int
	Size     int
	Count    int
	Warmup   int // 0: the default
	Workers  int // 0: one echo-worker; n: n bench-workers, handlers echo1..echoN round-robin
	Detached bool
	// Tmpfs adds SysTmpfs after yggd when the systems are the default.
	Tmpfs   bool
	Systems []System // default a, b, yggd (bj with Window 1 or Tmpfs, yggd-tmpfs with Tmpfs)
	// Idle, when set, makes the case one round trip (Count 1) followed by
	// this long idle, measured (Config.Idle); yggd, base and 0.1.5 only.
	Idle time.Duration

	Progress func(answered, total int) // see Config.Progress
}

// DefaultCases is the matrix of "make bench", sized to finish in about ten
// minutes on two cores at five repetitions.
func DefaultCases() []Case {
	return []Case{
		{ID: "thru", Window: 64, Size: 100, Count: 20_000, Tmpfs: true},
		{ID: "lat", Window: 1, Size: 100, Count: 3_000, Warmup: 300, Tmpfs: true},
		{ID: "payload-4k", Window: 64, Size: 4 << 10, Count: 10_000},
		{ID: "payload-64k", Window: 64, Size: 64 << 10, Count: 2_000},
		{ID: "payload-64k-w1", Window: 1, Size: 64 << 10, Count: 1_000, Warmup: 100, Tmpfs: true},
		{ID: "workers-1", Window: 64, Size: 100, Count: 10_000, Workers: 1},
		{ID: "workers-4", Window: 64, Size: 100, Count: 10_000, Workers: 4},
		{ID: "workers-16", Window: 64, Size: 100, Count: 10_000, Workers: 16},
		{ID: "detached-1m", Window: 4, Size: 1 << 20, Count: 40, Warmup: 8, Detached: true, Systems: []System{SysYggd}},
		{ID: "idle", Window: 1, Size: 100, Count: 1, Warmup: -1, Idle: time.Minute, Systems: []System{SysYggd}},
	}
}

// SoakCases are the long runs of "make bench-soak" (yggd and ceiling b,
// once).
func SoakCases() []Case {
	return []Case{
		{ID: "soak-100b", Window: 64, Size: 100, Count: 1_000_000, Systems: []System{SysYggd}},
		{ID: "soak-64k", Window: 64, Size: 64 << 10, Count: 50_000, Systems: []System{SysYggd}},
	}
}

// Matrix runs cases against the systems, interleaved: for each
// repetition, each case runs a, b and yggd back to back, on one broker.
type Matrix struct {
	Bin string // directory holding yggd, yggsim and echo-worker
	// Baseline, if set, is a directory holding another build of yggd and
	// echo-worker, run as system "base" after yggd in every case where
	// yggd runs.
	Baseline string
	// Upstream, if set, is a directory from mk/build-upstream.sh: yggd
	// and echo-worker of yggdrasil 0.1.5, run as system "0.1.5" after
	// yggd (and base) in every case where yggd runs and 0.1.5 can. Its
	// worker directory is set at link time to Upstream/run/libexec/yggdrasil,
	// its state under Upstream/run: the matrix empties Upstream/run and
	// fills it for each run.
	Upstream string
	// Tmpfs is a directory on tmpfs for SysTmpfs's state directories;
	// default /dev/shm. Where it is not tmpfs, SysTmpfs is skipped.
	Tmpfs string
	Reps  int
	Cases []Case
	Log   io.Writer // progress lines; nil: none
}

// Run is one measured run of the matrix.
type MatrixRun struct {
	Rep        int     `json:"rep"`
	Case       string  `json:"case"`
	System     System  `json:"system"`
	Result     *Result `json:"result,omitempty"`
	Error      string  `json:"error,omitempty"`
	WorkerLeft []int   `json:"workers_left,omitempty"` // alive after the host stopped
	// FsyncsPerMsg is yggd's journal syncs per message received over its
	// whole run (warm-up included), from its last log line; 0 when it
	// logs none.
	FsyncsPerMsg float64 `json:"fsyncs_per_msg,omitempty"`
	ExitErr      string  `json:"exit_error,omitempty"`
	// Skipped says why the system did not run this case (0.1.5 cannot
	// run some); such a run has no Result and is no failure.
	Skipped string `json:"skipped,omitempty"`
}

// Run runs the matrix and returns every run.
func (m *Matrix) Run(ctx context.Context) ([]MatrixRun, error) {
	if m.Reps <= 0 {
		m.Reps = 5
	}
	logf := func(format string, args ...any) {
		if m.Log != nil {
			fmt.Fprintf(m.Log, format+"\n", args...)
		}
	}
	bin, err := filepath.Abs(m.Bin)
	if err != nil {
		return nil, err
	}
	m.Bin = bin
	for _, b := range []string{"yggd", "yggsim", "echo-worker"} {
		if _, err := os.Stat(filepath.Join(m.Bin, b)); err != nil {
			return nil, fmt.Errorf("bench matrix: %w (build the programs into %s first)", err, m.Bin)
		}
	}
	if m.Upstream != "" {
		if m.Upstream, err = filepath.Abs(m.Upstream); err != nil {
			return nil, err
		}
		for _, b := range []string{"yggd", "echo-worker"} {
			if _, err := os.Stat(filepath.Join(m.Upstream, b)); err != nil {
				return nil, fmt.Errorf("bench matrix: upstream: %w (build 0.1.5 with mk/build-upstream.sh %s first)", err, m.Upstream)
			}
		}
	}
	tmpfsSkip := m.tmpfsSkip()
	s := &sim.Server{OpenACL: true, TLSAddr: sim.Off, APIAddr: sim.Off, JournalLimit: 1, HistoryLimit: 1,
		Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		return nil, fmt.Errorf("bench matrix: %w", err)
	}
	defer s.Close()
	work, err := os.MkdirTemp("", "yggbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	var runs []MatrixRun
	for rep := 1; rep <= m.Reps; rep++ {
		for _, c := range m.Cases {
			systems := c.Systems
			if len(systems) == 0 {
				systems = []System{SysRelay, SysPipeline, SysYggd}
				if (c.Window == 1 || c.Tmpfs) && c.Idle == 0 {
					systems = slices.Insert(systems, 2, SysDurable)
				}
				if c.Tmpfs {
					systems = append(systems, SysTmpfs)
				}
			}
			systems = m.systems(systems)
			for _, sys := range systems {
				if ctx.Err() != nil {
					return runs, ctx.Err()
				}
				why := ""
				switch sys {
				case SysUpstream:
					why = upstreamSkip(c)
				case SysTmpfs:
					why = tmpfsSkip
				}
				if why != "" {
					runs = append(runs, MatrixRun{Rep: rep, Case: c.ID, System: sys, Skipped: why})
					logf("rep %d %-15s %-4s skipped: %s", rep, c.ID, sys, why)
					continue
				}
				dir := filepath.Join(work, fmt.Sprintf("%d-%s-%s", rep, c.ID, sys))
				r := m.runOne(ctx, s.BrokerURL(), dir, rep, c, sys)
				runs = append(runs, r)
				line := fmt.Sprintf("rep %d %-15s %-4s", rep, c.ID, sys)
				if r.Result != nil {
					line += fmt.Sprintf(" %8.0f msgs/s p50 %-8s p99 %-8s", r.Result.MsgsPerSec, us(r.Result.P50), us(r.Result.P99))
					if p := r.Result.Proc; p != nil && p.Idle != nil {
						line += " " + p.Idle.String()
					} else if p != nil {
						line += fmt.Sprintf(" cpu %s/msg rss %.1f MiB worker rss %.1f MiB", us(p.CPUPerMsg), float64(p.PeakRSS)/(1<<20), float64(p.WorkerPeakRSS)/(1<<20))
					}
				}
				if r.Error != "" {
					line += " ERROR " + r.Error
				}
				logged := r.System.thisBuild() && r.Result != nil && r.Result.Proc != nil && r.Result.Proc.LogBytes > 0
				if r.Error != "" || r.ExitErr != "" || logged {
					// Keep the host's log for a look.
					keep := filepath.Join(os.TempDir(), filepath.Base(work)+"-"+filepath.Base(dir)+".log")
					if copyFile(filepath.Join(dir, "host.log"), keep) == nil {
						line += " (log: " + keep + ")"
					}
				}
				logf("%s", line)
				os.RemoveAll(dir)
			}
		}
	}
	return runs, nil
}

// systems returns the systems a case names, then base and
// 0.1.5 where yggd runs and the matrix has them.
func (m *Matrix) systems(systems []System) []System {
	if !slices.Contains(systems, SysYggd) {
		return systems
	}
	systems = slices.Clone(systems)
	if m.Baseline != "" {
		systems = append(systems, SysBase)
	}
	if m.Upstream != "" {
		systems = append(systems, SysUpstream)
	}
	return systems
}

// stoppedLine matches the counters of yggd's last log line.
var stoppedLine = regexp.MustCompile(`msg=stopped .*received=(\d+) .*journal_syncs=(\d+)`)

// fsyncsPerMsg reads the journal syncs per message received from the
// "stopped" line of yggd's log; 0 when there is none.
func fsyncsPerMsg(logFile string) float64 {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return 0
	}
	m := stoppedLine.FindSubmatch(b)
	if m == nil {
		return 0
	}
	received, _ := strconv.ParseFloat(string(m[1]), 64)
	syncs, _ := strconv.ParseFloat(string(m[2]), 64)
	if received == 0 {
		return 0
	}
	return syncs / received
}

// hasFlag reports whether the yggd at path documents --flag in its help.
func hasFlag(path, flag string) bool {
	out, _ := exec.Command(path, "--help").Output()
	return strings.Contains(string(out), "--"+flag+" ")
}

// runOne starts sys, loads it with c, and stops it.
func (m *Matrix) runOne(ctx context.Context, broker, dir string, rep int, c Case, sys System) MatrixRun {
	out := MatrixRun{Rep: rep, Case: c.ID, System: sys}
	fail := func(err error) MatrixRun {
		out.Error = err.Error()
		return out
	}
	stateDir := filepath.Join(dir, "state-dir")
	if sys == SysTmpfs {
		d, err := os.MkdirTemp(m.Tmpfs, "yggbench-state-")
		if err != nil {
			return fail(fmt.Errorf("state directory on tmpfs: %w", err))
		}
		defer os.RemoveAll(d)
		stateDir = d
	}
	host := fmt.Sprintf("bench-%d-%s-%s-%d", rep, c.ID, sys, time.Now().UnixNano()%1e6)
	workerDir := filepath.Join(dir, "workers")
	bin := m.Bin
	switch sys {
	case SysBase:
		bin = m.Baseline
	case SysUpstream:
		bin = m.Upstream
		// 0.1.5's directories are fixed at link time, under Upstream/run:
		// start from an empty one (it kills the pids it finds there).
		run := filepath.Join(m.Upstream, "run")
		if err := os.RemoveAll(run); err != nil {
			return fail(err)
		}
		workerDir = filepath.Join(run, "libexec", "yggdrasil")
	}
	for _, d := range []string{dir, workerDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
	}
	directives := []string{"echo"}
	var workers []string
	if c.Workers == 0 {
		w := filepath.Join(workerDir, "echo-worker")
		if err := copyFile(filepath.Join(bin, "echo-worker"), w); err != nil {
			return fail(err)
		}
		workers = append(workers, w)
		if c.Detached {
			directives = []string{"echo-detached"}
		}
	} else {
		directives = nil
		for i := 1; i <= c.Workers; i++ {
			h := fmt.Sprintf("echo%d", i)
			w := filepath.Join(workerDir, h+"-worker")
			script := fmt.Sprintf("#!/bin/sh\nexec %s bench-worker %s\n", filepath.Join(m.Bin, "yggsim"), h)
			if err := os.WriteFile(w, []byte(script), 0o755); err != nil {
				return fail(err)
			}
			workers = append(workers, w)
			directives = append(directives, h)
		}
	}
	var cmd *exec.Cmd
	switch sys {
	case SysRelay:
		cmd = exec.Command(filepath.Join(m.Bin, "yggsim"), "ceiling-relay", "--broker", broker, "--client-id", host,
			"--handlers", strings.Join(directives, ","))
	case SysPipeline:
		cmd = exec.Command(filepath.Join(m.Bin, "yggsim"), append([]string{"ceiling-pipeline", "--broker", broker,
			"--client-id", host}, workers...)...)
	case SysYggd, SysBase, SysTmpfs:
		yggd := filepath.Join(bin, "yggd")
		args := []string{"--broker", broker, "--client-id", host, "--worker-dir", workerDir, "--log-level", "info"}
		// Older builds have no runtime, state or worker settings
		// directory. The settings directory exists, as an installed
		// yggd's does: a missing one is looked for every 2 s, which an
		// idle run would count.
		for _, f := range [][2]string{{"runtime-dir", filepath.Join(dir, "runtime-dir")}, {"state-dir", stateDir},
			{"worker-config-dir", filepath.Join(dir, "worker-config-dir")}} {
			if hasFlag(yggd, f[0]) {
				args = append(args, "--"+f[0], f[1])
			}
		}
		if err := os.MkdirAll(filepath.Join(dir, "worker-config-dir"), 0o755); err != nil {
			return fail(err)
		}
		cmd = exec.Command(yggd, args...)
	case SysUpstream:
		// Its client id is its certificate's CN; the same certificate is
		// the consumer certificate of its canonical facts.
		consumer := filepath.Join(m.Upstream, "run", "consumer")
		certFile, keyFile := filepath.Join(consumer, "cert.pem"), filepath.Join(consumer, "key.pem")
		if err := writeClientCert(certFile, keyFile, host); err != nil {
			return fail(err)
		}
		cmd = exec.Command(filepath.Join(bin, "yggd"), upstreamArgs(broker, certFile, keyFile)...)
	}
	if sys == SysDurable {
		cmd = exec.Command(filepath.Join(m.Bin, "yggsim"), append([]string{"ceiling-pipeline", "--broker", broker,
			"--client-id", host, "--journal", dir}, workers...)...)
	}
	if (sys == SysPipeline || sys == SysDurable) && c.Window == 1 {
		// b's best configuration with one message in flight.
		cmd.Args = slices.Insert(cmd.Args, 2, "--inline")
	}
	logFile := filepath.Join(dir, "host.log")
	lf, err := os.Create(logFile)
	if err != nil {
		return fail(err)
	}
	defer lf.Close()
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	exited := make(chan error, 1)
	started := false
	start := func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		started = true
		go func() { exited <- cmd.Wait() }()
		return cmd.Process.Pid, nil
	}

	cfg := Config{Broker: broker, Host: host, Directives: directives, Window: c.Window, Size: c.Size,
		Count: c.Count, Warmup: c.Warmup, LogFile: logFile, Progress: c.Progress}
	if sys == SysUpstream {
		// 0.1.5 does not retain its status: the generator starts it once
		// it listens, so as not to miss the one listing the echo worker.
		// That status comes before the worker listens (Config.Settle).
		cfg.Start, cfg.Settle = start, time.Second
	} else {
		pid, err := start()
		if err != nil {
			return fail(err)
		}
		cfg.Pid = pid
	}
	if c.Detached {
		cfg.Detached = &DetachedConfig{}
		cfg.PingEvery = -1
	}
	if c.Idle > 0 {
		cfg.Idle, cfg.PingEvery = c.Idle, -1
	}
	if sys.yggd() {
		// Log lines written before the load (startup) do not count.
		cfg.LogFile = logFile
		if c.Workers == 0 {
			// The echo worker registers both its handlers, and the
			// second one's registration must not be logged in the
			// measured phase.
			cfg.Listed = []string{"echo", "echo-detached"}
		}
	}
	res, err := Run(ctx, cfg)
	out.Result = res
	if err != nil {
		out.Error = err.Error()
	}
	if !started {
		return out
	}
	children := Children(cmd.Process.Pid)

	// Stop it as systemd would, and check that no worker is left.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			out.ExitErr = err.Error()
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		out.ExitErr = "did not stop within 15s of SIGTERM"
		<-exited
	}
	out.FsyncsPerMsg = fsyncsPerMsg(logFile)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []int
		for _, p := range children {
			if Alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			out.WorkerLeft = left
			for _, p := range left {
				syscall.Kill(p, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// ErrGoalsMissed is returned by Report when a goal was not met.
var ErrGoalsMissed = errors.New("goals missed")
