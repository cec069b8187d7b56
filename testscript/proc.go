package testscript

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	goscript "github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"
)

// procCommands returns the commands that look at a background program's
// resource use through /proc.
func procCommands() map[string]command {
	return map[string]command{
		"proc-cpu": {
			usage:     "proc-cpu [-max percent] program",
			negatable: true,
			run:       cmdProcCPU,
		},
		"proc-mem": {
			usage:     "proc-mem [-max MiB] program",
			negatable: true,
			run:       cmdProcMem,
		},
	}
}

// cmdProcMem prints the resident memory of a background program started
// as "exec program ... &", now and at its peak (VmHWM). With -max it fails
// when the peak is above max MiB.
func cmdProcMem(ts *goscript.TestScript, args []string) error {
	program, pid, maxMiB, err := procArgs(ts, "proc-mem", args)
	if err != nil {
		return err
	}
	st, err := readStatus(pid)
	if err != nil {
		return err
	}
	peak := float64(st.peakKiB) / 1024
	fmt.Fprintf(ts.Stdout(), "rss=%.1fMiB peak=%.1fMiB\n", float64(st.rssKiB)/1024, peak)
	if maxMiB >= 0 && peak > maxMiB {
		return fmt.Errorf("%s peaked at %.1f MiB resident, more than %g MiB", program, peak, maxMiB)
	}
	return nil
}

// cmdProcCPU prints the CPU time a background program started as
// "exec program ... &" has used since it started, its own and that of the
// children it has reaped, and the share of one core that is over its life.
// With -max it fails when that share is above percent.
func cmdProcCPU(ts *goscript.TestScript, args []string) error {
	program, pid, maxPercent, err := procArgs(ts, "proc-cpu", args)
	if err != nil {
		return err
	}
	u, err := readCPU(pid)
	if err != nil {
		return err
	}
	percent := 100 * u.cpu.Seconds() / u.elapsed.Seconds()
	fmt.Fprintf(ts.Stdout(), "cpu=%v elapsed=%v share=%.1f%%\n",
		u.cpu.Round(time.Millisecond), u.elapsed.Round(time.Millisecond), percent)
	if maxPercent >= 0 && percent > maxPercent {
		return fmt.Errorf("%s used %v of CPU in %v (%.1f%% of a core), more than %g%%",
			program, u.cpu.Round(time.Millisecond), u.elapsed.Round(time.Millisecond), percent, maxPercent)
	}
	return nil
}

// procArgs parses "[-max n] program" for the command name: the program,
// the pid of its running background process, and n (-1 without -max).
func procArgs(ts *goscript.TestScript, name string, args []string) (program string, pid int, limit float64, err error) {
	limit = -1
	args, err = flags(name, args, func(fs *flag.FlagSet) { fs.Float64Var(&limit, "max", -1, "") })
	if err != nil {
		return "", 0, 0, err
	}
	if len(args) != 1 {
		return "", 0, 0, ErrUsage
	}
	pid, err = backgroundPid(ts, args[0])
	return args[0], pid, limit, err
}

// backgroundPid returns the pid of the running background program started
// as "exec program ... &" (through "bash -c 'exec program ...'" too).
func backgroundPid(ts *goscript.TestScript, program string) (int, error) {
	for _, cmd := range ts.BackgroundCmds() {
		if cmd.Process == nil || cmd.ProcessState != nil {
			continue
		}
		if filepath.Base(cmd.Args[0]) == program || procName(cmd.Process.Pid) == program {
			return cmd.Process.Pid, nil
		}
	}
	return 0, fmt.Errorf("no background %s running", program)
}

// procName returns the base name of a process's argv[0].
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	argv0, _, _ := bytes.Cut(b, []byte{0})
	return filepath.Base(string(argv0))
}

// cpuUse is what /proc/<pid>/stat says of a process's CPU time.
type cpuUse struct {
	cpu     time.Duration // user + system, its own and its reaped children's
	elapsed time.Duration // since it started
}

func readCPU(pid int) (cpuUse, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuUse{}, fmt.Errorf("read cpu use: %w", err)
	}
	// The command name is in parentheses and may hold spaces: fields
	// count from after the last ")". Field 3 (state) is fields[0].
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return cpuUse{}, fmt.Errorf("read cpu use: /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return cpuUse{}, fmt.Errorf("read cpu use: /proc/%d/stat: %d fields", pid, len(fields))
	}
	field := func(n int) (int64, error) { return strconv.ParseInt(fields[n-3], 10, 64) }
	var ticks int64
	for _, n := range []int{14, 15, 16, 17} { // utime, stime, cutime, cstime
		v, err := field(n)
		if err != nil {
			return cpuUse{}, fmt.Errorf("read cpu use: /proc/%d/stat field %d: %w", pid, n, err)
		}
		ticks += v
	}
	start, err := field(22) // starttime, in ticks after boot
	if err != nil {
		return cpuUse{}, fmt.Errorf("read cpu use: /proc/%d/stat field 22: %w", pid, err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return cpuUse{}, fmt.Errorf("read cpu use: boot time: %w", err)
	}
	const hz = 100 // USER_HZ, the unit of /proc/<pid>/stat on Linux
	tick := time.Second / hz
	return cpuUse{
		cpu:     time.Duration(ticks) * tick,
		elapsed: time.Duration(ts.Nano()) - time.Duration(start)*tick,
	}, nil
}

// procStatus is a process's resource use for the soak: resident memory,
// threads and open file descriptors.
type procStatus struct {
	rssKiB  int64
	peakKiB int64 // VmHWM
	threads int
	fds     int
}

func (p procStatus) String() string {
	return fmt.Sprintf("rss=%.1fMiB threads=%d fds=%d", float64(p.rssKiB)/1024, p.threads, p.fds)
}

func readStatus(pid int) (procStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStatus{}, fmt.Errorf("read process status: %w", err)
	}
	defer f.Close()
	var st procStatus
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		switch key {
		case "VmRSS":
			st.rssKiB, _ = strconv.ParseInt(fields[0], 10, 64)
		case "VmHWM":
			st.peakKiB, _ = strconv.ParseInt(fields[0], 10, 64)
		case "Threads":
			st.threads, _ = strconv.Atoi(fields[0])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return procStatus{}, fmt.Errorf("read process status: %w", err)
	}
	st.fds = len(fds)
	return st, nil
}
