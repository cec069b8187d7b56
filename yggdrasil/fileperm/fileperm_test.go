package fileperm

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWritersAndMode(t *testing.T) {
	tests := []struct {
		name    string
		mode    fs.FileMode
		writers string
		octal   string
	}{
		{"owner_only", 0o755, "", "0755"},
		{"group", 0o775, "group", "0775"},
		{"others", 0o757, "others", "0757"},
		{"both_sticky", 0o777 | fs.ModeSticky, "group and others", "1777"},
		{"setuid", 0o755 | fs.ModeSetuid, "", "4755"},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := Writers(fi); got != tc.writers {
				t.Errorf("Writers = %q, want %q", got, tc.writers)
			}
			if got := Mode(fi); got != tc.octal {
				t.Errorf("Mode = %q, want %q", got, tc.octal)
			}
			if uid, ok := Owner(fi); !ok || uid != os.Geteuid() {
				t.Errorf("Owner = %d, %v; want %d", uid, ok, os.Geteuid())
			}
		})
	}
}
