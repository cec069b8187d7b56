package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestMakeInstall runs "make install PREFIX=/usr" into a temporary DESTDIR
// and checks what a packager and a worker author rely on: PREFIX=/usr puts
// the configuration in /etc and the state in /var (as meson does),
// pkg-config names the worker directory, the paths reached the binaries
// through the linker, the config is one yggd accepts, with a broker, the
// unit starts the installed yggd and systemd-analyze verify accepts it,
// and the man page renders.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both programs: skipped in -short mode")
	}
	for _, tool := range []string{"make", "pkg-config", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dest, stage := t.TempDir(), t.TempDir()
	make := exec.Command("make", "-C", "../..", "-f", "mk/install.mk", "install",
		"DESTDIR="+dest, "STAGE="+stage, "PREFIX=/usr", "VERSION=9.8.7",
		"SYSTEMDUNITDIR=/usr/lib/systemd/system")
	if out, err := make.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}

	pc := exec.Command("pkg-config", "--variable", "workerexecdir", "yggdrasil")
	pc.Env = append(os.Environ(), "PKG_CONFIG_PATH="+filepath.Join(dest, "usr/share/pkgconfig"))
	if out, err := pc.Output(); err != nil || strings.TrimSpace(string(out)) != "/usr/libexec/yggdrasil" {
		t.Errorf("pkg-config workerexecdir = %q, %v; want /usr/libexec/yggdrasil", out, err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "usr/libexec/yggdrasil")); err != nil || !fi.IsDir() {
		t.Errorf("worker directory not created: %v", err)
	}

	ygg := filepath.Join(dest, "usr/bin/ygg")
	if out, err := exec.Command(ygg, "version").Output(); err != nil || string(out) != "ygg version 9.8.7\n" {
		t.Errorf("ygg version = %q, %v", out, err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "usr/sbin/yggd")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("yggd not installed executable: %v", err)
	}

	// The installed configuration connects out of the box: yggd accepts it
	// as it is, and it names a broker.
	configFile := filepath.Join(dest, "etc/yggdrasil/config.toml")
	var cfg map[string]any
	if _, err := toml.DecodeFile(configFile, &cfg); err != nil {
		t.Errorf("config.toml: %v", err)
	}
	if b, _ := cfg["broker"].([]any); len(b) != 1 || b[0] == "" {
		t.Errorf("config.toml: broker = %v, want the build's BROKER", cfg["broker"])
	}
	yggd := filepath.Join(dest, "usr/sbin/yggd")
	if out, err := exec.Command(yggd, "--config", configFile, "--cert-file", "", "--key-file", "", "--client-id", "h", "--topic-prefix", "bad+").CombinedOutput(); !bytes.Contains(out, []byte("yggd: topic-prefix:")) {
		// Only the deliberately bad topic-prefix, checked last, may be
		// refused: every value of the file passed the checks before it.
		t.Errorf("installed yggd with the installed config.toml: %v\n%s", err, out)
	}
	if text, _ := os.ReadFile(configFile); bytes.Contains(text, []byte("@")) {
		t.Errorf("config.toml has an unsubstituted @VARIABLE@:\n%s", text)
	}
	// LOCALSTATEDIR is /var: yggd's default state directory says so.
	if out, err := exec.Command(yggd, "--help").Output(); err != nil || !bytes.Contains(out, []byte("else /var/lib/yggdrasil)")) {
		t.Errorf("yggd --help: %v; want the state directory under /var:\n%s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/yggd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ExecStart=/usr/sbin/yggd\n", "Restart=on-failure\n", "WantedBy=multi-user.target\n",
		"Type=notify\n", "NotifyAccess=main\n", "WatchdogSec=30s\n", "RestartPreventExitStatus=2\n",
		"Environment=GOTRACEBACK=crash\n", "ExecReload=/bin/kill -HUP $MAINPID\n",
		"RuntimeDirectory=yggdrasil\n", "StateDirectory=yggdrasil\n",
	} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if bytes.Contains(unit, []byte("@")) {
		t.Errorf("unit has an unsubstituted @VARIABLE@:\n%s", unit)
	}
	verifyUnit(t, dest, unit)

	if _, err := exec.LookPath("man"); err == nil {
		man := exec.Command("man", "-l", filepath.Join(dest, "usr/share/man/man1/ygg.1.gz"))
		man.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=100")
		out, err := man.Output()
		// The link-time SysconfDir reached the FILES section.
		if err != nil || !strings.Contains(string(out), "/etc/yggdrasil/config.toml") {
			t.Errorf("man -l ygg.1.gz: %v\n%s", err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "usr/share/bash-completion/completions/ygg")); err != nil {
		t.Errorf("bash completion: %v", err)
	}
}

// verifyUnit has systemd-analyze verify the installed unit (skipped where
// it is not installed): it must be clean, no warning either. verify checks
// that ExecStart's program exists and that Documentation's man pages
// render, so it reads a copy whose ExecStart points into dest, with
// MANPATH on the installed man pages.
func verifyUnit(t *testing.T, dest string, unit []byte) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze is not installed: the unit is not verified")
		return
	}
	staged := bytes.Replace(unit, []byte("\nExecStart=/usr/sbin/yggd\n"), []byte("\nExecStart="+filepath.Join(dest, "usr/sbin/yggd")+"\n"), 1)
	check := filepath.Join(t.TempDir(), "yggd.service")
	if err := os.WriteFile(check, staged, 0o644); err != nil {
		t.Fatal(err)
	}
	verify := exec.Command("systemd-analyze", "verify", check)
	verify.Env = append(os.Environ(), "MANPATH="+filepath.Join(dest, "usr/share/man"), "SYSTEMD_PAGER=")
	if out, err := verify.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
