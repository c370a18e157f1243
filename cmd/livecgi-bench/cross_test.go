package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// The cross tests prove the ARM builds work, not just compile: unit test
// binaries run under Debian's qemu-user-static, and (when binfmt_misc has
// qemu-arm registered, see binfmt.sh) the arm supervisor, plugin and stub
// serve a reading end to end. With CI=true a missing qemu fails.

// qemuTargets are the architectures whose test binaries run under qemu.
var qemuTargets = []struct {
	name, qemu string
	env        []string
}{
	{"armv7", "qemu-arm-static", []string{"GOARCH=arm", "GOARM=7"}},
	{"arm64", "qemu-aarch64-static", []string{"GOARCH=arm64"}},
}

// crossPackages are the packages whose tests run under qemu. Tests that
// exec an arm binary (skipExec) run only when binfmt_misc runs arm
// binaries: go-plugin and the SDK's tests exec the plugin path itself,
// the hand-over test execs a copy of its test binary as another user.
// Tests that build a helper with the host's go (skipAlways) would mix
// architectures, so they are left to the native run.
var crossPackages = []struct{ pkg, skipExec, skipAlways string }{
	{pkg: "./proto/control", skipExec: "^TestHandOverOtherUser$"},
	{pkg: "./proto/wire"},
	{pkg: "./plugins/sdk", skipExec: "^(TestRunByHand|TestInvalidPlugin|TestServe)$"},
	{pkg: "./plugins/system", skipAlways: "^TestEndToEnd$"},
	{pkg: "./plugins/leds", skipAlways: "^TestEndToEnd$"},
	{pkg: "./plugins/bench"},
	{pkg: "./cmd/livecgi-bench/tick"},
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (apt-get install qemu-user-static): %v", name, err)
		}
		t.Skipf("%s not found (apt-get install qemu-user-static)", name)
	}
	return p
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func crossBuild(t *testing.T, root string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s go %s: %v\n%s", env, strings.Join(args, " "), err, out)
	}
}

func TestQemuUnitTests(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles and emulates: not in -short")
	}
	root := moduleRoot(t)
	for _, tg := range qemuTargets {
		t.Run(tg.name, func(t *testing.T) {
			qemu := needTool(t, tg.qemu)
			dir := t.TempDir()
			binfmt := binfmtFor(tg.qemu)
			var unrun []string // skipExec tests left out for want of binfmt
			for _, p := range crossPackages {
				bin := filepath.Join(dir, filepath.Base(p.pkg)+".test")
				// -w: no DWARF, as plain go test links; the supervisor
				// refuses binaries with compressed DWARF sections as
				// truncated, and some tests load themselves as plugins.
				crossBuild(t, root, tg.env, "test", "-c", "-ldflags=-w", "-o", bin, p.pkg)
				if _, err := os.Stat(bin); err != nil {
					t.Logf("%s: no test files", p.pkg)
					continue
				}
				args := []string{bin, "-test.v", "-test.timeout=5m"}
				var skip []string
				if p.skipAlways != "" {
					skip = append(skip, p.skipAlways)
				}
				if p.skipExec != "" && !binfmt {
					skip = append(skip, p.skipExec)
					unrun = append(unrun, p.pkg+" "+p.skipExec)
				}
				if len(skip) > 0 {
					args = append(args, "-test.skip="+strings.Join(skip, "|"))
				}
				cmd := exec.Command(qemu, args...)
				cmd.Dir = filepath.Join(root, p.pkg) // testdata
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Errorf("%s %s: %v\n%s", tg.name, p.pkg, err, out)
					continue
				}
				if !bytes.Contains(out, []byte("PASS")) {
					t.Errorf("%s %s: no PASS in\n%s", tg.name, p.pkg, out)
				}
				t.Logf("%s %s under %s: %d tests passed (skipped: %q)", tg.name, p.pkg, tg.qemu, bytes.Count(out, []byte("--- PASS")), skip)
			}
			// The tests that exec arm binaries: skipped above without
			// binfmt; this says so, and how to run them.
			t.Run("exec", func(t *testing.T) {
				needBinfmt(t, tg.qemu, strings.Join(unrun, ", "))
			})
		})
	}
}

// binfmtCommand registers qemu-user-static with binfmt_misc; make test
// runs it as root.
const binfmtCommand = "sudo sh cmd/livecgi-bench/binfmt.sh"

// needBinfmt skips t, or fails it when CI=true, unless binfmt_misc runs
// qemu's architecture's binaries directly, as tests that exec an arm
// binary need; the message names what was left out and the command that
// registers qemu.
func needBinfmt(t *testing.T, qemu, what string) {
	t.Helper()
	if binfmtFor(qemu) {
		return
	}
	msg := fmt.Sprintf("binfmt_misc has no %s entry, so %s cannot exec arm binaries: run `%s` (make test does, as root)",
		strings.TrimSuffix(qemu, "-static"), what, binfmtCommand)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// binfmtFor reports whether binfmt_misc has the entry of a qemu-*-static.
func binfmtFor(qemu string) bool {
	b, err := os.ReadFile("/proc/sys/fs/binfmt_misc/" + strings.TrimSuffix(qemu, "-static"))
	return err == nil && bytes.HasPrefix(b, []byte("enabled"))
}

// TestQemuEndToEnd runs the linux/arm (GOARM=7) stub under busybox httpd;
// it starts the arm supervisor, which starts the arm bench plugin; a
// client on this machine then receives a reading. Every arm process runs
// under qemu-arm through binfmt_misc: go-plugin execs the plugin path
// itself, so without binfmt the test is skipped, or fails under CI=true
// (make test and make cross-test register it as root, see binfmt.sh).
func TestQemuEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles and emulates: not in -short")
	}
	needTool(t, "qemu-arm-static")
	if _, err := exec.LookPath("busybox"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("busybox not found")
		}
		t.Skip("busybox not found")
	}
	needBinfmt(t, "qemu-arm-static", "the arm supervisor")
	root := moduleRoot(t)
	work := t.TempDir()
	bin, plugins, state, www := filepath.Join(work, "bin"), filepath.Join(work, "plugins"), filepath.Join(work, "state"), filepath.Join(work, "www")
	for _, d := range []string{bin, plugins, state, filepath.Join(www, "cgi-bin")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(work, "livecgi.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("listen = 127.0.0.1:0\nstate_dir = %s\nplugins_dir = %s\nsupervisor = %s\nstart_timeout = 20s\n",
		state, plugins, filepath.Join(bin, "livecgid"))), 0o600)
	arm := []string{"GOARCH=arm", "GOARM=7"}
	crossBuild(t, root, arm, "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(bin, "livecgid"), "./cmd/livecgid")
	crossBuild(t, root, arm, "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(plugins, "bench"), "./plugins/bench")
	crossBuild(t, root, arm, "build", "-trimpath", "-ldflags", "-s -w -X github.com/livecgi/livecgi/cgi.ConfigPath="+conf,
		"-o", filepath.Join(www, "cgi-bin", "live.cgi"), "./cmd/live.cgi")
	if out, _ := exec.Command("file", filepath.Join(bin, "livecgid")).Output(); len(out) > 0 {
		t.Logf("%s", bytes.TrimSpace(out))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	httpd := exec.Command("busybox", "httpd", "-f", "-p", "127.0.0.1:"+strconv.Itoa(port), "-h", www)
	if err := start(httpd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop(httpd)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if st, err := control.Probe(ctx, state); err == nil {
			p, _ := os.FindProcess(st.PID)
			p.Signal(os.Interrupt)
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && p.Signal(nil) == nil; time.Sleep(50 * time.Millisecond) {
			}
			p.Kill()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := waitPort(ctx, port); err != nil {
		t.Fatal(err)
	}

	r := &rig{hc: newClient(), httpPort: port, state: state}
	start := time.Now()
	took, err := r.firstContact(ctx, "bench.")
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(state, control.LogFile))
		s, _ := os.ReadFile(filepath.Join(state, control.StubLogFile))
		t.Fatalf("no reading from the arm stack: %v\nsupervisor log:\n%s\nstub log:\n%s", err, b, s)
	}
	st, err := control.Probe(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := procFS{"/proc"}.usage(st.PID, true)
	var procs []string
	for _, p := range u.List {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID))
		procs = append(procs, fmt.Sprintf("%s (pid %d, run by %s)", p.Comm, p.PID, filepath.Base(exe)))
	}
	if len(u.List) < 2 {
		t.Errorf("supervisor tree %v: want livecgid and its plugin", procs)
	}
	t.Logf("arm stub → supervisor → plugin → client: first reading %v after first contact (%v in all); processes: %s",
		took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), strings.Join(procs, ", "))
}

// TestMakeTestRegistersBinfmt: make test runs binfmt.sh before the tests,
// so that as root the tests that exec arm binaries run instead of failing
// with "exec format error"; needBinfmt's advice is a command that exists.
func TestMakeTestRegistersBinfmt(t *testing.T) {
	root := moduleRoot(t)
	out, err := exec.Command("make", "--no-print-directory", "-n", "-C", root, "test").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n test: %v\n%s", err, out)
	}
	s := string(out)
	reg, run := strings.Index(s, "sh cmd/livecgi-bench/binfmt.sh"), strings.Index(s, "go test")
	if reg < 0 || run < 0 || reg > run {
		t.Errorf("make test does not run binfmt.sh before go test:\n%s", s)
	}
	script := strings.TrimPrefix(binfmtCommand, "sudo sh ")
	if _, err := os.Stat(filepath.Join(root, script)); err != nil {
		t.Errorf("needBinfmt advises %q: %v", binfmtCommand, err)
	}
}
