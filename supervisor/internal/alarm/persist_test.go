package alarm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// restart saves g's engine to a file and starts a new one an hour later
// with rules, loading it.
func (g *rig) restart(rules ...string) *rig {
	g.t.Helper()
	path := filepath.Join(g.t.TempDir(), StateFile)
	if err := g.e.SaveFile(path); err != nil {
		g.t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		g.t.Fatalf("saved file: %v, %v", fi.Mode(), err)
	}
	n := newRig(g.t, rules...)
	n.c.t = g.c.t.Add(time.Hour)
	if err := n.e.LoadFile(path); err != nil {
		g.t.Fatal(err)
	}
	return n
}

func TestSaveLoad(t *testing.T) {
	rules := []string{"hot = system.t above 70 for 1m clear 65 critical", "cold = system.t below 0", "gone = system.t above 1", "moved = system.t above 5"}
	g := newRig(t, rules...)
	g.e.SetSensor("system.t", "celsius", 10*time.Second)
	for range 13 {
		g.observe("system.t", 80)
		g.advance(5 * time.Second)
	}
	g.want(g.all, "gone:ok>warning@0s", "moved:ok>warning@0s", "hot:ok>critical@1m0s")
	before := g.state("hot")

	// Restarted with "gone" removed and "moved" on another sensor: the
	// active alarm stays critical, since and message kept, without a
	// transition, the dropped ones are gone, the moved one starts ok.
	n := g.restart("hot = system.t above 70 for 1m clear 65 critical", "cold = system.t below 0", "moved = system.u above 5")
	states := n.e.States()
	if len(states) != 3 || !same(states[1], before) {
		t.Fatalf("after load %+v, want hot %+v", states, before)
	}
	if s := n.state("moved"); s.State != OK {
		t.Fatalf("moved: %+v", s)
	}
	n.e.SetSensor("system.t", "celsius", 10*time.Second)
	// A fresh reading in the band keeps it, with its since; no `for` to
	// wait again.
	n.advance(time.Second)
	n.want(n.observe("system.t", 68))
	if s := n.state("hot"); !same(s, before) {
		t.Fatalf("after a reading in the band: %+v, want %+v", s, before)
	}
	// Past clear, it clears: a transition, not a silent loss.
	n.want(n.observe("system.t", 65), "hot:critical>ok@1h1m6s")
}

// TestRestartSilentSensorGoesStale: a sensor that does not come back
// after the restart turns its active alarm stale.
func TestRestartSilentSensorGoesStale(t *testing.T) {
	g := newRig(t, "hot = system.t above 70")
	g.observe("system.t", 80)
	n := g.restart("hot = system.t above 70")
	n.e.SetSensor("system.t", "", time.Second)
	n.want(n.advance(time.Minute), "hot:warning>stale@1h0m2s")
	// And back, still above: raised again.
	n.want(n.observe("system.t", 75), "hot:stale>warning@1h1m0s")
}

// TestRestartStale: a stale alarm that was raised stays stale, then comes
// back raised within its band.
func TestRestartStale(t *testing.T) {
	g := newRig(t, "hot = system.t above 70 clear 60")
	g.e.SetSensor("system.t", "", time.Second)
	g.observe("system.t", 80)
	g.advance(time.Minute)
	g.want(g.all, "hot:ok>warning@0s", "hot:warning>stale@2s")
	n := g.restart("hot = system.t above 70 clear 60")
	if s := n.state("hot"); s.State != Stale {
		t.Fatalf("%+v", s)
	}
	n.want(n.observe("system.t", 65), "hot:stale>warning@1h1m0s")
}

func TestLoadErrors(t *testing.T) {
	g := newRig(t, "hot = system.t above 70")
	if err := g.e.LoadFile(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Fatalf("a missing file: %v", err)
	}
	for _, in := range []string{"", "{", `{"version":2,"alarms":[]}`} {
		if err := g.e.Load(strings.NewReader(in)); err == nil {
			t.Errorf("Load(%q) took it", in)
		}
	}
	// An unknown state is dropped, not taken.
	err := g.e.Load(strings.NewReader(`{"version":1,"alarms":[{"name":"hot","sensor":"system.t","state":"red","since":"2025-01-01T00:00:00Z"}]}`))
	if s := g.state("hot"); err != nil || s.State != OK || !s.Since.Equal(t0) {
		t.Fatalf("%+v, %v", s, err)
	}
	var b bytes.Buffer
	if err := g.e.Save(&b); err != nil || !strings.HasPrefix(b.String(), `{"version":1,"alarms":[{"name":"hot","sensor":"system.t","state":"ok","since":"2025-01-02T03:04:05Z","message":""}]}`) {
		t.Fatalf("saved %s, %v", b.String(), err)
	}
}

// same reports whether a and b are the same state, their values equal.
func same(a, b State) bool {
	if (a.Value == nil) != (b.Value == nil) || a.Value != nil && *a.Value != *b.Value {
		return false
	}
	return a.Since.Equal(b.Since) && a.Name == b.Name && a.Sensor == b.Sensor && a.State == b.State && a.Message == b.Message
}
