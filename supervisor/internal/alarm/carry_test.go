package alarm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// reload starts a new engine with rules on g's clock, carrying g's state.
func (g *rig) reload(rules ...string) *rig {
	g.t.Helper()
	n := newRig(g.t, rules...)
	n.c = g.c
	n.e.now = g.c.now
	n.e.Carry(g.e)
	return n
}

// TestCarry: new rules keep the state of the alarms that stay: an
// unchanged rule its `for` window, its raised state and its sensor's
// silence; a changed rule on the same sensor its state until the next
// reading re-evaluates it; an alarm moved to another sensor, or new,
// starts ok; a removed one is gone.
func TestCarry(t *testing.T) {
	g := newRig(t, "hot = system.t above 70 for 1m clear 65 critical", "warm = system.t above 50",
		"slow = system.t above 85 for 1m", "gone = system.t above 1", "moved = system.t above 5")
	g.e.SetSensor("system.t", "celsius", time.Minute)
	for range 13 {
		g.observe("system.t", 80)
		g.advance(5 * time.Second)
	}
	g.want(g.all, "gone:ok>warning@0s", "moved:ok>warning@0s", "warm:ok>warning@0s", "hot:ok>critical@1m0s")
	hot := g.state("hot")
	// slow's window opens, and runs for 30 s of its minute.
	for range 6 {
		g.observe("system.t", 90)
		g.advance(5 * time.Second)
	}

	n := g.reload("hot = system.t above 70 for 1m clear 65 critical", "warm = system.t above 75 clear 70",
		"slow = system.t above 85 for 1m", "moved = system.u above 5", "new = system.t below 0")
	var names []string
	for _, s := range n.e.States() {
		names = append(names, s.Name+":"+s.State)
	}
	if want := []string{"hot:critical", "moved:ok", "new:ok", "slow:ok", "warm:warning"}; !slices.Equal(names, want) {
		t.Fatalf("after the reload %q, want %q", names, want)
	}
	if s := n.state("hot"); !same(s, hot) {
		t.Fatalf("hot %+v, want %+v", s, hot)
	}
	// slow's window runs on: 30 s are left of its minute.
	n.want(n.advance(30*time.Second), "slow:ok>warning@2m5s")
	// warm, changed, is re-evaluated by the next reading under its new
	// rule: 72 is in its new band (clear 70), so it stays raised.
	n.want(n.observe("system.t", 72), "slow:warning>ok@2m5s")
	n.want(n.observe("system.t", 70), "warm:warning>ok@2m5s")
	// The sensor's heartbeat came along: silent, its alarms go stale.
	n.want(n.advance(3*time.Minute), "hot:critical>stale@4m5s", "new:ok>stale@4m5s", "slow:ok>stale@4m5s", "warm:ok>stale@4m5s")
	if s := n.state("hot"); !strings.Contains(s.Message, "twice its 1m0s heartbeat") {
		t.Fatalf("hot %+v", s)
	}
}

// TestRunnerClose: Close runs what was queued, refuses more, and Run
// returns.
func TestRunnerClose(t *testing.T) {
	dir := t.TempDir()
	prog := script(t, dir, "slow", fmt.Sprintf("while [ ! -e %s/release ]; do sleep 0.01; done\necho $LIVECGI_ALARM_NAME\n", dir))
	results := make(chan Result, 4)
	x, err := NewRunner(RunnerConfig{Argv: []string{prog}, Done: func(r Result) { results <- r }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		x.Run(context.Background())
		close(done)
	}()
	for _, name := range []string{"a", "b"} {
		tr := testTransition
		tr.Name = name
		if !x.Submit(tr) {
			t.Fatalf("%s dropped", name)
		}
	}
	x.Close()
	x.Close() // twice is fine
	if x.Submit(testTransition) {
		t.Fatal("Submit after Close took a transition")
	}
	os.WriteFile(filepath.Join(dir, "release"), nil, 0o600)
	for _, want := range []string{"a", "b"} {
		if r := next(t, results); strings.TrimSpace(r.Output) != want || r.Err != nil {
			t.Fatalf("result %+v, want %s", r, want)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after Close")
	}
}
