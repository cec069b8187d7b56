//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ygglab/yggdrasil/yggdrasil/fileperm"
)

// verdict is whether yggd runs a worker file, and if not, what it logs.
type verdict struct {
	ok  bool
	msg string // the warning logged; "" for a file skipped without one
	err error  // the reason; nil with msg "" for a name that is no file to run (gone, a directory)
	fix string // what to do; the untrusted error's own Fix when err is one
}

// judgeFile applies the rules for one worker file at path, for yggd
// running as euid, except the worker directory's own (checkWorkerDir):
// a regular file (links followed) that the trust rule accepts and that
// euid may execute.
func judgeFile(path string, euid int) verdict {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if li, lerr := os.Lstat(path); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			return verdict{msg: msgNotRegular, err: fmt.Errorf("symbolic link to %s, which does not exist", target),
				fix: "point the link at the worker program, or remove it"}
		}
		return verdict{}
	case err != nil:
		return verdict{msg: "worker file cannot be checked", err: err}
	case fi.IsDir():
		return verdict{}
	case !fi.Mode().IsRegular():
		return verdict{msg: msgNotRegular, err: fmt.Errorf("%s is a %s, not a program", path, fileKind(fi.Mode())),
			fix: "replace it with the worker program, or remove it"}
	}
	if err := checkWorkerFile(path, euid); err != nil {
		var ue *untrustedError
		if !errors.As(err, &ue) {
			return verdict{err: err} // it changed under the check: the next event says more
		}
		return verdict{msg: "worker file refused: another user could change it", err: err, fix: ue.Fix}
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return verdict{msg: "worker file not executable",
			err: fmt.Errorf("check exec permission (mode %s): %w", fileperm.Mode(fi), err), fix: "chmod +x " + path}
	}
	return verdict{ok: true}
}

// Refusal says why yggd would not run a worker file, or nothing from a
// worker directory, in the words it logs them, and what to do.
type Refusal struct {
	Message string // what yggd logs: "worker file not executable"
	Reason  string // "check exec permission (mode 0644): permission denied"
	Fix     string // "chmod +x /usr/libexec/yggdrasil/echo-worker"; may be ""
}

func (r *Refusal) Error() string { return r.Message + ": " + r.Reason }

// IsWorkerName reports whether a directory entry of the worker directory
// is meant to be a worker: its name ends in "worker".
func IsWorkerName(name string) bool { return strings.HasSuffix(name, "worker") }

// CheckDir returns why yggd, running as euid, would run nothing from the
// worker directory dir (a *Refusal, or the error that stopped the check),
// or nil. dir is made absolute first.
func CheckDir(dir string, euid int) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("check worker directory: %w", err)
	}
	err = checkWorkerDir(abs, euid)
	var ue *untrustedError
	if errors.As(err, &ue) {
		return &Refusal{Message: "worker directory refused: another user could change it", Reason: ue.Reason, Fix: ue.Fix}
	}
	return err
}

// CheckFile returns why yggd, running as euid, would not run the worker
// file at path (a *Refusal), or nil when it would. skip is true for a name
// that is no file to run (gone, or a directory), which yggd ignores. It
// does not check the worker directory: see CheckDir.
func CheckFile(path string, euid int) (skip bool, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, fmt.Errorf("check worker file: %w", err)
	}
	v := judgeFile(abs, euid)
	switch {
	case v.ok:
		return false, nil
	case v.msg == "" && v.err == nil:
		return true, nil
	case v.msg == "":
		return false, v.err
	}
	return false, &Refusal{Message: v.msg, Reason: v.err.Error(), Fix: v.fix}
}
