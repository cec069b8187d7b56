package yggdcmd

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// permPath makes a file (or, with dir, a directory) with exactly mode perm
// (octal as chmod takes it), whatever the umask.
func permPath(t *testing.T, path string, dir bool, perm uint32) string {
	t.Helper()
	var err error
	if dir {
		err = os.MkdirAll(path, 0o700)
	} else {
		err = os.WriteFile(path, []byte("# test\n"), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWarnLoosePermissions(t *testing.T) {
	tests := []struct {
		name      string
		needsRoot bool
		// setup returns the configuration to check, made under base.
		setup func(t *testing.T, base string) Config
		want  []string // one per warning line, in order, with base as BASE
	}{
		{
			name:  "nothing_to_check",
			setup: func(t *testing.T, base string) Config { return Config{} },
		},
		{
			name: "config_0644",
			setup: func(t *testing.T, base string) Config {
				return Config{File: permPath(t, filepath.Join(base, "config.toml"), false, 0o644)}
			},
		},
		{
			name: "config_0664",
			setup: func(t *testing.T, base string) Config {
				return Config{File: permPath(t, filepath.Join(base, "config.toml"), false, 0o664)}
			},
			want: []string{`level=WARN msg="configuration file can be changed by other users" path=BASE/config.toml mode=0664 reason="writable by group" fix="chmod go-w BASE/config.toml"`},
		},
		{
			name: "config_0646",
			setup: func(t *testing.T, base string) Config {
				return Config{File: permPath(t, filepath.Join(base, "config.toml"), false, 0o646)}
			},
			want: []string{`path=BASE/config.toml mode=0646 reason="writable by others" fix="chmod go-w BASE/config.toml"`},
		},
		{
			name:      "config_owned_by_nobody",
			needsRoot: true,
			setup: func(t *testing.T, base string) Config {
				f := permPath(t, filepath.Join(base, "config.toml"), false, 0o666)
				if err := os.Chown(f, 65534, -1); err != nil {
					t.Fatal(err)
				}
				return Config{File: f}
			},
			want: []string{`path=BASE/config.toml mode=0666 reason="owned by uid 65534, writable by group and others" fix="chown root BASE/config.toml && chmod go-w BASE/config.toml"`},
		},
		{
			name: "cert_dir_0755",
			setup: func(t *testing.T, base string) Config {
				dir := permPath(t, filepath.Join(base, "pki"), true, 0o755)
				return Config{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
			},
		},
		{
			name: "cert_and_key_dir_0775_said_once",
			setup: func(t *testing.T, base string) Config {
				dir := permPath(t, filepath.Join(base, "pki"), true, 0o775)
				return Config{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
			},
			want: []string{`level=WARN msg="certificate directory can be changed by other users" path=BASE/pki mode=0775 reason="writable by group" holds=cert-file fix="chmod go-w BASE/pki"`},
		},
		{
			name: "key_dir_sticky_0777",
			setup: func(t *testing.T, base string) Config {
				permPath(t, filepath.Join(base, "pki"), true, 0o755)
				tmp := permPath(t, filepath.Join(base, "tmp"), true, 0o1777)
				return Config{CertFile: filepath.Join(base, "pki", "cert.pem"), KeyFile: filepath.Join(tmp, "key.pem")}
			},
			want: []string{`path=BASE/tmp mode=1777 reason="writable by group and others" holds=key-file fix="chmod go-w BASE/tmp"`},
		},
		{
			name: "config_and_ca_dir",
			setup: func(t *testing.T, base string) Config {
				ca := permPath(t, filepath.Join(base, "ca"), true, 0o757)
				return Config{
					File:   permPath(t, filepath.Join(base, "config.toml"), false, 0o666),
					CARoot: filepath.Join(ca, "ca.pem"),
				}
			},
			want: []string{
				`msg="configuration file can be changed by other users" path=BASE/config.toml mode=0666`,
				`msg="certificate directory can be changed by other users" path=BASE/ca mode=0757 reason="writable by others" holds=ca-root`,
			},
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
			cfg := tt.setup(t, base)
			var buf bytes.Buffer
			warnLoosePermissions(cfg, slog.New(slog.NewTextHandler(&buf, nil)))

			var lines []string
			if out := strings.TrimSpace(buf.String()); out != "" {
				lines = strings.Split(out, "\n")
			}
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(tt.want), buf.String())
			}
			for i, want := range tt.want {
				want = strings.ReplaceAll(want, "BASE", base)
				if !strings.Contains(lines[i], want) {
					t.Errorf("line %d:\n got %s\nwant it to contain %s", i+1, lines[i], want)
				}
			}
		})
	}
}
