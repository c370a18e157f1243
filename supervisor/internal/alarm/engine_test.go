package alarm

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeClock is the engine's clock in tests: time moves only when the test
// says.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// rig is an engine on a fake clock, driven as livecgid drives it: one
// timer set to Next, Tick when it fires.
type rig struct {
	t   *testing.T
	c   *fakeClock
	e   *Engine
	all []Transition // every transition so far
}

// newRig parses rules ("name = rule") and starts an engine at t0.
func newRig(t *testing.T, rules ...string) *rig {
	t.Helper()
	var rs []Rule
	for _, kv := range rules {
		k, v, _ := strings.Cut(kv, "=")
		r, err := Parse(strings.TrimSpace(k), v)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	c := &fakeClock{t: t0}
	e, err := New(rs, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, c: c, e: e}
}

// advance moves the clock by d, running Tick at every Next on the way,
// and returns the transitions.
func (g *rig) advance(d time.Duration) []Transition {
	end := g.c.t.Add(d)
	var out []Transition
	for n := g.e.Next(); !n.IsZero() && !n.After(end); n = g.e.Next() {
		if n.Before(g.c.t) {
			g.t.Fatalf("Next %v is before now %v", n, g.c.t)
		}
		g.c.t = n
		trs := g.e.Tick()
		if len(trs) == 0 && g.e.Next().Equal(n) {
			g.t.Fatalf("Tick at Next %v did nothing and Next stays", n)
		}
		out = append(out, trs...)
	}
	g.c.t = end
	g.all = append(g.all, out...)
	return out
}

// observe sends a good reading of sensor now.
func (g *rig) observe(sensor string, v float64) []Transition {
	out := g.e.Observe(sensor, v, true)
	g.all = append(g.all, out...)
	return out
}

// want checks that trs is exactly the transitions "name:prev>state@offset"
// (offset from t0).
func (g *rig) want(trs []Transition, want ...string) {
	g.t.Helper()
	var got []string
	for _, tr := range trs {
		got = append(got, fmt.Sprintf("%s:%s>%s@%v", tr.Name, tr.Previous, tr.State.State, tr.Since.Sub(t0)))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		g.t.Fatalf("transitions %q, want %q", got, want)
	}
}

func (g *rig) state(name string) State {
	for _, s := range g.e.States() {
		if s.Name == name {
			return s
		}
	}
	g.t.Fatalf("no alarm %s", name)
	return State{}
}

func TestRaiseAndClear(t *testing.T) {
	g := newRig(t, "hot = system.board_temp above 70")
	g.e.SetSensor("system.board_temp", "celsius", 0)
	if s := g.state("hot"); s.State != OK || !s.Since.Equal(t0) || s.Value != nil {
		t.Fatalf("before any reading: %+v", s)
	}
	g.want(g.observe("system.board_temp", 60))
	g.advance(time.Second)
	g.want(g.observe("system.board_temp", 70)) // not above
	g.advance(time.Second)
	trs := g.observe("system.board_temp", 72.5)
	g.want(trs, "hot:ok>warning@2s")
	if tr := trs[0]; *tr.Value != 72.5 || tr.Severity != Warning || tr.Message != "system.board_temp 72.5 celsius above 70" {
		t.Fatalf("transition %+v", tr)
	}
	g.advance(time.Second)
	g.want(g.observe("system.board_temp", 99))
	g.want(g.e.Observe("system.board_temp", 0, false)) // an error reading clears nothing
	g.advance(time.Second)
	trs = g.observe("system.board_temp", 70)
	g.want(trs, "hot:warning>ok@4s")
	if trs[0].Message != "system.board_temp 70 celsius not above 70" {
		t.Fatalf("message %q", trs[0].Message)
	}
	g.want(g.observe("other.sensor", 1000)) // no rule watches it
}

func TestForIgnoresShortSpike(t *testing.T) {
	g := newRig(t, "hot = system.t above 70 for 1m")
	g.observe("system.t", 75)
	g.advance(30 * time.Second)
	g.want(g.observe("system.t", 70)) // back, not above: the minute starts again
	g.want(g.advance(5 * time.Minute))
	if !g.e.Next().IsZero() {
		t.Fatalf("Next %v with nothing pending", g.e.Next())
	}
	g.observe("system.t", 75) // at 5m30s
	g.advance(59 * time.Second)
	g.want(g.observe("system.t", 80))
	if want := t0.Add(6*time.Minute + 30*time.Second); !g.e.Next().Equal(want) {
		t.Fatalf("Next %v, want %v", g.e.Next(), want)
	}
	// No reading said otherwise for a minute: it raises then, by Tick.
	trs := g.advance(10 * time.Second)
	g.want(trs, "hot:ok>warning@6m30s")
	if trs[0].Message != "system.t 80 above 70 for 1m0s" {
		t.Fatalf("message %q", trs[0].Message)
	}
	// Raised, it clears at once.
	g.want(g.observe("system.t", 69), "hot:warning>ok@6m39s")
	// A reading past the minute raises too, when no Tick came first.
	g.observe("system.t", 71)
	g.c.t = g.c.t.Add(2 * time.Minute)
	g.want(g.observe("system.t", 71), "hot:ok>warning@8m39s")
}

func TestHysteresis(t *testing.T) {
	t.Run("above", func(t *testing.T) {
		g := newRig(t, "hot = system.t above 70 clear 65")
		g.want(g.observe("system.t", 70.1), "hot:ok>warning@0s")
		for _, v := range []float64{68, 70, 65.01, 80} {
			g.want(g.observe("system.t", v))
		}
		g.advance(time.Second)
		trs := g.observe("system.t", 65)
		g.want(trs, "hot:warning>ok@1s")
		if trs[0].Message != "system.t 65 not above 65" {
			t.Fatalf("message %q", trs[0].Message)
		}
		g.want(g.observe("system.t", 68)) // in the band, ok stays ok
		g.want(g.observe("system.t", 71), "hot:ok>warning@1s")
	})
	t.Run("below", func(t *testing.T) {
		g := newRig(t, "low = ups.charge below 20 clear 25")
		g.want(g.observe("ups.charge", 20))
		g.want(g.observe("ups.charge", 19), "low:ok>warning@0s")
		g.want(g.observe("ups.charge", 24.9))
		g.want(g.observe("ups.charge", 25), "low:warning>ok@0s")
	})
}

func TestSeverity(t *testing.T) {
	g := newRig(t, "warm = system.t above 70", "hot = system.t above 80 critical", "bool = gpio.fan below 0.5 critical")
	g.want(g.observe("system.t", 75), "warm:ok>warning@0s")
	trs := g.observe("system.t", 85)
	g.want(trs, "hot:ok>critical@0s")
	if trs[0].Severity != Critical {
		t.Fatalf("severity %q", trs[0].Severity)
	}
	f, ok := Number(false)
	g.want(g.e.Observe("gpio.fan", f, ok), "bool:ok>critical@0s")
	g.want(g.observe("system.t", 0), "hot:critical>ok@0s", "warm:warning>ok@0s")
	// Clearing reports the rule's severity too, for the program.
	if trs := g.e.Observe("gpio.fan", 1, true); len(trs) != 1 || trs[0].Severity != Critical || trs[0].State.State != OK {
		t.Fatalf("%+v", trs)
	}
}

func TestNumber(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want float64
		ok   bool
	}{{72.5, 72.5, true}, {true, 1, true}, {false, 0, true}, {"72.5", 0, false}, {nil, 0, false}} {
		if f, ok := Number(tc.v); f != tc.want || ok != tc.ok {
			t.Errorf("Number(%#v) = %v, %v", tc.v, f, ok)
		}
	}
}

func TestStale(t *testing.T) {
	g := newRig(t, "hot = system.t above 70 clear 65", "slow = system.t above 50 for 1m", "other = system.u below 1")
	g.e.SetSensor("system.t", "", 10*time.Second)
	g.e.SetSensor("nobody.watches", "", time.Second)
	if want := t0.Add(20 * time.Second); !g.e.Next().Equal(want) {
		t.Fatalf("Next %v, want %v", g.e.Next(), want)
	}
	g.advance(5 * time.Second)
	g.observe("system.t", 60)
	// Error readings are no sign of life.
	for range 10 {
		g.advance(time.Second)
		g.e.Observe("system.t", 0, false)
	}
	trs := g.advance(time.Minute)
	g.want(trs, "hot:ok>stale@25s", "slow:ok>stale@25s")
	if trs[0].Message != "system.t sent no reading for 20s (twice its 10s heartbeat)" || *trs[0].Value != 60 {
		t.Fatalf("%+v", trs[0])
	}
	if !g.e.Next().IsZero() {
		t.Fatalf("Next %v: nothing left to time", g.e.Next())
	}
	// Back with a value above 70: hot at once, slow after its minute
	// (the one that started before the silence does not count).
	g.want(g.observe("system.t", 75), "hot:stale>warning@1m15s", "slow:stale>ok@1m15s")
	for range 12 {
		g.advance(5 * time.Second)
		g.observe("system.t", 75)
	}
	g.want(g.all[len(g.all)-1:], "slow:ok>warning@2m15s")
	// Raised alarms go stale, and come back raised with a value in their
	// band (hot: 65 < 66 <= 70).
	g.want(g.advance(time.Minute), "hot:warning>stale@2m35s", "slow:warning>stale@2m35s")
	g.want(g.observe("system.t", 66), "hot:stale>warning@3m15s", "slow:stale>warning@3m15s")
	if s := g.state("other"); s.State != OK {
		t.Fatalf("an alarm without a heartbeat goes stale: %+v", s)
	}
}

// TestStaleCutsFor: a sensor that goes silent in a `for` window does not
// raise at its end.
func TestStaleCutsFor(t *testing.T) {
	g := newRig(t, "slow = system.t above 50 for 1m")
	g.e.SetSensor("system.t", "", 10*time.Second)
	g.observe("system.t", 75)
	g.want(g.advance(5*time.Minute), "slow:ok>stale@20s")
}

func TestFlappingBounded(t *testing.T) {
	g := newRig(t, "hot = system.t above 70")
	var v float64
	for i := range 200 { // a value crossing every second
		v = 65 + float64(i%2)*10
		g.observe("system.t", v)
		g.advance(time.Second)
	}
	if len(g.all) != FlapLimit+1 {
		t.Fatalf("%d transitions in 200 s of flapping, want %d", len(g.all), FlapLimit+1)
	}
	s := g.state("hot")
	if s.State != Warning || !strings.Contains(s.Message, "flapping") {
		t.Fatalf("held state %+v", s)
	}
	// Quiet below the threshold: it clears once that held FlapQuiet, at
	// the end of it, by Tick.
	g.all = nil
	quietFrom := g.c.t
	g.observe("system.t", 60)
	for range 30 {
		g.advance(10 * time.Second)
		g.observe("system.t", 60)
	}
	g.want(g.all, fmt.Sprintf("hot:warning>ok@%v", quietFrom.Add(FlapQuiet).Sub(t0)))

	// Flapping for an hour: bounded per window, far from 3600.
	g.all = nil
	for i := range 3600 {
		g.observe("system.t", 65+float64(i%2)*10)
		g.advance(time.Second)
	}
	if max := (int(time.Hour/FlapWindow) + 1) * (FlapLimit + 1); len(g.all) > max {
		t.Fatalf("%d transitions in an hour of flapping, want at most %d", len(g.all), max)
	}
	t.Logf("%d transitions in an hour of a value crossing every second", len(g.all))
}

// TestFlappingStillRaises: a flapping alarm that is ok raises at once.
func TestFlappingStillRaises(t *testing.T) {
	g := newRig(t, "hot = system.t above 70")
	for i := range FlapLimit {
		g.observe("system.t", 75-float64(i%2)*10)
		g.advance(time.Second)
	}
	if s := g.state("hot"); s.State != OK {
		t.Fatalf("%+v", s)
	}
	g.want(g.observe("system.t", 75), "hot:ok>warning@6s")
}

func TestNewRejectsTwins(t *testing.T) {
	r, _ := Parse("hot", "a.b above 1")
	if _, err := New([]Rule{r, r}, nil); err == nil {
		t.Fatal("two alarms of one name accepted")
	}
}

// TestFlappingThenSilent: a flapping alarm whose sensor goes silent shows
// stale once that held FlapQuiet.
func TestFlappingThenSilent(t *testing.T) {
	g := newRig(t, "hot = system.t above 70")
	g.e.SetSensor("system.t", "", time.Second)
	for i := range 20 {
		g.observe("system.t", 65+float64(i%2)*10)
		g.advance(time.Second)
	}
	silentFrom := g.c.t.Add(time.Second) // the last reading was a second ago
	g.all = nil
	g.advance(time.Hour)
	g.want(g.all, fmt.Sprintf("hot:warning>stale@%v", silentFrom.Add(FlapQuiet).Sub(t0)))
}
