package alarm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// script writes a shell script into dir and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// startRunner starts a Runner for c whose results come out of the
// returned channel; it stops with the test.
func startRunner(t *testing.T, c RunnerConfig) (*Runner, <-chan Result) {
	t.Helper()
	results := make(chan Result, 16)
	c.Done = func(r Result) { results <- r }
	x, err := NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		x.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("the runner did not stop in a minute")
		}
	})
	return x, results
}

// next waits for the next result, at most a minute (the machine may be
// slow, but not that slow).
func next(t *testing.T, results <-chan Result) Result {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(time.Minute):
		t.Fatal("no result after a minute")
		return Result{}
	}
}

// waitFor polls until ok or a deadline of a minute.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(time.Minute); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("still not %s after a minute", what)
		}
	}
}

// gone reports whether process pid has exited (a zombie, or reaped).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')') // the name may hold spaces
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// readPid reads a pid a script wrote.
func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // the runner failed to: leave nothing behind
		if !gone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pid
}

var testTransition = Transition{
	State: State{
		Name: "hot", Sensor: "system.board_temp", State: Critical, Value: ptr(72.5),
		Since: time.Date(2025, 1, 2, 3, 4, 5, 600e6, time.FixedZone("CET", 3600)), Message: "system.board_temp 72.5 celsius above 70",
	},
	Previous: OK, Severity: Critical,
}

func ptr(f float64) *float64 { return &f }

// TestRunnerEnv: the program gets exactly PATH and the LIVECGI_ALARM_*
// variables, and is found in ProgramPath when named bare.
func TestRunnerEnv(t *testing.T) {
	x, results := startRunner(t, RunnerConfig{Argv: []string{"env"}})
	x.Submit(testTransition)
	r := next(t, results)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	got := strings.Split(strings.TrimSuffix(r.Output, "\n"), "\n")
	slices.Sort(got)
	want := []string{
		"LIVECGI_ALARM_MESSAGE=system.board_temp 72.5 celsius above 70",
		"LIVECGI_ALARM_NAME=hot",
		"LIVECGI_ALARM_PREVIOUS=ok",
		"LIVECGI_ALARM_SENSOR=system.board_temp",
		"LIVECGI_ALARM_SEVERITY=critical",
		"LIVECGI_ALARM_SINCE=2025-01-02T02:04:05Z",
		"LIVECGI_ALARM_STATE=critical",
		"LIVECGI_ALARM_VALUE=72.5",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("environment\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// No value (stale before any reading): empty.
	tr := testTransition
	tr.Value = nil
	x.Submit(tr)
	if r := next(t, results); !strings.Contains(r.Output, "LIVECGI_ALARM_VALUE=\n") {
		t.Fatalf("no value: %s", r.Output)
	}
}

// TestRunnerTimeoutKillsGroup: a program past its timeout is killed with
// what it started.
func TestRunnerTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	prog := script(t, dir, "hang", fmt.Sprintf("sleep 1000 &\necho $! >%[1]s/grandchild\necho $$ >%[1]s/child\nwait\n", dir))
	const timeout = 3 * time.Second // time enough for a busy machine to start the script
	x, results := startRunner(t, RunnerConfig{Argv: []string{prog}, Timeout: timeout})
	x.Submit(testTransition)
	r := next(t, results)
	if r.Err == nil || r.Err.Error() != "killed after its 3s timeout" || r.Elapsed < timeout {
		t.Fatalf("result %+v", r)
	}
	for _, f := range []string{"child", "grandchild"} {
		pid := readPid(t, filepath.Join(dir, f))
		waitFor(t, fmt.Sprintf("%s %d gone", f, pid), func() bool { return gone(pid) })
	}
}

// TestRunnerKillsLeftovers: what a program leaves running in its group
// is killed when it exits.
func TestRunnerKillsLeftovers(t *testing.T) {
	dir := t.TempDir()
	prog := script(t, dir, "fork", fmt.Sprintf("sleep 1000 &\necho $! >%s/grandchild\necho started\n", dir))
	x, results := startRunner(t, RunnerConfig{Argv: []string{prog}})
	x.Submit(testTransition)
	if r := next(t, results); r.Err != nil || r.Output != "started\n" {
		t.Fatalf("result %+v", r)
	}
	pid := readPid(t, filepath.Join(dir, "grandchild"))
	waitFor(t, "grandchild gone", func() bool { return gone(pid) })
}

func TestRunnerFailures(t *testing.T) {
	dir := t.TempDir()
	loud := script(t, dir, "loud", "i=0\nwhile [ $i -lt 100 ]; do echo 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789; i=$((i+1)); done\necho boom >&2\nexit 3\n")
	x, results := startRunner(t, RunnerConfig{Argv: []string{loud}})
	x.Submit(testTransition)
	if r := next(t, results); r.Err == nil || r.Err.Error() != "exit status 3" || len(r.Output) != MaxOutput || !r.Cut {
		t.Fatalf("err %v, %d bytes of output, cut %v", r.Err, len(r.Output), r.Cut)
	}
	missing := filepath.Join(dir, "missing")
	x, results = startRunner(t, RunnerConfig{Argv: []string{missing}})
	x.Submit(testTransition)
	if r := next(t, results); r.Err == nil || r.Err.Error() != "start "+missing+": no such file or directory" {
		t.Fatalf("err %v", r.Err)
	}
	if _, err := NewRunner(RunnerConfig{}); err == nil {
		t.Fatal("no program taken")
	}
}

// TestRunnerQueue: transitions run one at a time, in order; Submit never
// blocks, and drops past the queue, counted in the next result.
func TestRunnerQueue(t *testing.T) {
	dir := t.TempDir()
	prog := script(t, dir, "slow", fmt.Sprintf("touch %[1]s/started_$LIVECGI_ALARM_NAME\nwhile [ ! -e %[1]s/release ]; do sleep 0.01; done\necho $LIVECGI_ALARM_NAME\n", dir))
	x, results := startRunner(t, RunnerConfig{Argv: []string{prog}, Queue: 2})
	submit := func(name string) bool {
		tr := testTransition
		tr.Name = name
		return x.Submit(tr)
	}
	if !submit("a") {
		t.Fatal("a dropped")
	}
	waitFor(t, "a started", func() bool {
		_, err := os.Stat(filepath.Join(dir, "started_a"))
		return err == nil
	})
	if got := []bool{submit("b"), submit("c"), submit("d"), submit("e")}; !slices.Equal(got, []bool{true, true, false, false}) {
		t.Fatalf("Submit b..e = %v", got)
	}
	os.WriteFile(filepath.Join(dir, "release"), nil, 0o600)
	var got []string
	for range 3 {
		r := next(t, results)
		got = append(got, fmt.Sprintf("%s:%d", strings.TrimSpace(r.Output), r.Dropped))
	}
	if want := []string{"a:2", "b:0", "c:0"}; !slices.Equal(got, want) {
		t.Fatalf("results %v, want %v", got, want)
	}
}

// TestRunnerStop: stopping the runner kills the program it runs.
func TestRunnerStop(t *testing.T) {
	dir := t.TempDir()
	prog := script(t, dir, "hang", fmt.Sprintf("echo $$ >%s/child\nexec sleep 1000\n", dir))
	results := make(chan Result, 1)
	x, err := NewRunner(RunnerConfig{Argv: []string{prog}, Done: func(r Result) { results <- r }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		x.Run(ctx)
		close(done)
	}()
	x.Submit(testTransition)
	child := filepath.Join(dir, "child")
	waitFor(t, "started", func() bool {
		b, _ := os.ReadFile(child)
		return bytes.HasSuffix(b, []byte("\n"))
	})
	cancel()
	<-done
	if r := next(t, results); r.Err == nil || r.Err.Error() != "stopped" {
		t.Fatalf("result %+v", r)
	}
	pid := readPid(t, child)
	waitFor(t, "program gone", func() bool { return gone(pid) })
}

// TestLog: a JSON line per transition and per run.
func TestLog(t *testing.T) {
	var b bytes.Buffer
	l := NewLog(&b)
	if err := l.Transition(testTransition); err != nil {
		t.Fatal(err)
	}
	tr := testTransition
	tr.Value = nil
	if err := l.Exec(Result{Transition: tr, Err: fmt.Errorf("exit status 3"), Output: "boom\n", Cut: true, Elapsed: 1500 * time.Millisecond, Dropped: 2}); err != nil {
		t.Fatal(err)
	}
	if err := l.Exec(Result{Transition: tr}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	want := `{"time":"2025-01-02T02:04:05.600Z","event":"transition","name":"hot","sensor":"system.board_temp","state":"critical","previous":"ok","severity":"critical","value":72.5,"message":"system.board_temp 72.5 celsius above 70"}`
	if lines[0] != want {
		t.Fatalf("transition line\n%s\nwant\n%s", lines[0], want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "time")
	if got := fmt.Sprint(m); got != "map[dropped:2 elapsed_ms:1500 event:exec name:hot output:boom\n output_cut:true previous:ok result:exit status 3 sensor:system.board_temp severity:critical state:critical]" {
		t.Fatalf("exec line %s", got)
	}
	if !strings.Contains(lines[2], `"result":"ok","elapsed_ms":0}`) {
		t.Fatalf("exec line %s", lines[2])
	}
}

// TestEngineToProgram: a sensor driven across its threshold and back runs
// the program once per transition, in order, and logs each.
func TestEngineToProgram(t *testing.T) {
	dir := t.TempDir()
	prog := script(t, dir, "notify", fmt.Sprintf("echo \"$LIVECGI_ALARM_PREVIOUS>$LIVECGI_ALARM_STATE $LIVECGI_ALARM_VALUE\" >>%s/notified\n", dir))
	var logBuf bytes.Buffer
	log := NewLog(&logBuf)
	x, results := startRunner(t, RunnerConfig{Argv: []string{prog}})
	g := newRig(t, "hot = system.t above 70 clear 65")
	for _, v := range []float64{60, 75, 68, 80, 64} {
		g.advance(time.Second)
		for _, tr := range g.observe("system.t", v) {
			log.Transition(tr)
			x.Submit(tr)
		}
	}
	for range 2 {
		log.Exec(next(t, results))
	}
	b, _ := os.ReadFile(filepath.Join(dir, "notified"))
	if string(b) != "ok>warning 75\nwarning>ok 64\n" {
		t.Fatalf("program saw %q", b)
	}
	if n := strings.Count(logBuf.String(), `"event":"transition"`); n != 2 || strings.Count(logBuf.String(), `"result":"ok"`) != 2 {
		t.Fatalf("log:\n%s", logBuf.String())
	}
}
