package yggsimcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/sim/bench"
)

const benchUsage = `
Usage: yggsim bench [flags] HOST

Load a running yggd (or anything wire-compatible with it) through its MQTT
broker: publish data messages to HOST's data/in at QoS 1, keeping --window
of them in flight, with a content of --size bytes (a JSON string) and the
directives round-robin; match the answers on data/out by response_to; and
print the throughput, the round-trip times (p50, p90, p99, max), and what
was lost, duplicated or refused. --warmup messages go first and are not
measured. A ping is sent every --ping-every during the load; each must be
answered.

The broker must let this client publish to HOST's data/in and control/in
and read its data/out and control/out: "yggsim serve --open-acl" does, as
does a default mosquitto. bench waits for HOST's online status listing
every directive before it starts.

With --pid (the daemon's process id), bench also reports from /proc the
daemon's CPU time per message (its own threads only; its children, the
workers, are reported separately), its resident memory (after warm-up,
after a tenth of the messages, at the end, and the peak VmHWM) and its
threads; with --log-file, the growth of the daemon's log per message.

With --detached, each message's content is the URL of a --size payload on
a content server that bench starts; the worker (directive echo-detached by
default) POSTs it back to the URL in metadata "return_url", and the round
trip ends when the POST arrives.

Exit status: 0 when every message was answered exactly once, no answer was
a negative acknowledgement and every ping was answered; 1 otherwise.

Examples:
  yggsim serve --open-acl &
  yggd --broker tcp://127.0.0.1:1883 --client-id host1 --worker-dir ./workers &
  yggsim bench --window 64 --count 20000 --pid $(pidof yggd) host1
  yggsim bench --window 1 --count 3000 --json host1
`

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", benchUsage, stdout, stderr)
	var cfg bench.Config
	fs.StringVar(&cfg.Broker, "broker", "tcp://"+defaultMQTT, "broker `URL`")
	fs.StringVar(&cfg.Prefix, "prefix", "yggdrasil", "topic `prefix`")
	directives := fs.String("directive", "echo", "comma-separated `directives`, used round-robin")
	fs.IntVar(&cfg.Window, "window", 64, "messages in `flight`")
	fs.IntVar(&cfg.Size, "size", 100, "content `bytes` (a JSON string, quotes included)")
	fs.IntVar(&cfg.Count, "count", 20000, "measured `messages`")
	fs.IntVar(&cfg.Warmup, "warmup", 0, "unmeasured `messages` first (default min(count, max(500, 4×window)))")
	fs.DurationVar(&cfg.Stall, "stall", 10*time.Second, "give up after this long without an answer")
	fs.DurationVar(&cfg.Ready, "ready", 30*time.Second, "how long to wait for HOST to be online")
	fs.DurationVar(&cfg.PingEvery, "ping-every", time.Second, "ping HOST this often during the load (0: never)")
	fs.IntVar(&cfg.Pid, "pid", 0, "the daemon's process `id`, for CPU, memory and threads")
	fs.StringVar(&cfg.LogFile, "log-file", "", "the daemon's log `file`, for log bytes per message")
	detached := fs.Bool("detached", false, "detached round trips (content by URL, answers by HTTP POST)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: bench takes one HOST", ErrUsage)
	}
	cfg.Host = pos[0]
	cfg.Directives = strings.Split(*directives, ",")
	if cfg.PingEvery == 0 {
		cfg.PingEvery = -1
	}
	if *detached {
		cfg.Detached = &bench.DetachedConfig{}
		if *directives == "echo" {
			cfg.Directives = []string{"echo-detached"}
		}
	}
	res, runErr := bench.Run(ctx, cfg)
	if res == nil {
		return runErr
	}
	if *asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		WriteResult(stdout, res)
	}
	if runErr != nil {
		return fmt.Errorf("bench %s: %w", cfg.Host, runErr)
	}
	return nil
}

// WriteResult prints a bench result for people.
func WriteResult(w io.Writer, r *bench.Result) {
	fmt.Fprintf(w, "%s: %d messages (window %d, %d B) in %s: %.0f msgs/s\n",
		r.Host, r.Answered, r.Window, r.Size, r.Elapsed.Round(time.Millisecond), r.MsgsPerSec)
	fmt.Fprintf(w, "round trip: p50 %s  p90 %s  p99 %s  max %s\n", us(r.P50), us(r.P90), us(r.P99), us(r.Max))
	fmt.Fprintf(w, "lost %d, duplicated %d, nacked %d, unexpected %d, bad content %d (%d verified), stalled %v\n",
		r.Lost, r.Duplicated, r.Nacked, r.Unexpected, r.BadContent, r.Verified, r.Stalled)
	fmt.Fprintf(w, "pings answered %d/%d (max %s)\n", r.PingsAnswered, r.PingsSent, us(r.PingMax))
	if p := r.Proc; p != nil {
		fmt.Fprintf(w, "pid %d: CPU %s/msg (workers %s/msg), RSS %.1f → %.1f → %.1f MiB, peak %.1f MiB, %d threads, log %.1f B/msg\n",
			p.Pid, us(p.CPUPerMsg), us(p.WorkerPerMsg), mib(p.RSSStart), mib(p.RSSTenth), mib(p.RSSEnd), mib(p.PeakRSS),
			p.Threads, p.LogPerMsg)
	}
}

func us(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
