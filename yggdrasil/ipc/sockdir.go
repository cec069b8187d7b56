package ipc

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// WorkersDir is the directory under the runtime directory that holds the
// dispatcher's socket and the workers' sockets, and is the workers' working
// directory. Only yggd's user may enter it (0700): no other local user can
// reach any of the sockets, whatever their own permissions.
const WorkersDir = "workers"

// dispatcherSock is the dispatcher's socket in WorkersDir.
const dispatcherSock = "dispatcher.sock"

// prepareDir makes sure runtimeDir/workers exists as a directory that only
// yggd's user can enter, that no other yggd serves there, and that no stale
// socket of an earlier run is left in it. It returns its path.
func prepareDir(runtimeDir string, uid int) (string, error) {
	if runtimeDir == "" {
		return "", errors.New("prepare runtime dir: no directory configured")
	}
	runtimeDir, err := filepath.Abs(runtimeDir)
	if err != nil {
		return "", fmt.Errorf("prepare runtime dir: %w", err)
	}
	if err := os.MkdirAll(runtimeDir, 0o755); err != nil {
		return "", fmt.Errorf("prepare runtime dir: %w", err)
	}
	if err := checkDir(runtimeDir, uid, 0o022); err != nil {
		return "", fmt.Errorf("prepare runtime dir: %w", err)
	}
	dir := filepath.Join(runtimeDir, WorkersDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("prepare worker socket dir: %w", err)
	}
	// Owned by someone else: planted. Any other mode: tighten it, it is ours.
	if err := checkDir(dir, uid, 0); err != nil {
		return "", fmt.Errorf("prepare worker socket dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("prepare worker socket dir: %w", err)
	}
	if err := removeStale(dir); err != nil {
		return "", fmt.Errorf("prepare worker socket dir: %w", err)
	}
	return dir, nil
}

// checkDir checks that dir is a real directory (not a symlink) owned by uid
// and with none of the mode bits in deny.
func checkDir(dir string, uid int, deny fs.FileMode) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (%s)", dir, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information", dir)
	}
	if int(st.Uid) != uid {
		return fmt.Errorf("%s is owned by uid %d, not by yggd's uid %d: remove it", dir, st.Uid, uid)
	}
	if fi.Mode().Perm()&deny != 0 {
		return fmt.Errorf("%s has mode %#o, writable by others: chmod go-w it", dir, fi.Mode().Perm())
	}
	return nil
}

// removeStale refuses a directory in which a dispatcher answers (another
// yggd runs with the same runtime directory), and otherwise removes the
// sockets left by an earlier run: their workers died with it.
func removeStale(dir string) error {
	c, err := net.DialTimeout("unix", filepath.Join(dir, dispatcherSock), time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another yggd serves %s: give each yggd its own runtime-dir", filepath.Join(dir, dispatcherSock))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}
