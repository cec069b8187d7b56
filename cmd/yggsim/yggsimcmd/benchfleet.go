package yggsimcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/sim/fleet"
)

func init() { hidden["bench-fleet"] = runBenchFleet }

const benchFleetUsage = `
Usage: yggsim bench-fleet [--bin DIR] [--hosts N] [flags]
       yggsim bench-fleet --api URL --hosts N [--prefix P] [flags]

The fleet case of "make bench-fleet" (hidden). It starts "yggsim serve"
(from DIR, or this program) as a process, then "yggsim fleet --hosts N"
against its plain listener, and measures, from outside, as a cloud-side
client would:

  - the time from the fleet's start until GET /v2/connections counts N
    hosts online;
  - the sim's resident memory (VmRSS) before the fleet and once all are
    online (after --settle), divided by N, and the fleet's own;
  - GET /v2/connections (the default page) --list-calls times, one after
    another: p50 and p99;
  - a ping of every host through the sim's API (POST
    /api/sim/hosts/{id}/ping, which waits for the pong), --concurrency at
    a time: how many answered, in how long.

Then it stops the fleet and the sim with SIGINT. Every phase is bounded
by --timeout. With --api it starts nothing and measures a sim and a fleet
that already run (the fleet's client ids are PREFIX plus the host's number,
zero-padded as yggsim fleet makes them). Exit status 1 when a host does not
come online or does not answer its ping.
`

// BenchFleetResult is what bench-fleet measured.
type BenchFleetResult struct {
	Hosts          int     `json:"hosts"`
	OnlineSeconds  float64 `json:"online_seconds,omitempty"`
	SimRSSBefore   int64   `json:"sim_rss_before,omitempty"`
	SimRSSOnline   int64   `json:"sim_rss_online,omitempty"`
	SimRSSAfter    int64   `json:"sim_rss_after_pings,omitempty"`
	SimBytesHost   int64   `json:"sim_bytes_per_host,omitempty"`
	FleetRSS       int64   `json:"fleet_rss,omitempty"`
	FleetBytesHost int64   `json:"fleet_bytes_per_host,omitempty"`
	fleet.Figures
}

func runBenchFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench-fleet", benchFleetUsage, stdout, stderr)
	bin := fs.String("bin", "", "`directory` with yggsim (default: this program)")
	api := fs.String("api", "", "measure the sim at this API `URL` instead of starting one")
	hosts := fs.Int("hosts", 10000, "`number` of hosts")
	prefix := fs.String("prefix", fleet.DefaultClientPrefix, "client id `prefix` of the fleet's hosts")
	rate := fs.Float64("connect-rate", 1000, "hosts the fleet starts a `second`")
	listCalls := fs.Int("list-calls", 200, "GET /v2/connections `calls`")
	conc := fs.Int("concurrency", 32, "pings in flight")
	settle := fs.Duration("settle", 5*time.Second, "wait this `long` once all are online before reading memory")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound of each phase")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if _, err := parse(fs, args, stdout); err != nil {
		return err
	}
	if *hosts < 1 {
		return fmt.Errorf("%w: --hosts must be at least 1", ErrUsage)
	}
	f, err := fleet.New(fleet.Config{Hosts: *hosts, Broker: "tcp://unused", ClientPrefix: *prefix})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	ids := make([]string, *hosts)
	for i := range ids {
		ids[i] = f.ClientID(i)
	}
	res := BenchFleetResult{Hosts: *hosts}
	m := &fleet.Measure{API: *api, Hosts: ids, ListCalls: *listCalls, PingConcurrency: *conc}
	phase := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, *timeout) }

	if *api == "" {
		yggsim := filepath.Join(*bin, "yggsim")
		if *bin == "" {
			if yggsim, err = os.Executable(); err != nil {
				return fmt.Errorf("bench-fleet: find this program: %w", err)
			}
		}
		dir, err := os.MkdirTemp("", "bench-fleet-")
		if err != nil {
			return fmt.Errorf("bench-fleet: %w", err)
		}
		defer os.RemoveAll(dir)
		fmt.Fprintf(stderr, "bench-fleet: %s, %d CPUs, %d hosts, logs in %s until the end\n", runtime.Version(), runtime.NumCPU(), *hosts, dir)

		serve, err := startProc(ctx, dir, "serve", yggsim, "serve", "--mqtt", "127.0.0.1:0", "--mqtts", "off",
			"--api", "127.0.0.1:0", "--content", "off", "--addr-file", filepath.Join(dir, "addr.json"), "--log-level", "warn")
		if err != nil {
			return err
		}
		defer serve.stop()
		var addr Addresses
		pctx, cancel := phase()
		err = awaitFile(pctx, filepath.Join(dir, "addr.json"), &addr)
		cancel()
		if err != nil {
			return fmt.Errorf("bench-fleet: serve: %w", err)
		}
		m.API = addr.API
		res.SimRSSBefore = vmRSS(serve.cmd.Process.Pid)

		start := time.Now()
		fl, err := startProc(ctx, dir, "fleet", yggsim, "fleet", "--hosts", strconv.Itoa(*hosts), "--broker", addr.MQTT,
			"--prefix", *prefix, "--connect-rate", strconv.FormatFloat(*rate, 'f', -1, 64), "--progress", "10s")
		if err != nil {
			return err
		}
		defer fl.stop()
		pctx, cancel = phase()
		err = m.AwaitOnline(pctx, *hosts, 50*time.Millisecond)
		cancel()
		if err != nil {
			return fmt.Errorf("bench-fleet: %w", err)
		}
		res.OnlineSeconds = time.Since(start).Seconds()
		fmt.Fprintf(stderr, "bench-fleet: all %d hosts online in %.1fs\n", *hosts, res.OnlineSeconds)
		select {
		case <-time.After(*settle):
		case <-ctx.Done():
			return ctx.Err()
		}
		res.SimRSSOnline = vmRSS(serve.cmd.Process.Pid)
		res.SimBytesHost = (res.SimRSSOnline - res.SimRSSBefore) / int64(*hosts)
		res.FleetRSS = vmRSS(fl.cmd.Process.Pid)
		res.FleetBytesHost = res.FleetRSS / int64(*hosts)
		pctx, cancel = phase()
		res.Figures, err = m.Run(pctx)
		cancel()
		res.SimRSSAfter = vmRSS(serve.cmd.Process.Pid)
		if err != nil {
			return fmt.Errorf("bench-fleet: %w", err)
		}
		for _, p := range []*proc{fl, serve} {
			if err := p.stop(); err != nil {
				fmt.Fprintf(stderr, "bench-fleet: %s: %v\n", p.name, err)
			}
		}
	} else {
		pctx, cancel := phase()
		res.Figures, err = m.Run(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("bench-fleet: %w", err)
		}
	}

	if *asJSON {
		if err := printJSON(stdout, res); err != nil {
			return err
		}
	} else {
		printBenchFleet(stdout, res)
	}
	if res.Online < *hosts || res.Answered < res.Pinged || res.Pinged < *hosts {
		return fmt.Errorf("bench-fleet: %d of %d hosts online, %d of %d pings answered", res.Online, *hosts, res.Answered, res.Pinged)
	}
	return nil
}

func printBenchFleet(w io.Writer, r BenchFleetResult) {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "hosts               %d (online: %d)\n", r.Hosts, r.Online)
	if r.OnlineSeconds > 0 {
		fmt.Fprintf(w, "time to all online  %.1f s\n", r.OnlineSeconds)
		fmt.Fprintf(w, "sim RSS             %s before, %s all online, %s after the pings\n", mib(r.SimRSSBefore), mib(r.SimRSSOnline), mib(r.SimRSSAfter))
		fmt.Fprintf(w, "sim per host        %.1f KB (all online minus before, / hosts)\n", float64(r.SimBytesHost)/1000)
		fmt.Fprintf(w, "fleet RSS           %s, %.1f KB a host\n", mib(r.FleetRSS), float64(r.FleetBytesHost)/1000)
	}
	fmt.Fprintf(w, "GET /v2/connections p50 %.2f ms, p99 %.2f ms (%d calls)\n", r.ListP50MS, r.ListP99MS, r.ListCalls)
	fmt.Fprintf(w, "pings               %d/%d answered in %.1f s (one ping p50 %.1f ms, p99 %.1f ms)\n",
		r.Answered, r.Pinged, r.PingSeconds, r.PingP50MS, r.PingP99MS)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  failed: %s\n", f)
	}
}

// proc is a child process of bench-fleet, its output in files.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// startProc starts name (args[0] with the rest) with its output in
// dir/<name>.out and .err; ctx's end interrupts it.
func startProc(ctx context.Context, dir, name string, args ...string) (*proc, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	stdout, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		return nil, fmt.Errorf("bench-fleet: %s: %w", name, err)
	}
	// The child has its own copies once started; ours are closed whether
	// or not it started.
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, name+".err"))
	if err != nil {
		return nil, fmt.Errorf("bench-fleet: %s: %w", name, err)
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench-fleet: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// stop interrupts the process and waits for it, a minute at most before
// it is killed; it may be called again, and reports the first outcome.
func (p *proc) stop() error {
	p.cmd.Process.Signal(os.Interrupt) // fails harmlessly once it has exited
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		return fmt.Errorf("did not stop within a minute of SIGINT: killed")
	}
}

// awaitFile waits until name holds a JSON value and decodes it into v.
func awaitFile(ctx context.Context, name string, v any) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(name)
		if err == nil && json.Unmarshal(b, v) == nil {
			return nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

// vmRSS returns the resident memory of pid in bytes, 0 if unknown.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
