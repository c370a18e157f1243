package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
)

// waitProbe probes the supervisor of state until cond holds of its
// status, or fails after 20 s.
func waitProbe(t *testing.T, state, what string, cond func(control.Status) bool) control.Status {
	t.Helper()
	var st control.Status
	var err error
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if st, err = control.Probe(context.Background(), state); err == nil && cond(st) {
			return st
		}
	}
	t.Fatalf("waiting for %s: last status %+v, %v", what, st, err)
	return st
}

// replace writes text to path as editors do: a new file renamed over.
func replace(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// sumOf is the Config.Sum of text.
func sumOf(t *testing.T, text string) string {
	p := filepath.Join(t.TempDir(), "c")
	os.WriteFile(p, []byte(text), 0o600)
	c, _ := config.Load(p)
	return c.Sum
}

// TestSIGHUPReloads runs the real livecgid: SIGHUP makes it read its
// configuration file again (it used to end it), and it says so in its log.
func TestSIGHUPReloads(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go tool not found: cannot build livecgid")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "livecgid")
	build := exec.Command(gobin, "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	state, plugins := filepath.Join(dir, "state"), filepath.Join(dir, "plugins")
	os.Mkdir(plugins, 0o700)
	conf := filepath.Join(dir, "livecgi.conf")
	base := "listen = 127.0.0.1:0\nstate_dir = " + state + "\nplugins_dir = " + plugins + "\n"
	os.WriteFile(conf, []byte(base), 0o600)
	cmd := exec.Command(bin, "-config", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Error("livecgid did not stop on SIGTERM")
		}
	})
	st := waitProbe(t, state, "livecgid", func(st control.Status) bool { return st.PID == cmd.Process.Pid })
	if st.ConfigSum != sumOf(t, base) {
		t.Fatalf("config_sum %q", st.ConfigSum)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(state, control.LogFile)
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("livecgid exited on SIGHUP: %v", waitErr)
		default:
		}
		if b, _ := os.ReadFile(logPath); strings.Contains(string(b), `msg="config reloaded"`) && strings.Contains(string(b), "by=SIGHUP") {
			break
		}
		if time.Now().After(end) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("no reload in the log after SIGHUP:\n%s", b)
		}
	}
	if st2 := waitProbe(t, state, "livecgid after SIGHUP", func(control.Status) bool { return true }); st2.PID != st.PID || st2.Epoch != st.Epoch {
		t.Errorf("status after SIGHUP %+v, before %+v: want the same process and run", st2, st)
	}
}

// TestCheckRunningConfig runs livecgid in process and edits its file:
// -check says when the running supervisor did not take a broken file
// (which keeps the last good one running) and when a new listen address
// waits for a restart, and is ok once the file is back.
func TestCheckRunningConfig(t *testing.T) {
	dir := t.TempDir()
	state, plugins := filepath.Join(dir, "state"), filepath.Join(dir, "plugins")
	os.Mkdir(plugins, 0o700)
	prog, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	sup := filepath.Join(dir, "livecgid")
	os.WriteFile(sup, prog, 0o755)
	conf := filepath.Join(dir, "livecgi.conf")
	base := "state_dir = " + state + "\nplugins_dir = " + plugins + "\nsupervisor = " + sup + "\n"
	os.WriteFile(conf, []byte(base+"listen = 127.0.0.1:0\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var log bytes.Buffer
	go func() { done <- run(ctx, []string{"-config", conf}, &log, &log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
	st := waitProbe(t, state, "livecgid", func(control.Status) bool { return true })
	check := func() string {
		var out bytes.Buffer
		run(context.Background(), []string{"-check", "-config", conf}, &out, &out)
		return out.String()
	}
	pid := strconv.Itoa(st.PID)
	if out := check(); !strings.Contains(out, "ok    running    livecgid pid "+pid+" runs "+conf+" as it is now") {
		t.Errorf("-check of a running livecgid:\n%s", out)
	}

	replace(t, conf, base+"listen = 127.0.0.1:0\nburst = many\n")
	waitProbe(t, state, "the broken file in the status", func(st control.Status) bool { return st.ConfigError != "" })
	out := check()
	if want := "FAIL  running    livecgid pid " + pid + " did not take " + conf + " as it is now and runs its last good configuration: " + conf + ":5: burst = many: want a whole number"; !strings.Contains(out, want) {
		t.Errorf("-check after a broken edit:\n%s\nwant %q", out, want)
	}
	if !strings.Contains(out, "fix: correct the file: livecgid reads it again when it changes (or on kill -HUP "+pid+")") {
		t.Errorf("-check gives no fix:\n%s", out)
	}

	replace(t, conf, base+"listen = 127.0.0.1:1\n")
	waitProbe(t, state, "a restart in the status", func(st control.Status) bool { return st.Restart == "listen" && st.ConfigError == "" })
	if out := check(); !strings.Contains(out, "FAIL  running    livecgid pid "+pid+" runs "+conf+", but its new listen takes a restart") ||
		!strings.Contains(out, "fix: kill -TERM "+pid+"; the next page load starts it") {
		t.Errorf("-check after a listen change:\n%s", out)
	}
	b, _ := os.ReadFile(filepath.Join(state, control.LogFile))
	if !strings.Contains(string(b), "config: listen changed: restart livecgid (kill -TERM "+pid+"; the next page load starts it)") {
		t.Errorf("log:\n%s", b)
	}
}
