package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstalledUnitVerifies installs into a temporary DESTDIR with
// PREFIX=/usr, as a package build does, and has systemd-analyze verify the
// installed unit: it must be clean (no warning either), and be Type=notify
// with a watchdog. verify checks that ExecStart's program exists and that
// Documentation's man pages render, so it reads a copy whose ExecStart
// points into DESTDIR, with MANPATH on the installed man pages.
func TestInstalledUnitVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both programs: skipped in -short mode")
	}
	for _, tool := range []string{"make", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dest, stage := t.TempDir(), t.TempDir()
	make := exec.Command("make", "-C", "../..", "-f", "mk/install.mk", "install", "DESTDIR="+dest, "STAGE="+stage, "PREFIX=/usr")
	if out, err := make.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	units, _ := filepath.Glob(filepath.Join(dest, "*", "lib", "systemd", "system", "yggd.service"))
	more, _ := filepath.Glob(filepath.Join(dest, "lib", "systemd", "system", "yggd.service"))
	units = append(units, more...)
	if len(units) != 1 {
		t.Fatalf("installed units %q, want one yggd.service under DESTDIR", units)
	}
	unit, err := os.ReadFile(units[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify\n", "NotifyAccess=main\n", "WatchdogSec=30s\n", "RestartPreventExitStatus=2\n",
		"Environment=GOTRACEBACK=crash\n", "ExecReload=/bin/kill -HUP $MAINPID\n",
		"RuntimeDirectory=yggdrasil\n", "StateDirectory=yggdrasil\n",
	} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}

	const execStart = "\nExecStart=/usr/sbin/yggd\n"
	if !bytes.Contains(unit, []byte(execStart)) {
		t.Fatalf("unit lacks %q:\n%s", strings.TrimSpace(execStart), unit)
	}
	staged := bytes.Replace(unit, []byte(execStart), []byte("\nExecStart="+filepath.Join(dest, "usr/sbin/yggd")+"\n"), 1)
	check := filepath.Join(t.TempDir(), "yggd.service")
	if err := os.WriteFile(check, staged, 0o644); err != nil {
		t.Fatal(err)
	}
	verify := exec.Command("systemd-analyze", "verify", check)
	verify.Env = append(os.Environ(), "MANPATH="+filepath.Join(dest, "usr/share/man"), "SYSTEMD_PAGER=")
	out, err := verify.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
