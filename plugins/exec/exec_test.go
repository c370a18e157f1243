package exec

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
	"github.com/livecgi/livecgi/proto/testkit"
)

// startIn runs the plugin over a fresh exec dir holding files (name →
// content; names ending in .sh are made executable).
func startIn(t *testing.T, files map[string]string) (*plugin, string, *testkit.Buffer) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	logs := &testkit.Buffer{}
	p := start(dir, slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() {
		p.close()
		if t.Failed() {
			t.Logf("plugin log:\n%s", logs)
		}
	})
	return p, dir, logs
}

// writeFile writes content atomically (temp file and rename, as a deploy
// should); a .sh file or one starting with #! is executable.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	mode := os.FileMode(0o644)
	if strings.HasSuffix(path, ".sh") || strings.HasPrefix(content, "#!") {
		mode = 0o755
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// state is what a slot holds.
type state struct {
	val any // nil without a good value
	err string
}

func (s state) String() string { return fmt.Sprintf("value %v, error %q", s.val, s.err) }

// slotOf returns the slot of sensor key of conf name, once loaded.
func slotOf(t *testing.T, p *plugin, name, key string) *slot {
	t.Helper()
	var sl *slot
	waitFor(t, name+".conf loaded", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if l := p.progs[name]; l != nil && l.prog != nil {
			sl = l.prog.slots[key]
		}
		return sl != nil
	})
	return sl
}

// await waits until the slot's state satisfies cond and returns it.
func await(t *testing.T, sl *slot, what string, cond func(state) bool) state {
	t.Helper()
	end := time.After(20 * time.Second)
	for {
		sl.mu.Lock()
		s := state{err: sl.err}
		if sl.has {
			s.val = sl.val.Value()
		}
		wake := sl.wake
		sl.mu.Unlock()
		if cond(s) {
			return s
		}
		select {
		case <-wake:
		case <-end:
			t.Fatalf("timed out waiting for %s; last: %v", what, s)
		}
	}
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// readPIDs reads the pids a test program wrote, one a line.
func readPIDs(t testing.TB, path string) []int {
	t.Helper()
	b, _ := os.ReadFile(path)
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %q is not a pid", path, f)
		}
		pids = append(pids, pid)
	}
	return pids
}

// TestPeriodicScript: a shell script reading a fixture file (relative to
// its cwd, the exec dir); the value follows the file; its environment is
// clean.
func TestPeriodicScript(t *testing.T) {
	t.Setenv("LIVECGI_EXEC_DIR", "/somewhere")
	t.Setenv("SECRET_COOKIE", "leaked")
	p, dir, _ := startIn(t, map[string]string{
		"fixture":   "21.5\n",
		"temp.sh":   "#!/bin/sh\nread v < fixture\necho \"$v\"\n",
		"temp.conf": "run = ./temp.sh\ninterval = 50ms\nunit = °C\n",
		"env.conf":  "run = /bin/sh -c 'echo \"$PATH|$HOME|$SECRET_COOKIE|$LIVECGI_EXEC_DIR|$(pwd)\"'\ninterval = 1s\ntype = text\n",
	})
	sl := slotOf(t, p, "temp", "")
	await(t, sl, "21.5", func(s state) bool { return s.val == 21.5 && s.err == "" })
	writeFile(t, filepath.Join(dir, "fixture"), "22\n")
	await(t, sl, "22", func(s state) bool { return s.val == 22.0 })

	want := programPath + "|||/somewhere|" + dir
	await(t, slotOf(t, p, "env", ""), "a clean environment", func(s state) bool { return s.val == want })

	def := p.definition()
	if len(def.Sensors) != 2 || def.Sensors[1].ID != "temp" || def.Sensors[1].Unit != "°C" || def.Sensors[1].Interval != 50*time.Millisecond {
		t.Errorf("sensors = %+v", def.Sensors)
	}
}

// TestGarbage: output that is not a value of the sensor's type is an
// error quoting the line; the last good value stays; the log says it.
func TestGarbage(t *testing.T) {
	p, dir, logs := startIn(t, map[string]string{
		"fixture":  "5\n",
		"num.conf": "run = /bin/cat fixture\ninterval = 50ms\ntype = number\nmax = 100\n",
	})
	sl := slotOf(t, p, "num", "")
	await(t, sl, "5", func(s state) bool { return s.val == 5.0 && s.err == "" })
	writeFile(t, filepath.Join(dir, "fixture"), "oops not a number\n")
	got := await(t, sl, "an error", func(s state) bool { return s.err != "" })
	if got.err != `want a number, got "oops not a number"` || got.val != 5.0 {
		t.Errorf("got %v, want the error quoting the line and the value 5 kept", got)
	}
	waitFor(t, "the log line", func() bool { return strings.Contains(logs.String(), `oops not a number`) })
	writeFile(t, filepath.Join(dir, "fixture"), "500\n")
	await(t, sl, "above max", func(s state) bool { return s.err == "500 is above max 100" && s.val == 5.0 })
	writeFile(t, filepath.Join(dir, "fixture"), "7\n")
	await(t, sl, "7", func(s state) bool { return s.err == "" && s.val == 7.0 })
}

// TestInferType: without type, the first line decides; a text sensor is
// described again as text.
func TestInferType(t *testing.T) {
	p, _, _ := startIn(t, map[string]string{
		"mode.conf": "run = /bin/echo running\ninterval = 1s\n",
		"up.conf":   "run = /bin/echo true\ninterval = 1s\n",
	})
	await(t, slotOf(t, p, "mode", ""), "running", func(s state) bool { return s.val == "running" })
	await(t, slotOf(t, p, "up", ""), "true", func(s state) bool { return s.val == true })
	waitFor(t, "a definition with the learnt types", func() bool {
		select {
		case def := <-p.changes:
			return def.Sensors[0].Type == sdk.Text && def.Sensors[1].Type == sdk.Bool
		default:
			return false
		}
	})
}

// TestHang: a program that hangs is killed after its timeout (an error
// reading each time) and the next run starts only after: runs never
// overlap.
func TestHang(t *testing.T) {
	p, dir, _ := startIn(t, map[string]string{
		"hang.sh": "#!/bin/sh\nfor p in $(cat runs 2>/dev/null); do kill -0 $p 2>/dev/null && echo \"$p alive\" >> overlap; done\n" +
			"echo $$ >> runs\nexec sleep 300\n",
		"hang.conf": "run = ./hang.sh\ninterval = 20ms\ntimeout = 200ms\n",
	})
	sl := slotOf(t, p, "hang", "")
	for range 3 {
		await(t, sl, "a timeout", func(s state) bool { return s.err == "killed after its 200ms timeout" })
		sl.fail("") // wait for the next one
	}
	if b, err := os.ReadFile(filepath.Join(dir, "overlap")); err == nil {
		t.Errorf("runs overlapped:\n%s", b)
	}
	if pids := readPIDs(t, filepath.Join(dir, "runs")); len(pids) < 3 {
		t.Errorf("%d runs, want 3 or more", len(pids))
	}
	p.close()
	for _, pid := range readPIDs(t, filepath.Join(dir, "runs")) {
		waitFor(t, "run "+strconv.Itoa(pid)+" to be gone", func() bool { return !testkit.Alive(pid) })
	}
}

// TestDoubleFork: what a program leaves behind (a double fork) is killed
// with its process group, after a periodic run and when a stream stops.
func TestDoubleFork(t *testing.T) {
	p, dir, _ := startIn(t, map[string]string{
		"fork.conf":   "run = /bin/sh -c '(sleep 300 & echo $! > grandchild); echo 1'\ninterval = 1h\n",
		"stream.conf": "run = /bin/sh -c '(sleep 300 & echo $! > stream_grandchild); while :; do echo 2; sleep 1; done'\nmode = stream\n",
	})
	await(t, slotOf(t, p, "fork", ""), "1", func(s state) bool { return s.val == 1.0 })
	pids := readPIDs(t, filepath.Join(dir, "grandchild"))
	if len(pids) != 1 {
		t.Fatalf("grandchild pids = %v", pids)
	}
	waitFor(t, "the periodic run's grandchild to be killed", func() bool { return !testkit.Alive(pids[0]) })

	await(t, slotOf(t, p, "stream", ""), "2", func(s state) bool { return s.val == 2.0 })
	pids = readPIDs(t, filepath.Join(dir, "stream_grandchild"))
	if len(pids) != 1 || !testkit.Alive(pids[0]) {
		t.Fatalf("stream's grandchild %v not running", pids)
	}
	os.Remove(filepath.Join(dir, "stream.conf"))
	waitFor(t, "the stream's grandchild to be killed once its conf is gone", func() bool { return !testkit.Alive(pids[0]) })
}

// TestFlood: a stream that prints 100000 lines at once reaches the
// sensor as a few readings, the newest winning; a line over maxLine is
// dropped with an error.
func TestFlood(t *testing.T) {
	p, dir, _ := startIn(t, map[string]string{
		"flood.sh": "#!/bin/sh\nwait_for() { while [ ! -e $1 ]; do sleep 0.01; done; }\n" +
			"wait_for go1\nhead -c 10000 /dev/zero | tr '\\0' x; echo\nwait_for go2\necho 7\nwait_for go3\nseq 1 100000\nexec sleep 300\n",
		"flood.conf": "run = ./flood.sh\nmode = stream\n",
	})
	sl := slotOf(t, p, "flood", "")
	var mu sync.Mutex
	var sent []any
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sl.watch(ctx, sdk.Number, func(r sdk.Reading, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			sent = append(sent, err.Error())
			return
		}
		sent = append(sent, r.Value())
	})
	writeFile(t, filepath.Join(dir, "go1"), "")
	await(t, sl, "the long line's error", func(s state) bool { return s.err == "line longer than 4096 bytes dropped" })
	waitFor(t, "the long line's error sent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sent) > 0 && sent[len(sent)-1] == "line longer than 4096 bytes dropped"
	})
	writeFile(t, filepath.Join(dir, "go2"), "")
	await(t, sl, "7 after the long line", func(s state) bool { return s.val == 7.0 && s.err == "" })
	writeFile(t, filepath.Join(dir, "go3"), "")
	await(t, sl, "the last line", func(s state) bool { return s.val == 100000.0 })
	waitFor(t, "the last line sent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sent) > 0 && sent[len(sent)-1] == 100000.0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(sent) > 1000 {
		t.Errorf("%d readings sent for 100000 lines: not capped", len(sent))
	}
}

// TestBroken: a conf or program that cannot be used says why on its
// sensor; the others carry on.
func TestBroken(t *testing.T) {
	p, dir, _ := startIn(t, map[string]string{
		"good.conf":    "run = /bin/echo 1\ninterval = 1s\n",
		"missing.conf": "run = /nonexistent/prog\n",
		"noexec.conf":  "run = ./noexec\n",
		"noexec":       "echo 1\n",
		"unknown.conf": "run = /bin/echo 1\n\ncolour = blue\n",
		"quits.conf":   "run = /bin/sh -c 'echo broken >&2; exit 3'\nmode = stream\n",
		"silent.conf":  "run = /bin/true\n",
	})
	writeFile(t, filepath.Join(dir, "open.conf"), "run = /bin/echo 1\n")
	os.Chmod(filepath.Join(dir, "open.conf"), 0o666)
	await(t, slotOf(t, p, "good", ""), "1", func(s state) bool { return s.val == 1.0 })
	for name, want := range map[string]string{
		"missing": "program /nonexistent/prog: no such file or directory",
		"noexec":  "program " + filepath.Join(dir, "noexec") + " is not an executable file (mode -rw-r--r--)",
		"quits":   "program exit status 3: broken; restart in",
		"silent":  "program printed nothing",
	} {
		got := await(t, slotOf(t, p, name, ""), name, func(s state) bool { return s.err != "" })
		if !strings.HasPrefix(got.err, want) {
			t.Errorf("%s: error %q, want %q", name, got.err, want)
		}
	}
	var unknown, open *loaded
	waitFor(t, "open.conf read", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		unknown, open = p.progs["unknown"], p.progs["open"]
		return open != nil
	})
	if unknown == nil || unknown.err == nil || unknown.err.Error() != "unknown.conf:3: unknown key colour" {
		t.Errorf("unknown key: %+v", unknown)
	}
	if open == nil || open.err == nil || !strings.Contains(open.err.Error(), "is writable by group or others") {
		t.Errorf("group-writable conf: %+v", open)
	}
	ids := []string{}
	for _, s := range p.definition().Sensors {
		ids = append(ids, s.ID)
	}
	if got := strings.Join(ids, " "); got != "good missing noexec open quits silent unknown" {
		t.Errorf("sensors %s", got)
	}
}

// TestCommand: a C program implements a command: validated arguments in
// LIVECGI_ARG_* and as JSON on stdin, its first line the result, a
// non-zero exit an error with its last stderr line; a hanging one is
// killed.
func TestCommand(t *testing.T) {
	p, dir, _ := startIn(t, map[string]string{
		"relay.conf": "command = set_relay\nrun = ./relay\ntitle = Relay\n" +
			"arg.relay = number required min=1 max=4\narg.state = text enum=on,off\n",
		"stuck.conf": "command = stuck\nrun = /bin/sleep 300\ntimeout = 100ms\n",
	})
	mustCC(t, filepath.Join(dir, "relay"), `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
	const char *relay = getenv("LIVECGI_ARG_RELAY"), *state = getenv("LIVECGI_ARG_STATE");
	char in[256] = "";
	size_t n = fread(in, 1, sizeof in - 1, stdin);
	in[n] = 0;
	if (!state) { fprintf(stderr, "starting\n"); fprintf(stderr, "relay %s: no state given\n", relay); return 2; }
	printf("{\"relay\":%s,\"state\":\"%s\",\"stdin\":%s}\n", relay, state, in);
	return 0;
}`)
	var c sdk.Command
	waitFor(t, "the command", func() bool {
		for _, x := range p.definition().Commands {
			if x.ID == "set_relay" {
				p.mu.Lock()
				ok := p.progs["relay"].prog.broken == nil
				p.mu.Unlock()
				c = x
				return ok
			}
		}
		return false
	})
	if len(c.Args) != 2 || c.Args[0].Name != "relay" || !c.Args[0].Required || *c.Args[0].Max != 4 || strings.Join(c.Args[1].Enum, ",") != "on,off" {
		t.Errorf("args = %+v", c.Args)
	}
	v, err := c.Do(context.Background(), map[string]any{"relay": 2.0, "state": "on"})
	if err != nil || fmt.Sprintf("%s", v) != `{"relay":2,"state":"on","stdin":{"relay":2,"state":"on"}}` {
		t.Errorf("Do = %s, %v", v, err)
	}
	_, err = c.Do(context.Background(), map[string]any{"relay": 3.0})
	if err == nil || err.Error() != "exit status 2: relay 3: no state given" {
		t.Errorf("Do without state: %v, want the exit status and the last stderr line", err)
	}
	var stuck sdk.Command
	for _, x := range p.definition().Commands {
		if x.ID == "stuck" {
			stuck = x
		}
	}
	if _, err := stuck.Do(context.Background(), nil); err == nil || err.Error() != "killed after its 100ms timeout" {
		t.Errorf("stuck: %v", err)
	}
}

// TestStreamC: a C program streaming "SENSOR VALUE" lines for a conf
// declaring two sensors; when it exits, each sensor says so and it is
// started again.
func TestStreamC(t *testing.T) {
	dir := t.TempDir()
	mustCC(t, filepath.Join(dir, "weather"), `
#include <stdio.h>
#include <unistd.h>
int main(void) {
	FILE *f = fopen("starts", "a"); fprintf(f, "x\n"); fclose(f);
	for (int i = 0; i < 3; i++) { printf("temp %d.5\nhum %d\n", 20 + i, 40 + i); fflush(stdout); usleep(10000); }
	printf("wind 3\n");
	return 0;
}`)
	writeFile(t, filepath.Join(dir, "weather.conf"), "run = ./weather\nmode = stream\nsensors = temp hum\nunit.temp = °C\nunit = %\ntitle.hum = Humidity\n")
	logs := &testkit.Buffer{}
	p := start(dir, slog.New(slog.NewTextHandler(logs, nil)))
	defer p.close()
	temp, hum := slotOf(t, p, "weather", "temp"), slotOf(t, p, "weather", "hum")
	await(t, temp, "22.5", func(s state) bool { return s.val == 22.5 })
	await(t, hum, "the exit", func(s state) bool { return s.val == 42.0 && strings.HasPrefix(s.err, "program exited; restart in") })
	waitFor(t, "a restart", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "starts"))
		return strings.Count(string(b), "x") >= 2
	})
	waitFor(t, "the bad line logged", func() bool { return strings.Contains(logs.String(), `got \"wind 3\"`) })
	def := p.definition()
	if len(def.Sensors) != 2 || def.Sensors[0].ID != "weather_temp" || def.Sensors[0].Unit != "°C" ||
		def.Sensors[1].ID != "weather_hum" || def.Sensors[1].Unit != "%" || def.Sensors[1].Title != "Humidity" {
		t.Errorf("sensors = %+v", def.Sensors)
	}
}

// TestLive: confs added, edited and removed, and a program replaced,
// change the definition while the plugin runs; a missing dir is followed
// once it appears.
func TestLive(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "exec.d")
	logs := &testkit.Buffer{}
	p := start(dir, slog.New(slog.NewTextHandler(logs, nil)))
	defer p.close()
	if def := p.definition(); len(def.Sensors)+len(def.Commands) != 0 {
		t.Fatalf("definition of a missing dir: %+v", def)
	}
	ids := func() string {
		var ids []string
		for _, s := range p.definition().Sensors {
			ids = append(ids, s.ID)
		}
		return strings.Join(ids, " ")
	}
	next := func(want string) {
		t.Helper()
		waitFor(t, "sensors "+want, func() bool {
			select {
			case <-p.changes:
			default:
			}
			return ids() == want
		})
	}
	os.Mkdir(dir, 0o755)
	writeFile(t, filepath.Join(dir, "a.conf"), "run = ./a.sh\n")
	writeFile(t, filepath.Join(dir, "a.sh"), "#!/bin/sh\necho 1\n")
	next("a")
	a := slotOf(t, p, "a", "")
	await(t, a, "1", func(s state) bool { return s.val == 1.0 })
	writeFile(t, filepath.Join(dir, "a.sh"), "#!/bin/sh\necho 2\n")
	waitFor(t, "2 from the new program", func() bool {
		p.mu.Lock()
		sl := p.progs["a"].prog.slots[""]
		p.mu.Unlock()
		sl.mu.Lock()
		defer sl.mu.Unlock()
		return sl.has && sl.val.Value() == 2.0
	})
	writeFile(t, filepath.Join(dir, "b.conf"), "run = /bin/echo 3\nsensors = x y\n")
	next("a b_x b_y")
	writeFile(t, filepath.Join(dir, "b.conf"), "run = /bin/echo 3\n")
	next("a b")
	os.Remove(filepath.Join(dir, "a.conf"))
	next("b")
}

// mustCC compiles C source with gcc into bin; without gcc the test is
// skipped, or fails under CI=true.
func mustCC(t testing.TB, bin, src string) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcc not installed (apt-get install gcc)")
		}
		t.Skip("gcc not installed")
	}
	c := bin + ".c"
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-O2", "-o", bin, c).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
}
