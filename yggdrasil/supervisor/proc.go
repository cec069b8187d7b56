//go:build linux

package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// parentPID returns the parent of pid as /proc/<pid>/stat says.
func parentPID(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read parent of %d: %w", pid, err)
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses,
	// so the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("read parent of %d: malformed stat %q", pid, b)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("read parent of %d: malformed stat %q", pid, b)
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, fmt.Errorf("read parent of %d: %w", pid, err)
	}
	return ppid, nil
}
