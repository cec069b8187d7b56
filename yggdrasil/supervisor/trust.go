//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ygglab/yggdrasil/yggdrasil/fileperm"
)

// The trust rule: which worker files yggd agrees to run.
//
// Threat model. yggd runs its workers as its own user, which is root in
// production. Trusted: root and yggd's effective user, nobody else; every
// other local user is an attacker, members of a file's group included. An
// attacker gets a program of their choice run by yggd if they can
//
//  1. create an entry in the worker directory (drop "pwn-worker"),
//  2. write a worker file, or chmod it (its owner can),
//  3. rename, replace or chmod any directory or symbolic link that the path
//     of a worker goes through: the worker directory, its ancestors, and
//     each link and the ancestors of what it points to.
//
// So a worker file is run only if the file that runs is a regular file
// owned by root or yggd's user and writable by neither its group nor
// others, every symbolic link followed to reach it is owned by root or
// yggd's user, and every directory looked up on the way from / is owned by
// root or yggd's user and writable by neither group nor others. The only
// exception is an ancestor (never the worker directory itself) writable by
// others but sticky, like /tmp: there others may add entries but cannot
// rename or remove anybody else's, and what the walk finds there next must
// itself belong to a trusted user. The worker directory gets no such
// exception, since adding an entry to it is the attack.
//
// Group write counts as write for everyone: the group is not trusted. With
// POSIX ACLs the group bits show the ACL mask, so a named user or group
// granted write shows up as group write too.
//
// yggd runs the file by path after this check; the path cannot be changed
// in between by an attacker, because no directory on it is theirs. The
// check is made on every event about the file, on every scan (a chmod or
// chown of the worker directory itself causes one) and again before every
// start.
//
// A worker's settings file (settings.go) can change what a worker does as
// much as its program can (an environment variable such as LD_PRELOAD, or
// a worker that is turned off), so the settings directory follows the
// worker directory's rule and each settings file the worker file's, except
// that it need not be executable.
//
// Not covered: the interpreter named by a script's "#!" line and whatever a
// worker runs in turn; a change to an ancestor while the worker runs, seen
// only at the next event, scan or start; and a descriptor opened for
// writing while the file was loose, which a later chmod does not revoke
// (replace such a file rather than chmod it).

// untrustedError says which file, link or directory breaks the trust rule
// and how to fix it.
type untrustedError struct {
	Path   string // what breaks the rule
	Reason string // "directory /opt/w is writable by others (mode 0777)"
	Fix    string // "chmod go-w /opt/w"
}

func (e *untrustedError) Error() string { return e.Reason }

// maxLinks is how many symbolic links a check follows, as Linux does.
const maxLinks = 40

// checkWorkerDir returns why no file of the worker directory dir may run,
// or nil. dir must be absolute.
func checkWorkerDir(dir string, euid int) error {
	return checkDir("worker directory", dir, euid)
}

// checkDir applies the worker directory's rule to dir, the what ("worker
// directory", "settings directory") of the error text.
func checkDir(what, dir string, euid int) error {
	c := checker{euid: euid, checked: map[string]error{}}
	real, err := c.resolve(dir)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return fmt.Errorf("check %s: %w", what, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("check %s: %s is not a directory", what, real)
	}
	if err := c.owner("directory", real, fi); err != nil {
		return err
	}
	if w := fileperm.Writers(fi); w != "" {
		sticky := ""
		if fi.Mode()&fs.ModeSticky != 0 {
			sticky = "; the " + what + " must not be, sticky or not"
		}
		return &untrustedError{
			Path:   real,
			Reason: fmt.Sprintf("directory %s is writable by %s (mode %s)%s", real, w, fileperm.Mode(fi), sticky),
			Fix:    "chmod go-w " + real,
		}
	}
	return nil
}

// checkWorkerFile returns why the worker file at path must not run, or nil.
// path must be absolute. It checks the file that path resolves to, the
// links followed and the directories on the way, but not the worker
// directory's stricter rule: see checkWorkerDir.
func checkWorkerFile(path string, euid int) error {
	return checkFile("worker file", path, euid)
}

// checkFile applies the worker file's rule to path, the what ("worker
// file", "settings file") of the error text.
func checkFile(what, path string, euid int) error {
	c := checker{euid: euid, checked: map[string]error{}}
	real, err := c.resolve(path)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return fmt.Errorf("check %s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("check %s: %s is not a regular file", what, real)
	}
	if err := c.owner("file", real, fi); err != nil {
		return err
	}
	if w := fileperm.Writers(fi); w != "" {
		return &untrustedError{
			Path:   real,
			Reason: fmt.Sprintf("file %s is writable by %s (mode %s)", real, w, fileperm.Mode(fi)),
			Fix:    "chmod go-w " + real,
		}
	}
	return nil
}

// checkWorker applies the whole rule to the file name of the worker
// directory dir.
func checkWorker(dir, name string, euid int) error {
	if err := checkWorkerDir(dir, euid); err != nil {
		return err
	}
	return checkWorkerFile(filepath.Join(dir, name), euid)
}

// checker walks paths for one check, remembering the directories it has
// checked.
type checker struct {
	euid    int
	checked map[string]error // by resolved directory path
}

// resolve returns the path that path names once every symbolic link is
// followed, like filepath.EvalSymlinks, checking every directory in which
// it looks a name up (with the ancestor rule) and every link it follows.
func (c *checker) resolve(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("check %s: not an absolute path", path)
	}
	resolved, rest := "/", path
	links := 0
	for rest != "" {
		var name string
		name, rest, _ = strings.Cut(rest, "/")
		if name == "" || name == "." {
			continue
		}
		if err := c.ancestor(resolved); err != nil {
			return "", err
		}
		if name == ".." {
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", fmt.Errorf("check %s: %w", path, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("check %s: %w", path, syscall.ELOOP)
		}
		// A link cannot be changed, only replaced by whoever may write
		// its directory (checked above), or by its owner in a sticky one.
		if err := c.owner("symbolic link", next, fi); err != nil {
			return "", err
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("check %s: %w", path, err)
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = target + "/" + rest
	}
	return resolved, nil
}

// ancestor checks a directory in which a name is looked up.
func (c *checker) ancestor(dir string) error {
	if err, ok := c.checked[dir]; ok {
		return err
	}
	err := c.checkAncestor(dir)
	c.checked[dir] = err
	return err
}

func (c *checker) checkAncestor(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("check directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("check directory %s: %w", dir, syscall.ENOTDIR)
	}
	if err := c.owner("directory", dir, fi); err != nil {
		return err
	}
	w := fileperm.Writers(fi)
	if w == "" {
		return nil
	}
	// Sticky and owned by a trusted user, like /tmp (1777 root): others
	// may create entries but cannot rename or remove those of anybody
	// else, and what the walk meets there next (directory, link or file)
	// must belong to a trusted user.
	if fi.Mode()&fs.ModeSticky != 0 {
		return nil
	}
	return &untrustedError{
		Path:   dir,
		Reason: fmt.Sprintf("directory %s is writable by %s (mode %s)", dir, w, fileperm.Mode(fi)),
		Fix:    "chmod go-w " + dir,
	}
}

// owner checks that what (a "file", "directory" or "symbolic link") at
// path belongs to root or yggd's user.
func (c *checker) owner(what, path string, fi fs.FileInfo) error {
	uid, ok := fileperm.Owner(fi)
	if !ok {
		return fmt.Errorf("check %s %s: no owner in file info", what, path)
	}
	if uid == 0 || uid == c.euid {
		return nil
	}
	trusted := "root"
	if c.euid != 0 {
		trusted = fmt.Sprintf("root or yggd's user (uid %d)", c.euid)
	}
	chown := "chown root "
	if what == "symbolic link" {
		chown = "chown -h root "
	}
	return &untrustedError{
		Path:   path,
		Reason: fmt.Sprintf("%s %s is owned by uid %d, not %s", what, path, uid, trusted),
		Fix:    chown + path,
	}
}

// isUntrusted reports whether err is a breach of the trust rule (rather
// than, say, a file that vanished during the check).
func isUntrusted(err error) bool {
	var ue *untrustedError
	return errors.As(err, &ue)
}
