package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for user space whatever the kernel's HZ.
const userHZ = 100

// procWatch reads a daemon's figures from /proc.
type procWatch struct {
	pid     int
	logFile string

	mu       sync.Mutex
	cpu0     time.Duration
	sys0     time.Duration
	children map[int]time.Duration // CPU of each child at start
	log0     int64
	rss0     int64
	rssTenth int64
}

// start takes the figures at the start of the measured phase.
func (p *procWatch) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cpu0, _ = ProcCPU(p.pid)
	p.sys0, _ = procSys(p.pid)
	p.children = map[int]time.Duration{}
	for _, c := range Children(p.pid) {
		p.children[c], _ = ProcCPU(c)
	}
	p.log0 = fileSize(p.logFile)
	p.rss0 = statusBytes(p.pid, "VmRSS")
}

func (p *procWatch) sampleTenth() {
	v := statusBytes(p.pid, "VmRSS")
	p.mu.Lock()
	p.rssTenth = v
	p.mu.Unlock()
}

// finish takes the figures at the end.
func (p *procWatch) finish() *ProcStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &ProcStats{Pid: p.pid, RSSStart: p.rss0, RSSTenth: p.rssTenth}
	cpu, _ := ProcCPU(p.pid)
	s.CPU = cpu - p.cpu0
	sys, _ := procSys(p.pid)
	s.CPUSys = sys - p.sys0
	for _, c := range Children(p.pid) {
		s.Workers = append(s.Workers, c)
		now, _ := ProcCPU(c)
		s.WorkerCPU += now - p.children[c] // a child started since counts whole
		s.WorkerPeakRSS = max(s.WorkerPeakRSS, statusBytes(c, "VmHWM"))
	}
	s.RSSEnd = statusBytes(p.pid, "VmRSS")
	s.PeakRSS = statusBytes(p.pid, "VmHWM")
	s.Threads = int(statusValue(p.pid, "Threads"))
	if p.logFile != "" {
		s.LogBytes = fileSize(p.logFile) - p.log0
	}
	return s
}

// idle leaves the daemon alone for d and returns what it and its workers
// used meanwhile, and held at the end.
func (p *procWatch) idle(ctx context.Context, d time.Duration) (*IdleStats, error) {
	type mark struct {
		cpu time.Duration
		ctx int64
	}
	take := func(pid int) mark {
		cpu, _ := ProcCPU(pid)
		return mark{cpu, ctxSwitches(pid)}
	}
	start := map[int]mark{p.pid: take(p.pid)}
	for _, c := range Children(p.pid) {
		start[c] = take(c)
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s := &IdleStats{For: d, RSS: statusBytes(p.pid, "VmRSS"), RSSAnon: statusBytes(p.pid, "RssAnon"),
		Threads: int(statusValue(p.pid, "Threads"))}
	end := take(p.pid)
	s.CPU, s.CtxSwitches = end.cpu-start[p.pid].cpu, end.ctx-start[p.pid].ctx
	for _, c := range Children(p.pid) {
		m := take(c)
		s.WorkerCPU += m.cpu - start[c].cpu // a child started since counts whole
		s.WorkerCtxSwitches += m.ctx - start[c].ctx
		s.WorkerRSS += statusBytes(c, "VmRSS")
		s.WorkerThreads += int(statusValue(c, "Threads"))
	}
	return s, nil
}

// ProcCPU returns the user and system time of pid (all its threads, alive
// or gone, but not its children).
func ProcCPU(pid int) (time.Duration, error) {
	f, err := procStatFields(pid)
	if err != nil {
		return 0, err
	}
	// After "pid (comm) ", fields from 3 on: utime is 14, stime 15.
	ut, _ := strconv.ParseInt(f[14-3], 10, 64)
	st, _ := strconv.ParseInt(f[15-3], 10, 64)
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// procSys returns the system time of pid (the kernel's work for it:
// socket reads and writes, and on loopback much of the receiving side's
// protocol processing too).
func procSys(pid int) (time.Duration, error) {
	f, err := procStatFields(pid)
	if err != nil {
		return 0, err
	}
	st, _ := strconv.ParseInt(f[15-3], 10, 64)
	return time.Duration(st) * time.Second / userHZ, nil
}

// procStatFields returns the fields of /proc/pid/stat after the command
// name (which may hold spaces): field 3 (state) is at index 0.
func procStatFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// Children returns the pids whose parent is pid.
func Children(pid int) []int {
	var out []int
	// /proc/<pid>/task/<tid>/children lists the children of each thread.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Alive reports whether pid is a live process (not gone, not a zombie).
func Alive(pid int) bool {
	f, err := procStatFields(pid)
	return err == nil && f[0] != "Z" && f[0] != "X"
}

// statusBytes returns a "kB" line of /proc/pid/status in bytes.
func statusBytes(pid int, key string) int64 { return statusValue(pid, key) * 1024 }

// ctxSwitches returns the context switches of every thread of pid alive
// now, voluntary or not (the process's status has its main thread's only).
func ctxSwitches(pid int) int64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n int64
	for _, t := range tasks {
		f := fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name())
		n += fileStatusValue(f, "voluntary_ctxt_switches") + fileStatusValue(f, "nonvoluntary_ctxt_switches")
	}
	return n
}

func statusValue(pid int, key string) int64 {
	return fileStatusValue(fmt.Sprintf("/proc/%d/status", pid), key)
}

func fileStatusValue(name, key string) int64 {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func fileSize(name string) int64 {
	if name == "" {
		return 0
	}
	fi, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return fi.Size()
}
