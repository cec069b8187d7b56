//go:build linux

package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is the attacker's uid in the tests that need root.
const nobody = 65534

// mustMkdir makes dir with exactly mode perm (in octal, as chmod takes it:
// 01777 is sticky), whatever the umask.
func mustMkdir(t *testing.T, dir string, perm uint32) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(dir, perm); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mustFile writes a worker script at path with exactly mode perm.
func mustFile(t *testing.T, path string, perm os.FileMode) string {
	t.Helper()
	return writeWorkerMode(t, filepath.Dir(path), filepath.Base(path), "exit 0\n", perm)
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustChown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
}

func TestCheckWorker(t *testing.T) {
	tests := []struct {
		name      string
		needsRoot bool // chown to another user
		// setup prepares base and returns the worker directory; the worker
		// file is always "x-worker".
		setup   func(t *testing.T, base string) string
		wantErr string // in the reason; "" means allowed
		wantFix string // the fix, with base written as BASE
	}{
		{
			name: "mode_0755_ok",
			setup: func(t *testing.T, base string) string {
				mustFile(t, filepath.Join(base, "x-worker"), 0o755)
				return base
			},
		},
		{
			name: "mode_0775_refused",
			setup: func(t *testing.T, base string) string {
				mustFile(t, filepath.Join(base, "x-worker"), 0o775)
				return base
			},
			wantErr: "/x-worker is writable by group (mode 0775)",
			wantFix: "chmod go-w BASE/x-worker",
		},
		{
			name: "mode_0757_refused",
			setup: func(t *testing.T, base string) string {
				mustFile(t, filepath.Join(base, "x-worker"), 0o757)
				return base
			},
			wantErr: "/x-worker is writable by others (mode 0757)",
			wantFix: "chmod go-w BASE/x-worker",
		},
		{
			name:      "owner_nobody_refused",
			needsRoot: true,
			setup: func(t *testing.T, base string) string {
				mustChown(t, mustFile(t, filepath.Join(base, "x-worker"), 0o755), nobody)
				return base
			},
			wantErr: "/x-worker is owned by uid 65534, not root",
			wantFix: "chown root BASE/x-worker",
		},
		{
			name: "symlink_to_0777_file_refused",
			setup: func(t *testing.T, base string) string {
				dir := mustMkdir(t, filepath.Join(base, "w"), 0o755)
				target := mustFile(t, filepath.Join(base, "loose"), 0o777)
				mustSymlink(t, target, filepath.Join(dir, "x-worker"))
				return dir
			},
			wantErr: "file " + "BASE/loose is writable by group and others (mode 0777)",
			wantFix: "chmod go-w BASE/loose",
		},
		{
			name: "symlink_to_safe_file_ok",
			setup: func(t *testing.T, base string) string {
				dir := mustMkdir(t, filepath.Join(base, "w"), 0o755)
				mustFile(t, filepath.Join(base, "safe"), 0o755)
				mustSymlink(t, "../safe", filepath.Join(dir, "x-worker"))
				return dir
			},
		},
		{
			name: "symlink_chain_to_safe_file_ok",
			setup: func(t *testing.T, base string) string {
				dir := mustMkdir(t, filepath.Join(base, "w"), 0o755)
				bin := mustMkdir(t, filepath.Join(base, "opt", "bin"), 0o755)
				mustFile(t, filepath.Join(bin, "real"), 0o755)
				mustSymlink(t, "opt/bin", filepath.Join(base, "bin"))
				mustSymlink(t, "../bin/./real", filepath.Join(dir, "x-worker"))
				return dir
			},
		},
		{
			name: "symlink_into_0777_dir_refused",
			setup: func(t *testing.T, base string) string {
				dir := mustMkdir(t, filepath.Join(base, "w"), 0o755)
				open := mustMkdir(t, filepath.Join(base, "open"), 0o777)
				mustFile(t, filepath.Join(open, "real"), 0o755)
				mustSymlink(t, filepath.Join(open, "real"), filepath.Join(dir, "x-worker"))
				return dir
			},
			wantErr: "directory BASE/open is writable by group and others (mode 0777)",
			wantFix: "chmod go-w BASE/open",
		},
		{
			name:      "symlink_owned_by_nobody_refused",
			needsRoot: true,
			setup: func(t *testing.T, base string) string {
				// In a sticky directory its owner could replace it.
				sticky := mustMkdir(t, filepath.Join(base, "sticky"), 0o1777)
				mustFile(t, filepath.Join(base, "safe"), 0o755)
				link := filepath.Join(sticky, "link")
				mustSymlink(t, filepath.Join(base, "safe"), link)
				mustChown(t, link, nobody)
				dir := mustMkdir(t, filepath.Join(base, "w"), 0o755)
				mustSymlink(t, link, filepath.Join(dir, "x-worker"))
				return dir
			},
			wantErr: "symbolic link BASE/sticky/link is owned by uid 65534",
			wantFix: "chown -h root BASE/sticky/link",
		},
		{
			name: "symlink_loop_refused",
			setup: func(t *testing.T, base string) string {
				mustSymlink(t, "x-worker", filepath.Join(base, "x-worker"))
				return base
			},
			wantErr: "too many levels of symbolic links",
		},
		{
			name: "file_in_0777_dir_refused",
			setup: func(t *testing.T, base string) string {
				dir := mustMkdir(t, filepath.Join(base, "w"), 0o777)
				mustFile(t, filepath.Join(dir, "x-worker"), 0o755)
				return dir
			},
			wantErr: "directory BASE/w is writable by group and others (mode 0777)",
			wantFix: "chmod go-w BASE/w",
		},
		{
			name: "sticky_worker_dir_refused",
			setup: func(t *testing.T, base string) string {
				dir := mustMkdir(t, filepath.Join(base, "w"), 0o1777)
				mustFile(t, filepath.Join(dir, "x-worker"), 0o755)
				return dir
			},
			wantErr: "directory BASE/w is writable by group and others (mode 1777); the worker directory must not be, sticky or not",
			wantFix: "chmod go-w BASE/w",
		},
		{
			name: "dir_with_sticky_root_ancestor_ok",
			setup: func(t *testing.T, base string) string {
				mustMkdir(t, filepath.Join(base, "tmp"), 0o1777)
				dir := mustMkdir(t, filepath.Join(base, "tmp", "w"), 0o755)
				mustFile(t, filepath.Join(dir, "x-worker"), 0o755)
				return dir
			},
		},
		{
			name: "dir_with_open_ancestor_refused",
			setup: func(t *testing.T, base string) string {
				mustMkdir(t, filepath.Join(base, "open"), 0o770)
				dir := mustMkdir(t, filepath.Join(base, "open", "w"), 0o755)
				mustFile(t, filepath.Join(dir, "x-worker"), 0o755)
				return dir
			},
			wantErr: "directory BASE/open is writable by group (mode 0770)",
			wantFix: "chmod go-w BASE/open",
		},
		{
			name:      "dir_owned_by_nobody_refused",
			needsRoot: true,
			setup: func(t *testing.T, base string) string {
				dir := mustMkdir(t, filepath.Join(base, "w"), 0o755)
				mustChown(t, dir, nobody)
				mustFile(t, filepath.Join(dir, "x-worker"), 0o755)
				return dir
			},
			wantErr: "directory BASE/w is owned by uid 65534, not root",
			wantFix: "chown root BASE/w",
		},
		{
			name:      "sticky_ancestor_owned_by_nobody_refused",
			needsRoot: true,
			setup: func(t *testing.T, base string) string {
				tmp := mustMkdir(t, filepath.Join(base, "tmp"), 0o1777)
				mustChown(t, tmp, nobody)
				dir := mustMkdir(t, filepath.Join(tmp, "w"), 0o755)
				mustFile(t, filepath.Join(dir, "x-worker"), 0o755)
				return dir
			},
			wantErr: "directory BASE/tmp is owned by uid 65534, not root",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needsRoot && os.Geteuid() != 0 {
				t.Skip("giving a file to another user (uid 65534) needs root")
			}
			base, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			dir := tt.setup(t, base)

			err = checkWorker(dir, "x-worker", os.Geteuid())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkWorker = %v, want nil", err)
				}
				return
			}
			wantErr := strings.ReplaceAll(tt.wantErr, "BASE", base)
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("checkWorker = %v, want an error containing %q", err, wantErr)
			}
			if tt.wantFix == "" {
				return
			}
			var ue *untrustedError
			if !errors.As(err, &ue) {
				t.Fatalf("checkWorker = %T %v, want an *untrustedError", err, err)
			}
			if want := strings.ReplaceAll(tt.wantFix, "BASE", base); ue.Fix != want {
				t.Errorf("fix = %q, want %q", ue.Fix, want)
			}
		})
	}
}

// TestCheckWorkerFileOwners checks whose files a yggd trusts when it does
// not run as root: root's and its own.
func TestCheckWorkerFileOwners(t *testing.T) {
	const user = 1000
	tests := []struct {
		name    string
		owner   int // -1: the test's own user
		euid    int // -1: the test's own user
		wantErr string
	}{
		{"own_file", -1, -1, ""},
		{"root_file", 0, user, ""},
		{"file_of_yggd_user", nobody, nobody, ""},
		{"file_of_another_user", nobody, user, "owned by uid 65534, not root or yggd's user (uid 1000)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.owner >= 0 || tt.euid >= 0) && os.Geteuid() != 0 {
				t.Skip("giving a file to root or another user needs root")
			}
			owner, euid := tt.owner, tt.euid
			if owner < 0 {
				owner = os.Geteuid()
			}
			if euid < 0 {
				euid = os.Geteuid()
			}
			path := mustFile(t, filepath.Join(t.TempDir(), "x-worker"), 0o755)
			if owner != os.Geteuid() {
				mustChown(t, path, owner)
			}
			err := checkWorkerFile(path, euid)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("checkWorkerFile(euid %d) = %v, want nil", euid, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("checkWorkerFile(euid %d) = %v, want an error containing %q", euid, err, tt.wantErr)
			}
		})
	}
}
