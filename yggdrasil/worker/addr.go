package worker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// dialAddress turns the dispatcher's address (YGG_SOCKET_ADDR, in one of
// the gRPC forms for UNIX sockets) into the address net.Dial takes for
// "unix", where a leading '@' means the abstract namespace:
//
//	unix:/abs/path, unix:///abs/path  /abs/path
//	unix:relative                     relative (to the working directory)
//	unix:@name, unix-abstract:name    @name
func dialAddress(target string) (string, error) {
	var addr string
	switch {
	case strings.HasPrefix(target, "unix-abstract:"):
		addr = "@" + strings.TrimPrefix(target, "unix-abstract:")
		if addr == "@" {
			return "", fmt.Errorf("dispatcher address %q: empty abstract name", target)
		}
		return addr, nil
	case strings.HasPrefix(target, "unix://"):
		addr = strings.TrimPrefix(target, "unix://")
		if !strings.HasPrefix(addr, "/") {
			return "", fmt.Errorf("dispatcher address %q: unix:// takes an absolute path", target)
		}
	case strings.HasPrefix(target, "unix:"):
		addr = strings.TrimPrefix(target, "unix:")
	default:
		return "", fmt.Errorf("dispatcher address %q: want unix:PATH, unix:///PATH, unix:@NAME or unix-abstract:NAME", target)
	}
	if addr == "" || addr == "@" {
		return "", fmt.Errorf("dispatcher address %q: empty path", target)
	}
	return addr, nil
}

// listenAddress turns the address that Register returned into the address
// net.Listen takes for "unix". yggd answers either unix:<relative path>,
// resolved against the worker's working directory (dir, if not empty),
// which yggd makes a private directory; or, up to 0.1.x, @<name>, an
// abstract name, which is used as it is. unix://<path> takes an absolute
// path.
func listenAddress(addr, dir string) (string, error) {
	rest, ok := strings.CutPrefix(addr, "unix:")
	switch {
	case !ok:
		rest = addr
	case strings.HasPrefix(rest, "//"):
		rest = strings.TrimPrefix(rest, "//")
		if !strings.HasPrefix(rest, "/") {
			return "", fmt.Errorf("address %q: unix:// takes an absolute path", addr)
		}
	}
	if rest == "" || rest == "@" {
		return "", fmt.Errorf("address %q: empty path", addr)
	}
	if dir != "" && !strings.HasPrefix(rest, "@") && !filepath.IsAbs(rest) {
		rest = filepath.Join(dir, rest)
	}
	return rest, nil
}

// listen listens on a UNIX socket address. A socket file left at a path by
// a worker that did not stop cleanly (SIGKILL) would make listen fail with
// EADDRINUSE, so a socket that nobody answers on is removed first; a live
// socket, or anything that is not a socket, is left for listen to fail on.
// The listener removes its file when it is closed (net.UnixListener unlinks
// on Close), which is how the file goes when the worker stops.
func listen(addr string) (net.Listener, error) {
	if !strings.HasPrefix(addr, "@") {
		if err := removeStale(addr); err != nil {
			return nil, err
		}
	}
	return net.Listen("unix", addr)
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return nil
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}
