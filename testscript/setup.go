package testscript

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"
)

// ErrUsage marks a command called with the wrong arguments. It is always
// fatal, negated or not.
var ErrUsage = errors.New("usage")

// command is one of our script commands.
type command struct {
	usage     string // "name args", for errors and the manual
	negatable bool   // whether "! name" makes sense
	run       func(ts *goscript.TestScript, args []string) error
}

// commandSets lists the files' command families. Each returns its commands
// by name; Setup refuses duplicates.
var commandSets = []func() map[string]command{
	coreCommands,
	controlCommands,
	brokerCommands,
	aclCommands,
	dbusCommands,
	contentCommands,
	tlsCommands,
	certInfoCommands,
	procCommands,
	genCommands,
	soakCommands,
	killCommands,
	notifyCommands,
}

type ctxKey struct{}

// Setup wires our environment, commands and conditions into p, keeping
// whatever Setup, Cmds and Condition p already has. It fails on a command
// name clash.
func Setup(p *goscript.Params) error {
	if p.Cmds == nil {
		p.Cmds = map[string]func(*goscript.TestScript, bool, []string){}
	}
	for _, set := range commandSets {
		for name, c := range set() {
			if _, dup := p.Cmds[name]; dup {
				return fmt.Errorf("testscript setup: command %q defined twice", name)
			}
			p.Cmds[name] = adapt(name, c)
		}
	}
	p.Condition = condition(p.Condition)
	prev := p.Setup
	deadline := p.Deadline
	p.Setup = func(env *goscript.Env) error {
		if prev != nil {
			if err := prev(env); err != nil {
				return err
			}
		}
		return setupEnv(env, deadline)
	}
	return nil
}

// setupEnv creates the short socket directory and the per-script paths, and
// a context bounded by the test deadline for the wait commands.
func setupEnv(env *goscript.Env, deadline time.Time) error {
	// sun_path holds about 108 bytes: sockets live in a short directory
	// outside $WORK.
	sock, err := os.MkdirTemp("", "ygg")
	if err != nil {
		return fmt.Errorf("make socket dir: %w", err)
	}
	env.Defer(func() { os.RemoveAll(sock) })
	env.Setenv("YGG_SOCKET_DIR", sock)
	// yggd's runtime directory, as systemd would give it: the worker
	// sockets go in its subdirectory "workers".
	env.Setenv("RUNTIME_DIRECTORY", sock)
	// yggd refuses workers below a directory that group or others may
	// write; $WORK was made under the caller's umask, which may be 002.
	if err := os.Chmod(env.WorkDir, 0o755); err != nil {
		return fmt.Errorf("make $WORK safe for workers: %w", err)
	}
	for name, dir := range map[string]string{
		"YGG_WORKER_DIR": "workers",
		"YGG_STATE_DIR":  "state",
		"YGG_CONFIG_DIR": "etc",
	} {
		path := filepath.Join(env.WorkDir, dir)
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("make %s: %w", dir, err)
		}
		env.Setenv(name, path)
	}
	// yggd's state directory (its journal), as systemd would give it.
	env.Setenv("STATE_DIRECTORY", env.Getenv("YGG_STATE_DIR"))
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-5*time.Second))
	}
	env.Defer(cancel)
	env.Values[ctxKey{}] = ctx
	return nil
}

// scriptContext returns the context bounded by the test deadline.
func scriptContext(ts *goscript.TestScript) context.Context {
	if ctx, ok := ts.Value(ctxKey{}).(context.Context); ok {
		return ctx
	}
	return context.Background()
}

// Command turns a command that returns an error into testscript's
// negation semantics, as this package's own commands are: an error
// wrapping ErrUsage prints usage, and a command that is not negatable
// refuses "!". run may ask Negated whether it was called as "! name".
func Command(name, usage string, negatable bool, run func(ts *goscript.TestScript, args []string) error) func(*goscript.TestScript, bool, []string) {
	return adapt(name, command{usage: usage, negatable: negatable, run: run})
}

// Negated reports whether the command running on ts was called as "! name".
func Negated(ts *goscript.TestScript) bool {
	neg, _ := negated.Load(ts)
	b, _ := neg.(bool)
	return b
}

// adapt turns a command that returns an error into testscript's negation
// semantics, once for all commands.
func adapt(name string, c command) func(*goscript.TestScript, bool, []string) {
	return func(ts *goscript.TestScript, neg bool, args []string) {
		if neg && !c.negatable {
			ts.Fatalf("%s cannot be negated", name)
		}
		negated.Store(ts, neg)
		err := c.run(ts, args)
		negated.Delete(ts)
		switch {
		case errors.Is(err, ErrUsage):
			ts.Fatalf("usage: %s", c.usage)
		case err != nil && !neg:
			ts.Fatalf("%s: %v", name, err)
		case err == nil && neg:
			ts.Fatalf("%s: unexpected success", name)
		case err != nil && neg:
			ts.Logf("%s failed as expected: %v", name, err)
		}
	}
}

// negated records, while a command runs, whether it was called as "! cmd".
var negated sync.Map // *goscript.TestScript → bool

// isNegated reports whether the running command was called as "! cmd", for
// commands whose defaults differ (a negated wait watches for less long).
func isNegated(ts *goscript.TestScript) bool {
	v, _ := negated.Load(ts)
	b, _ := v.(bool)
	return b
}

// Commands returns the usage line of every command, sorted, for the manual
// and for the test that keeps doc.go in step with the code.
func Commands() []string {
	var out []string
	for _, set := range commandSets {
		for _, c := range set() {
			out = append(out, c.usage)
		}
	}
	sort.Strings(out)
	return out
}
