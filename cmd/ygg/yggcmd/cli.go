// Package yggcmd is the ygg program: it registers a host with Red Hat
// Subscription Management and enables the yggd daemon (register), reverses
// that (unregister), shows the state of both and of the running yggd,
// changes its log level, hands messages to local workers and follows what
// yggd does (status, workers, log-level, dispatch, listen: through yggd's
// control socket), tests the host and yggd's configuration (check), and
// prints the host's canonical facts (facts, canonical-facts).
// It is importable so that cmd/ygg stays a one-line main and the e2e suite
// runs the real program.
//
// ygg talks to RHSM and systemd on the system bus, found as every D-Bus
// client finds it (DBUS_SYSTEM_BUS_ADDRESS when set), and has no test-only
// switches. The command definitions below are the single source of the help
// text, the man page (ygg --generate-man-page) and the bash completion
// script (ygg --generate-bash-completion).
package yggcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/ygglab/yggdrasil/yggdrasil/build"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command failed, or status found something down
	exitUsage   = 2 // bad command line
)

// errUsage marks a command-line mistake; the message is printed with a hint
// to --help and ygg exits with exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// errSilent is returned by a command that has already printed why it failed
// (status with something down).
var errSilent = errors.New("failed")

// flagSpec is one command-line flag, described once for parsing, help, man
// page and completion.
type flagSpec struct {
	long, short string
	arg         string   // value name ("" for a boolean flag)
	help        string   // one sentence
	values      []string // allowed values, for help and completion
	complete    string   // "file" or "dir": what bash should complete
	hidden      bool
	repeat      bool // may be given several times
}

// command is one ygg subcommand.
type command struct {
	name    string
	aliases []string
	hidden  bool
	args    string // synopsis after the flags, "" for none
	maxArgs int    // positional arguments allowed
	// argValues are the values a positional argument takes, for
	// completion.
	argValues []string
	summary   string // one line, lower case, for the command list
	desc      string // paragraphs separated by blank lines
	flags     []flagSpec
	run       func(ctx context.Context, a *app, fs *parsed) error
}

// parsed holds the values of a command's flags.
type parsed struct {
	str  map[string]*string
	list map[string]*listValue
	args []string
}

func (p *parsed) get(name string) string       { return *p.str[name] }
func (p *parsed) getList(name string) []string { return p.list[name].v }

type listValue struct{ v []string }

func (l *listValue) String() string     { return strings.Join(l.v, ",") }
func (l *listValue) Set(s string) error { l.v = append(l.v, s); return nil }

// app is one run of ygg: its streams and environment.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	log            *slog.Logger
}

// Main runs ygg with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

var globalFlags = []flagSpec{
	{long: "help", short: "h", help: "Show help and exit."},
	{long: "version", short: "v", help: "Print the version and exit."},
	{long: "log-level", arg: "LEVEL", help: "Log D-Bus activity at this level to stderr.", values: []string{"error", "warn", "info", "debug"}, hidden: true},
	{long: "generate-man-page", help: "Print the man page (roff) and exit.", hidden: true},
	{long: "generate-bash-completion", help: "Print the bash completion script and exit.", hidden: true},
}

// Run runs ygg with args (without the program name) and returns the exit
// code. stdin and stdout count as terminals only when they are *os.File
// terminals.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	err := a.run(ctx, args)
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", build.ShortName, ue.msg, build.ShortName)
		return exitUsage
	case errors.Is(err, errSilent):
		return exitFailure
	default:
		fmt.Fprintf(stderr, "%s: %s\n", build.ShortName, err)
		return exitFailure
	}
}

func (a *app) run(ctx context.Context, args []string) error {
	g, err := parseFlags("", globalFlags, args, true)
	if err != nil {
		return err
	}
	level := slog.LevelError
	if l := g.get("log-level"); l != "" {
		if err := level.UnmarshalText([]byte(l)); err != nil {
			return usagef("--log-level: %q is not one of error, warn, info, debug", l)
		}
	}
	a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	switch {
	case g.get("help") == "true":
		return a.printHelp(nil)
	case g.get("version") == "true":
		fmt.Fprintf(a.stdout, "%s version %s\n", build.ShortName, build.Version)
		return nil
	case g.get("generate-man-page") == "true":
		return writeManPage(a.stdout, commands())
	case g.get("generate-bash-completion") == "true":
		return writeBashCompletion(a.stdout, commands())
	}
	if len(g.args) == 0 {
		a.printHelp(nil)
		return usagef("no command given")
	}
	name, rest := g.args[0], g.args[1:]
	cmd := lookup(name)
	if cmd == nil {
		return usagef("unknown command %q", name)
	}
	p, err := parseFlags(cmd.name, cmd.flags, rest, false)
	if err == nil && len(p.args) > cmd.maxArgs {
		err = usagef("%s: unexpected argument %q", cmd.name, p.args[cmd.maxArgs])
	}
	if err != nil {
		return err
	}
	if *p.str["help"] == "true" {
		return a.printHelp(cmd)
	}
	return cmd.run(ctx, a, p)
}

func lookup(name string) *command {
	for _, c := range commands() {
		if c.name == name || slices.Contains(c.aliases, name) {
			return &c
		}
	}
	return nil
}

// parseFlags parses args against specs (plus --help for commands). Both
// "-x" and "--long" spellings work, and "--long=value".
func parseFlags(cmd string, specs []flagSpec, args []string, global bool) (*parsed, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	p := &parsed{str: map[string]*string{}, list: map[string]*listValue{}}
	if !global {
		specs = append([]flagSpec{{long: "help", short: "h"}}, specs...)
	}
	for _, s := range specs {
		names := []string{s.long}
		if s.short != "" {
			names = append(names, s.short)
		}
		switch {
		case s.repeat:
			l := &listValue{}
			p.list[s.long] = l
			for _, n := range names {
				fs.Var(l, n, s.help)
			}
		case s.arg == "":
			v := new(bool)
			sv := new(string)
			p.str[s.long] = sv
			for _, n := range names {
				fs.Var(boolFlag{v, sv}, n, s.help)
			}
		default:
			v := new(string)
			p.str[s.long] = v
			for _, n := range names {
				fs.StringVar(v, n, "", s.help)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		where := ""
		if cmd != "" {
			where = cmd + ": "
		}
		return nil, usagef("%s%s", where, strings.TrimPrefix(err.Error(), "flag provided but not defined: "))
	}
	p.args = fs.Args()
	for _, s := range specs {
		if len(s.values) > 0 && s.arg != "" {
			if v := *p.str[s.long]; v != "" && !slices.Contains(s.values, v) {
				return nil, usagef("--%s: %q is not one of %s", s.long, v, strings.Join(s.values, ", "))
			}
		}
	}
	return p, nil
}

// boolFlag is a boolean flag that records "true" in a string.
type boolFlag struct {
	b *bool
	s *string
}

func (f boolFlag) String() string {
	if f.s == nil {
		return ""
	}
	return *f.s
}
func (f boolFlag) IsBoolFlag() bool { return true }
func (f boolFlag) Set(v string) error {
	switch v {
	case "true", "1", "":
		*f.b, *f.s = true, "true"
	case "false", "0":
		*f.b, *f.s = false, ""
	default:
		return fmt.Errorf("invalid boolean %q", v)
	}
	return nil
}

// printHelp prints the overview (cmd nil) or a command's help to stdout.
func (a *app) printHelp(cmd *command) error {
	w := a.stdout
	name := build.ShortName
	if cmd == nil {
		fmt.Fprintf(w, "Usage: %s [--help] [--version] COMMAND [OPTIONS]\n\n", name)
		fmt.Fprintln(w, wrap(overview(), 78, ""))
		fmt.Fprintf(w, "\nCommands:\n")
		for _, c := range commands() {
			if c.hidden {
				continue
			}
			label := c.name
			if len(c.aliases) > 0 {
				label += " (" + strings.Join(c.aliases, ", ") + ")"
			}
			fmt.Fprintf(w, "  %-25s %s\n", label, c.summary)
		}
		fmt.Fprintf(w, "\nOptions:\n")
		printFlags(w, globalFlags)
		fmt.Fprintf(w, "\nRun '%s COMMAND --help' for the options of a command, and 'man %s' for more.\n", name, name)
		return nil
	}
	fmt.Fprintf(w, "Usage: %s\n\n", synopsis(cmd))
	if len(cmd.aliases) > 0 {
		fmt.Fprintf(w, "Alias: %s\n\n", strings.Join(cmd.aliases, ", "))
	}
	for i, para := range strings.Split(cmd.desc, "\n\n") {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, wrap(para, 78, ""))
	}
	fmt.Fprintf(w, "\nOptions:\n")
	printFlags(w, append(slices.Clone(cmd.flags), flagSpec{long: "help", short: "h", help: "Show this help and exit."}))
	return nil
}

func synopsis(cmd *command) string {
	s := build.ShortName + " " + cmd.name
	for _, f := range cmd.flags {
		if f.hidden {
			continue
		}
		s += " [" + flagLabel(f) + "]"
		if f.repeat {
			s += "..."
		}
	}
	if cmd.args != "" {
		s += " " + cmd.args
	}
	return s
}

func flagLabel(f flagSpec) string {
	s := "--" + f.long
	if f.arg != "" {
		s += " " + f.arg
	}
	return s
}

func printFlags(w io.Writer, flags []flagSpec) {
	for _, f := range flags {
		if f.hidden {
			continue
		}
		label := flagLabel(f)
		if f.short != "" {
			label = "-" + f.short + ", " + label
		} else {
			label = "    " + label
		}
		help := f.help
		if len(f.values) > 0 {
			help += " One of: " + strings.Join(f.values, ", ") + "."
		}
		if f.repeat {
			help += " May be repeated."
		}
		if len(label) > 28 {
			fmt.Fprintf(w, "  %s\n  %-28s %s\n", label, "", wrap(help, 48, strings.Repeat(" ", 31)))
		} else {
			fmt.Fprintf(w, "  %-28s %s\n", label, wrap(help, 48, strings.Repeat(" ", 31)))
		}
	}
}

// wrap fills text to width columns, indenting continuation lines.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	col := 0
	for i, word := range strings.Fields(text) {
		if i > 0 {
			if col+1+len(word) > width {
				b.WriteString("\n" + indent)
				col = 0
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}
