// Package yggsimcmd is the yggsim program: a simulated yggdrasil cloud for
// running yggd locally and in tests. "yggsim serve" runs an MQTT broker
// with the per-host ACL, a cloud-connector compatible HTTP API and a
// detached-content server; the other subcommands are clients of that API,
// except "cert", which issues host certificates from the sim's CA.
//
// The program is importable so that the e2e suite runs the real thing:
// Main reads os.Args, Run takes its arguments and writers, and StartServe
// starts everything "serve" runs and returns the addresses.
package yggsimcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ygglab/yggdrasil/yggdrasil/build"
)

// ErrUsage marks a command line mistake (exit code 2).
var ErrUsage = errors.New("usage")

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Main runs yggsim with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return ExitCode(Run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
}

// ExitCode reports err on stderr and maps it to an exit code.
func ExitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(stderr, "yggsim:", err)
		return ExitUsage
	default:
		fmt.Fprintln(stderr, "yggsim:", err)
		return ExitFailure
	}
}

const mainUsage = `Usage: yggsim <command> [flags] [arguments]

yggsim simulates the cloud side of yggdrasil: an MQTT broker that enforces
the per-host topic ACL, a certificate authority for host certificates, a
REST API compatible with cloud-connector, and a detached-content server.
Run "yggsim serve" in one terminal, then yggd against it, and drive it with
the other commands.

Commands:
  serve       run the broker, the API and the content server
  hosts       list the hosts the sim has seen
  wait        wait until a host is online (with a given worker)
  ping        ping a host and print the round-trip time
  send        send a data message to a host, and optionally wait for the answer
  disconnect  tell a host to disconnect
  reconnect   tell a host to reconnect after a delay
  history     print the messages to and from a host
  watch       print all MQTT traffic as it happens
  fault       cut, blackhole or delay the network between hosts and broker
  broker      stop or start the broker
  cert        issue a host certificate signed by the sim's CA
  bench       load a host with data messages and measure it
  fleet       run many simulated hosts in one process against a broker
  demo        run the sim, yggd and the echo worker, and show round trips

Run "yggsim <command> --help" for a command's flags, "yggsim --version" for
the version.

Environment:
  YGGSIM_API    the API URL the client commands use (default ` + defaultAPI + `)
  YGGSIM_STATE  the state directory (the CA) of serve and cert
  YGGSIM_PSK    the pre-shared key the client commands send to the
                cloud-connector API (for "serve --psk"), with the org id
                $YGGSIM_ORG_ID (default 000001) and the account
                $YGGSIM_ACCOUNT (default 0000001)

Exit status: 0 on success, 1 on failure, 2 on a usage error.
`

// Run runs one yggsim command line (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return fmt.Errorf("%w: no command", ErrUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, mainUsage)
		return nil
	case "-v", "-version", "--version", "version":
		fmt.Fprintf(stdout, "yggsim version %s\n", build.Version)
		return nil
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "hosts":
		return runHosts(ctx, rest, stdout, stderr)
	case "wait":
		return runWait(ctx, rest, stdout, stderr)
	case "ping":
		return runPing(ctx, rest, stdout, stderr)
	case "send":
		return runSend(ctx, rest, stdout, stderr)
	case "watch":
		return runWatch(ctx, rest, stdout, stderr)
	case "history":
		return runHistory(ctx, rest, stdout, stderr)
	case "disconnect":
		return runDisconnect(ctx, rest, stdout, stderr)
	case "reconnect":
		return runReconnect(ctx, rest, stdout, stderr)
	case "fault":
		return runFault(ctx, rest, stdout, stderr)
	case "broker":
		return runBroker(ctx, rest, stdout, stderr)
	case "cert":
		return runCert(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "fleet":
		return runFleet(ctx, rest, stdout, stderr)
	}
	if run, ok := hidden[cmd]; ok {
		return run(ctx, rest, stdout, stderr)
	}
	fmt.Fprint(stderr, mainUsage)
	return fmt.Errorf("%w: unknown command %q", ErrUsage, cmd)
}

// newFlags returns a flag set whose --help prints usage to stdout and
// whose errors are usage errors.
func newFlags(name, usage string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), strings.TrimLeft(usage, "\n"))
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags placed anywhere among the arguments (flag stops at
// the first non-flag argument, so positional arguments are set aside and
// parsing resumes after each one).
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		for _, a := range args {
			if a == "-h" || a == "-help" || a == "--help" {
				fs.SetOutput(stdout)
				fs.Usage()
				return nil, flag.ErrHelp
			}
		}
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
