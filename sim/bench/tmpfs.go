package bench

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// yggd with its state directory on tmpfs (SysTmpfs) splits what yggd
// costs from what its disk costs. With one message in flight, every round
// trip waits for two synced writes of yggd's journal, and on a disk whose
// sync takes a fifth to two fifths of ceiling b's whole round trip (207
// to 218 µs here, against 550 to 950 µs), no durable yggd comes near b. On
// tmpfs a sync returns at once, while yggd runs the same code and writes
// the same records: its figures beside b are yggd's own cost; yggd's
// beside them, the price of its disk; bj's, the least any pipeline would
// pay for that disk. It is a measurement, not a way to run yggd: a
// journal on tmpfs does not survive the host.

// tmpfsSkip returns why SysTmpfs cannot run, "" when m.Tmpfs (default
// /dev/shm) is a tmpfs directory, which it then makes absolute.
func (m *Matrix) tmpfsSkip() string {
	if m.Tmpfs == "" {
		m.Tmpfs = "/dev/shm"
	}
	dir, err := filepath.Abs(m.Tmpfs)
	if err != nil {
		return fmt.Sprintf("no tmpfs for its state: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Sprintf("no tmpfs for its state: %v", err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		return fmt.Sprintf("no tmpfs for its state: %s is not tmpfs", dir)
	}
	m.Tmpfs = dir
	return ""
}
