package e2e

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
	"github.com/livecgi/livecgi/proto/wire"
)

// demo is one make demo running.
type demo struct {
	port int
	out  string // what it printed up to "Ctrl-C stops…"
	stop func()
}

// mustDemo runs make demo BIN=bin PORT=0 (and args) in the module root
// and waits until it prints the URL to open; stop stops it as Ctrl-C
// does and waits for make to exit.
func mustDemo(t *testing.T, bin string, args ...string) demo {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", filepath.Dir(strings.TrimSpace(string(root))), "demo", "BIN=" + bin, "PORT=0"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr testkit.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // httpd's log once the demo runs: nobody reads it
			}
		}
		exited <- cmd.Wait()
		close(lines)
	}()
	d := demo{}
	d.stop = func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Errorf("make demo did not stop on SIGINT")
		}
		state := filepath.Join(bin, "demo", "state")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if st, err := control.Probe(ctx, state); err == nil {
			t.Errorf("supervisor pid %d still runs after make demo stopped", st.PID)
			stopAndReap(st.PID)
		}
	}
	var out strings.Builder
	open := regexp.MustCompile(`^Open http://127\.0\.0\.1:(\d+)/`)
	deadline := time.After(15 * time.Minute) // the first build, on a busy machine
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("make demo exited: %v\n%s\n%s", <-exited, out.String(), stderr.String())
			}
			out.WriteString(line + "\n")
			if m := open.FindStringSubmatch(line); m != nil {
				d.port, _ = strconv.Atoi(m[1])
			}
			if strings.HasPrefix(line, "Ctrl-C stops") && d.port != 0 {
				d.out = out.String()
				t.Cleanup(func() {
					if cmd.ProcessState == nil {
						d.stop()
					}
				})
				return d
			}
		case <-deadline:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("make demo printed no URL:\n%s\n%s", out.String(), stderr.String())
		}
	}
}

// TestMakeDemo runs make demo as a person would: it says where its
// config is, and the exec dir it lays out gives every machine a sensor
// and a command a viewer may run (the command changes the sensor). An
// edited config, and a conf removed from the exec dir, stay so on the
// next make demo.
func TestMakeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds everything and runs make demo twice")
	}
	mustTool(t, "busybox")
	bin := t.TempDir()
	conf, execDir := filepath.Join(bin, "demo", "livecgi.conf"), filepath.Join(bin, "demo", "exec.d")
	d := mustDemo(t, bin)
	t.Logf("make demo printed:\n%s", d.out)
	for _, want := range []string{"Config: " + conf + "\n  written by make demo", "Exec dir: " + execDir + "\n"} {
		if !strings.Contains(d.out, want) {
			t.Errorf("make demo does not say %q", want)
		}
	}

	mustSetMessage(t, d.port, execDir)
	d.stop()

	// The person's edits stay.
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	edited := string(b) + "# mine\npoll_interval = 300ms\n"
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(execDir, "message.conf")); err != nil {
		t.Fatal(err)
	}
	d = mustDemo(t, bin)
	if !strings.Contains(d.out, "Config: "+conf+"\n  yours: make demo keeps") {
		t.Errorf("second make demo does not say it kept the config:\n%s", d.out)
	}
	if b, _ := os.ReadFile(conf); string(b) != edited {
		t.Errorf("the edited config became:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(execDir, "message.conf")); err == nil {
		t.Error("the removed message.conf is back")
	}
	d.stop()
}

// mustSetMessage runs the demo's exec.set_message as a viewer (auth =
// none) through the stub on port and waits for exec.message to show the
// text; the exec plugin's title in hello names execDir.
func mustSetMessage(t *testing.T, port int, execDir string) {
	t.Helper()
	c, err := connect(fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, c.URL, &websocket.DialOptions{
		HTTPHeader:   http.Header{"Origin": {fmt.Sprintf("http://127.0.0.1:%d", port)}},
		Subprotocols: []string{c.Protocol},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	const text = "hello from make demo's test"
	sent := false
	for done := false; !done; {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for exec.message to say %q: %v", text, err)
		}
		var m struct {
			wire.Hello
			ID     string `json:"id"`
			OK     bool   `json:"ok"`
			Sensor string `json:"sensor"`
			Value  any    `json:"value"`
		}
		json.Unmarshal(b, &m)
		switch {
		case m.Type == wire.TypeHello && !sent && bytes.Contains(b, []byte(`"id":"exec.set_message"`)):
			for _, p := range m.Plugins {
				if p.ID == "exec" && !strings.Contains(p.Title, execDir) {
					t.Errorf("exec plugin's title %q does not name %s", p.Title, execDir)
				}
			}
			cmd, _ := json.Marshal(wire.CommandMsg{Type: wire.TypeCommand, ID: "m1", Name: "exec.set_message", Args: map[string]any{"text": text}})
			if err := ws.Write(ctx, websocket.MessageText, cmd); err != nil {
				t.Fatal(err)
			}
			sent = true
		case (m.Type == wire.TypeResult || m.Type == wire.TypeError) && m.ID == "m1" && !m.OK:
			t.Fatalf("set_message as a viewer: %s", b)
		case m.Type == wire.TypeReading && m.Sensor == "exec.message" && m.Value == text:
			done = true
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")
}

// TestMakeDemoTarget: make demo TARGET=armv7 runs the armv7 build (the
// binaries make install TARGET=armv7 installs) on this machine behind
// busybox httpd, every arm process under qemu-arm through binfmt_misc,
// which make demo registers as root: the supervisor is an ARM program and
// the demo's command and sensor work through it.
func TestMakeDemoTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds everything for armv7 and runs it under qemu")
	}
	mustTool(t, "busybox")
	mustTool(t, "qemu-arm-static")
	if b, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-arm"); (err != nil || !bytes.HasPrefix(b, []byte("enabled"))) && os.Getuid() != 0 {
		msg := "binfmt_misc has no qemu-arm and only root can register it: run `sudo sh cmd/livecgi-bench/binfmt.sh`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin := t.TempDir()
	d := mustDemo(t, bin, "TARGET=armv7")
	t.Logf("make demo TARGET=armv7 printed:\n%s", d.out)
	if !strings.Contains(d.out, "run by qemu-arm-static through binfmt_misc") {
		t.Errorf("make demo TARGET=armv7 does not say how it runs the binaries")
	}
	mustSetMessage(t, d.port, filepath.Join(bin, "demo", "exec.d"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := control.Probe(ctx, filepath.Join(bin, "demo", "state"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(filepath.Join(bin, "livecgid"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Through binfmt_misc the kernel runs qemu-arm-static, which runs
	// the arm program.
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.PID))
	t.Logf("supervisor pid %d runs %s; livecgid is %v", st.PID, exe, f.Machine)
	if f.Machine != elf.EM_ARM || !strings.Contains(filepath.Base(exe), "qemu-arm") {
		t.Errorf("the supervisor runs %s, livecgid is %v: want the arm livecgid under qemu-arm", exe, f.Machine)
	}
	d.stop()
}
