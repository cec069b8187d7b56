package yggsimcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ygglab/yggdrasil/sim/fleet"
)

const fleetUsage = `
Usage: yggsim fleet --hosts N [flags]

Run N simulated hosts in this process until interrupted, to load a cloud
side: "yggsim serve" by default, or any broker with cloud-connector behind
it. Each host is a yggdrasil router with its own MQTT connection (client id
PREFIX<n>, persistent session, retained online status, retained offline
will) and an in-process echo worker for the --directive handlers, which
answers each data message with its content and metadata. Hosts start
connecting at --connect-rate a second. The journals are in memory unless
--state-dir is given.

Progress is printed every --progress: the hosts connected, and the hosts
online (whose online status the broker has acknowledged, so the cloud side
has it). Once every host is online a line says how long it took, and
--ready-file, if given, is written (a line "online N"), so that scripts
can wait for it. On interrupt each host stops as yggd does (an offline
status, then a clean disconnect) and the command exits 0.

Examples:
  yggsim fleet --hosts 100
  yggsim fleet --hosts 10000 --connect-rate 1000 --broker tcp://127.0.0.1:1883
`

func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fleet", fleetUsage, stdout, stderr)
	cfg := fleet.Config{}
	fs.IntVar(&cfg.Hosts, "hosts", 0, "`number` of hosts (required)")
	fs.StringVar(&cfg.Broker, "broker", "tcp://"+defaultMQTT, "`URL` of the broker")
	fs.StringVar(&cfg.ClientPrefix, "prefix", fleet.DefaultClientPrefix, "client id `prefix`; the host's number, zero-padded, follows")
	fs.StringVar(&cfg.TopicPrefix, "topic-prefix", "yggdrasil", "topic `prefix`")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", fleet.DefaultConnectRate, "`hosts` that start connecting per second (negative: all at once)")
	fs.Float64Var(&cfg.ConnectRate, "rate", fleet.DefaultConnectRate, "the same as --connect-rate, in `hosts` a second")
	directives := fs.String("directive", fleet.DefaultDirective, "comma-separated `handlers` of the echo worker")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "keep each host's journal on disk in this `directory` (without fsync); in memory if empty")
	fs.DurationVar(&cfg.KeepAlive, "keepalive", 0, "MQTT keep-alive `interval` (default yggd's)")
	every := fs.Duration("progress", 2*time.Second, "print progress at this `interval` (0: only when all are online)")
	readyFile := fs.String("ready-file", "", "write this `file` once every host is online")
	level := fs.String("log-level", "warn", "log `level`: debug, info, warn or error")
	pos, err := parse(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 0 || cfg.Hosts < 1 {
		return fmt.Errorf("%w: fleet takes no arguments and needs --hosts of at least 1", ErrUsage)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("%w: --log-level %q", ErrUsage, *level)
	}
	if *readyFile != "" {
		// A ready file left by an earlier run would say ready at once.
		if err := os.Remove(*readyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("fleet: ready file: %w", err)
		}
	}
	cfg.Directives = strings.Split(*directives, ",")
	cfg.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	f, err := fleet.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	fmt.Fprintf(stdout, "fleet: %d hosts %s..%s on %s\n", cfg.Hosts, f.ClientID(0), f.ClientID(cfg.Hosts-1), cfg.Broker)
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	start := time.Now()
	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	// Checked often enough to time "all online" well, printed at --progress.
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	all := false
	for {
		select {
		case err := <-done:
			return fleetStopped(stdout, f, err)
		case <-ctx.Done():
			fmt.Fprintf(stdout, "fleet: stopping %d hosts\n", f.Stats().Started)
			return fleetStopped(stdout, f, <-done)
		case <-tick:
			st := f.Stats()
			fmt.Fprintf(stdout, "fleet: %d/%d online, %d connected, %d started at %s\n",
				st.Online, st.Hosts, st.Connected, st.Started, time.Since(start).Round(time.Millisecond))
		case <-poll.C:
			if st := f.Stats(); !all && st.Online == int64(st.Hosts) {
				all = true
				fmt.Fprintf(stdout, "fleet: all %d hosts online in %s\n", st.Hosts, time.Since(start).Round(time.Millisecond))
				if *readyFile != "" {
					if err := writeFileAtomic(*readyFile, fmt.Appendf(nil, "online %d\n", st.Hosts)); err != nil {
						stopRun()
						<-done
						return fmt.Errorf("fleet: ready file: %w", err)
					}
				}
			}
		}
	}
}

// writeFileAtomic writes b to name through a temporary file and a rename,
// so that a reader never sees it half written.
func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

func fleetStopped(stdout io.Writer, f *fleet.Fleet, err error) error {
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fleet: stopped (%d connected)\n", f.Stats().Connected)
	return nil
}
