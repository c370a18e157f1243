package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests hold the Makefile's install for a board: one command that
// builds for the board and refuses binaries of another architecture.

// makeIn runs make in the module root.
func makeIn(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed: apt-get install make")
	}
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", "../.."}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCheckArch: check-arch accepts binaries of the GOARCH being built and
// names the first one of another architecture.
func TestCheckArch(t *testing.T) {
	host, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	os.Mkdir(filepath.Join(bin, "plugins"), 0o755)
	for _, f := range []string{"livecgid", "live.cgi", "plugins/system"} {
		os.WriteFile(filepath.Join(bin, f), host, 0o755)
	}
	if out, err := makeIn(t, "check-arch", "BIN="+bin); err != nil {
		t.Fatalf("host binaries for the host: %v\n%s", err, out)
	}
	out, err := makeIn(t, "check-arch", "BIN="+bin, "TARGET=riscv64")
	if err == nil || !strings.Contains(out, filepath.Join(bin, "livecgid")+": ") || !strings.Contains(out, "binary, want riscv64: not installing") {
		t.Fatalf("host binaries for riscv64: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(bin, "plugins/system"), []byte("#!/bin/sh\n"), 0o755)
	out, err = makeIn(t, "check-arch", "BIN="+bin)
	if err == nil || !strings.Contains(out, "plugins/system: not-ELF binary") {
		t.Fatalf("a script: %v\n%s", err, out)
	}
}

// TestMakeInstallTarget builds every binary for armv7 (a minute or two)
// and installs it: every installed program is an ARM ELF file, and the
// built-in plugins are links to /usr/sbin/livecgid.
func TestMakeInstallTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary for linux/arm")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if out, err := makeIn(t, "install", "TARGET=armv7", "BIN="+filepath.Join(dir, "bin"), "DESTDIR="+root); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	var files []string
	filepath.WalkDir(filepath.Join(root, "usr"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Mode().Perm()&0o111 != 0 {
				files = append(files, p) // the binaries; tmpfiles.d's line is text
			}
		}
		return err
	})
	if len(files) < 2 { // livecgid, live.cgi
		t.Fatalf("installed %v", files)
	}
	if to, err := os.Readlink(filepath.Join(root, "usr/lib/cgi-bin/nph-live.cgi")); err != nil || to != "live.cgi" {
		t.Errorf("nph-live.cgi: link to %q (%v), want live.cgi", to, err)
	}
	for _, p := range []string{"system", "leds", "exec"} {
		if to, err := os.Readlink(filepath.Join(root, "usr/lib/livecgi/plugins", p)); err != nil || to != "/usr/sbin/livecgid" {
			t.Errorf("plugins/%s: link to %q (%v), want /usr/sbin/livecgid", p, to, err)
		}
	}
	for _, f := range files {
		e, err := elf.Open(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if e.Machine != elf.EM_ARM {
			t.Errorf("%s: machine %v, want EM_ARM", f, e.Machine)
		}
		e.Close()
	}
	if _, err := os.Stat(filepath.Join(root, "etc/livecgi/livecgi.conf")); err != nil {
		t.Error(err)
	}
}
