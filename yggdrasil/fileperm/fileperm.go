// Package fileperm reads what yggd's trust rules need from a file's mode
// and owner, and words it for a log line: who owns it, who besides the
// owner may write it, and its mode as chmod takes it.
package fileperm

import (
	"fmt"
	"io/fs"
	"syscall"
)

// Owner returns the uid that owns fi.
func Owner(fi fs.FileInfo) (uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// Writers says who besides the owner may write fi: "", "group", "others"
// or "group and others".
func Writers(fi fs.FileInfo) string {
	perm := fi.Mode().Perm()
	switch {
	case perm&0o022 == 0o022:
		return "group and others"
	case perm&0o020 != 0:
		return "group"
	case perm&0o002 != 0:
		return "others"
	}
	return ""
}

// Mode formats fi's permission bits in octal with setuid, setgid and
// sticky, as chmod takes them: "0755", "1777".
func Mode(fi fs.FileInfo) string {
	m := uint32(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return fmt.Sprintf("%04o", m)
}
