package testscript

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"
)

// coreCommands returns the commands about processes and files.
func coreCommands() map[string]command {
	return map[string]command{
		"install-worker": {
			usage: "install-worker [-delay d] program [name]",
			run:   installWorker,
		},
		"signal": {
			usage: "signal SIG program",
			run:   sendSignal,
		},
		"gen-data": {
			usage: "gen-data [-size n] [-metadata-keys n] id directive file",
			run:   genData,
		},
		"env-json": {
			usage: "env-json file key=VAR...",
			run:   envJSON,
		},
		"signal-worker": {
			usage: "signal-worker SIG name",
			run:   signalWorker,
		},
		"waitfile": {
			usage:     "waitfile [-timeout d] path",
			negatable: true,
			run:       waitFile,
		},
		"waitlog": {
			usage:     "waitlog [-timeout d] [-count n] file regexp",
			negatable: true,
			run:       waitLog,
		},
		"waitsock": {
			usage:     "waitsock [-timeout d] path",
			negatable: true,
			run:       waitSock,
		},
		"workers-running": {
			usage: "workers-running [-timeout d] n",
			run:   workersRunning,
		},
	}
}

// flags parses a command's flags; a bad flag is a usage error.
func flags(name string, args []string, define func(fs *flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	define(fs)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// installWorker puts a program of the test binary (found on $PATH) into
// $YGG_WORKER_DIR. Under its own name it is a hard link (or a copy); under
// another name, or with -delay, it is a bash wrapper that keeps argv[0] so
// that the test binary still runs the right program.
func installWorker(ts *goscript.TestScript, args []string) error {
	var delay time.Duration
	args, err := flags("install-worker", args, func(fs *flag.FlagSet) { fs.DurationVar(&delay, "delay", 0, "") })
	if err != nil {
		return err
	}
	if len(args) < 1 || len(args) > 2 {
		return ErrUsage
	}
	program, name := args[0], args[0]
	if len(args) == 2 {
		name = args[1]
	}
	src, err := lookPath(ts, program)
	if err != nil {
		return err
	}
	dir := ts.Getenv("YGG_WORKER_DIR")
	dst := filepath.Join(dir, name)
	// Write under a temporary name and rename, so that yggd's watcher sees
	// a complete file appear at once.
	tmp := filepath.Join(dir, "."+name+".tmp")
	if name == program && delay == 0 {
		// A link shares the mode of the test binary, which a umask of 002
		// leaves group-writable: yggd would refuse it. Copy it then.
		if fi, err := os.Stat(src); err != nil || fi.Mode().Perm()&0o022 != 0 || os.Link(src, tmp) != nil {
			if err := copyFile(src, tmp); err != nil {
				return err
			}
		}
	} else {
		// argv[0] = <this file>/<program>: the test binary dispatches on
		// its base name, and workers-running finds it under the dir.
		script := fmt.Sprintf("#!/bin/bash\nsleep %g\nexec -a \"$0/%s\" %s \"$@\"\n", delay.Seconds(), program, src)
		if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dst)
}

func lookPath(ts *goscript.TestScript, program string) (string, error) {
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		p := filepath.Join(dir, program)
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q not found on $PATH", program)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// sendSignal sends a signal by name (TERM, HUP, KILL, INT, USR1, STOP,
// CONT) to the background programs started as "exec program ... &".
func sendSignal(ts *goscript.TestScript, args []string) error {
	if len(args) != 2 {
		return ErrUsage
	}
	sig, err := signalByName(args[0])
	if err != nil {
		return err
	}
	n := 0
	for _, cmd := range ts.BackgroundCmds() {
		if cmd.Process == nil || filepath.Base(cmd.Args[0]) != args[1] || cmd.ProcessState != nil {
			continue
		}
		if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal %s to %s (pid %d): %w", args[0], args[1], cmd.Process.Pid, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no background %s running", args[1])
	}
	return nil
}

// envJSON sets environment variables from the top-level string fields of
// a JSON object in a file (for example the addresses yggsim serve writes).
func envJSON(ts *goscript.TestScript, args []string) error {
	if len(args) < 2 {
		return ErrUsage
	}
	b, err := os.ReadFile(ts.MkAbs(args[0]))
	if err != nil {
		return err
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	for _, kv := range args[1:] {
		key, name, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("%w: %q is not key=VAR", ErrUsage, kv)
		}
		v, ok := fields[key].(string)
		if !ok {
			return fmt.Errorf("%s has no string field %q", args[0], key)
		}
		ts.Setenv(name, v)
	}
	return nil
}

// signalWorker sends a signal by name to the worker processes started from
// $YGG_WORKER_DIR/name, and prints their pids.
func signalWorker(ts *goscript.TestScript, args []string) error {
	if len(args) != 2 {
		return ErrUsage
	}
	sig, err := signalByName(args[0])
	if err != nil {
		return err
	}
	pids := workerPids(ts.Getenv("YGG_WORKER_DIR"), args[1])
	if len(pids) == 0 {
		return fmt.Errorf("no worker %s running", args[1])
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil {
			return fmt.Errorf("signal %s to worker %s (pid %d): %w", args[0], args[1], pid, err)
		}
	}
	return nil
}

func signalByName(name string) (syscall.Signal, error) {
	sig, ok := map[string]syscall.Signal{
		"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "HUP": syscall.SIGHUP,
		"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
	}[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
	if !ok {
		return 0, fmt.Errorf("%w: unknown signal %q", ErrUsage, name)
	}
	return sig, nil
}

// genData writes a data message whose content is a JSON string of size
// bytes, and whose metadata has keys k0, k1, ... (all "v"), for payloads too
// large to keep in an archive.
func genData(ts *goscript.TestScript, args []string) error {
	size, keys := 0, 0
	args, err := flags("gen-data", args, func(fs *flag.FlagSet) {
		fs.IntVar(&size, "size", 0, "")
		fs.IntVar(&keys, "metadata-keys", 0, "")
	})
	if err != nil {
		return err
	}
	if len(args) != 3 || size < 0 || keys < 0 {
		return ErrUsage
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"type":"data","message_id":%q,"version":1,"directive":%q,`, args[0], args[1])
	if keys > 0 {
		b.WriteString(`"metadata":{`)
		for i := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"k%d":"v"`, i)
		}
		b.WriteString(`},`)
	}
	b.WriteString(`"content":"`)
	b.WriteString(strings.Repeat("x", size))
	b.WriteString(`"}`)
	return os.WriteFile(ts.MkAbs(args[2]), []byte(b.String()), 0o644)
}

// poll calls check until it returns nil or the timeout passes, and returns
// check's last error.
func poll(ts *goscript.TestScript, timeout time.Duration, check func() error) error {
	ctx := scriptContext(ts)
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFile waits for a file to exist; negated, it waits for it to be gone.
func waitFile(ts *goscript.TestScript, args []string) error {
	timeout := 10 * time.Second
	args, err := flags("waitfile", args, func(fs *flag.FlagSet) { fs.DurationVar(&timeout, "timeout", timeout, "") })
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return ErrUsage
	}
	path := ts.MkAbs(args[0])
	return poll(ts, timeout, func() error {
		_, err := os.Stat(path)
		return err
	})
}

// waitLog waits until a line of a log file matches regexp, and prints the
// line. A daemon logs to a file when started as
// "exec bash -c 'exec yggd ... 2>yggd.log' &yggd&".
func waitLog(ts *goscript.TestScript, args []string) error {
	timeout := 10 * time.Second
	count := 1
	args, err := flags("waitlog", args, func(fs *flag.FlagSet) {
		fs.DurationVar(&timeout, "timeout", timeout, "")
		fs.IntVar(&count, "count", count, "")
	})
	if err != nil {
		return err
	}
	if len(args) != 2 || count < 1 {
		return ErrUsage
	}
	re, err := regexp.Compile(args[1])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	path := ts.MkAbs(args[0])
	var line string
	err = poll(ts, timeout, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n := 0
		for l := range strings.Lines(string(b)) {
			if re.MatchString(l) {
				if n++; n == count {
					line = l
					return nil
				}
			}
		}
		return fmt.Errorf("%d lines of %s match %q, want %d", n, args[0], args[1], count)
	})
	if err == nil {
		io.WriteString(ts.Stdout(), line)
	}
	return err
}

// waitSock waits for a UNIX socket (a path, or @name for the abstract
// namespace) to accept a connection.
func waitSock(ts *goscript.TestScript, args []string) error {
	timeout := 10 * time.Second
	args, err := flags("waitsock", args, func(fs *flag.FlagSet) { fs.DurationVar(&timeout, "timeout", timeout, "") })
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return ErrUsage
	}
	addr := args[0]
	if !strings.HasPrefix(addr, "@") {
		addr = ts.MkAbs(addr)
	}
	return poll(ts, timeout, func() error {
		c, err := net.Dial("unix", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// workersRunning waits until exactly n processes run from
// $YGG_WORKER_DIR (by their argv[0] or their executable), and prints
// their names.
func workersRunning(ts *goscript.TestScript, args []string) error {
	timeout := 10 * time.Second
	args, err := flags("workers-running", args, func(fs *flag.FlagSet) { fs.DurationVar(&timeout, "timeout", timeout, "") })
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return ErrUsage
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	dir := ts.Getenv("YGG_WORKER_DIR")
	var names []string
	err = poll(ts, timeout, func() error {
		names = processesIn(dir)
		if len(names) != want {
			return fmt.Errorf("%d worker processes running (%s), want %d", len(names), strings.Join(names, " "), want)
		}
		return nil
	})
	if err == nil {
		fmt.Fprintln(ts.Stdout(), strings.Join(names, "\n"))
	}
	return err
}

// workerPids returns the pids of the processes started from dir/name.
func workerPids(dir, name string) []int {
	var pids []int
	for _, p := range processes(dir) {
		if p.name == name || strings.HasPrefix(p.name, name+"/") {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

// processesIn lists the names of the processes started from dir.
func processesIn(dir string) []string {
	var names []string
	for _, p := range processes(dir) {
		names = append(names, p.name)
	}
	return names
}

type process struct {
	pid  int
	name string // path below dir
}

// processes lists the processes whose command line starts with a path in
// dir (the wrappers of install-worker run "bash <dir>/name", then
// "<dir>/name/<program>").
func processes(dir string) []process {
	entries, _ := os.ReadDir("/proc")
	var procs []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(string(cmdline), "\x00")
		if len(argv) > 2 {
			argv = argv[:2] // the program, or bash and its script
		}
		for _, arg := range argv {
			if strings.HasPrefix(arg, dir+"/") {
				procs = append(procs, process{pid, strings.TrimPrefix(arg, dir+"/")})
				break
			}
		}
	}
	return procs
}
