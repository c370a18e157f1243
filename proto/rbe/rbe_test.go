package rbe

import (
	"errors"
	"math"
	"testing"
	"time"
)

// step is one reading offered to a Filter: its value, error and time (in
// seconds after t0), and whether it must pass.
type step struct {
	v    any
	err  string
	at   float64
	pass bool
}

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func TestPass(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name      string
		deadband  float64
		heartbeat time.Duration
		steps     []step
	}{
		{"off: every reading", 0, 0, []step{
			{1.0, "", 0, true}, {1.0, "", 0, true}, {1.0, "", 1, true}, {"x", "", 2, true}, {nil, "e", 3, true}, {nil, "e", 3, true}}},
		{"first passes", 5, time.Hour, []step{{1.0, "", 0, true}}},
		{"deadband 0: every change, no repeat", 0, time.Minute, []step{
			{1.0, "", 0, true}, {1.0, "", 1, false}, {1.0000001, "", 2, true}, {1.0000001, "", 3, false}}},
		{"deadband: strictly more than", 0.5, time.Hour, []step{
			{10.0, "", 0, true}, {10.5, "", 1, false}, {9.5, "", 2, false}, {10.51, "", 3, true}, {10.2, "", 4, false}, {9.99, "", 5, true}}},
		{"against the last sent, not the last read", 0.5, time.Hour, []step{
			{10.0, "", 0, true}, {10.3, "", 1, false}, {10.6, "", 2, true}, {10.3, "", 3, false}, {10.2, "", 4, false}, {10.0, "", 5, true}}},
		{"heartbeat: at and after, not before", 1, time.Minute, []step{
			{1.0, "", 0, true}, {1.0, "", 59.999, false}, {1.0, "", 60, true}, {1.0, "", 119, false}, {1.0, "", 125, true}}},
		{"a change restarts the heartbeat", 0, time.Minute, []step{
			{1.0, "", 0, true}, {2.0, "", 30, true}, {2.0, "", 60, false}, {2.0, "", 90, true}}},
		{"no heartbeat: once", 1, 0, []step{
			{1.0, "", 0, true}, {1.5, "", 3600, false}, {1.5, "", 1e6, false}, {2.5, "", 1e6, true}}},
		{"clock went back: heartbeat due", 0, time.Minute, []step{
			{1.0, "", 100, true}, {1.0, "", 50, true}, {1.0, "", 60, false}}},
		{"text: any change", 0, time.Hour, []step{
			{"a", "", 0, true}, {"a", "", 1, false}, {"b", "", 2, true}, {"", "", 3, true}, {"", "", 4, false}}},
		{"text ignores the deadband", 100, time.Hour, []step{{"a", "", 0, true}, {"b", "", 1, true}}},
		{"flag: any change", 0, time.Hour, []step{
			{false, "", 0, true}, {false, "", 1, false}, {true, "", 2, true}, {true, "", 3, false}, {false, "", 4, true}}},
		{"kind changes", 10, time.Hour, []step{
			{1.0, "", 0, true}, {"1", "", 1, true}, {true, "", 2, true}, {nil, "", 3, true}, {nil, "", 4, false}, {0.0, "", 5, true}}},
		{"errors appear, change and clear", 10, time.Hour, []step{
			{1.0, "", 0, true}, {nil, "unplugged", 1, true}, {nil, "unplugged", 2, false}, {nil, "gone", 3, true},
			{1.0, "gone", 4, true}, {1.0, "gone", 5, false}, {1.0, "", 6, true}, {1.0, "", 7, false}}},
		{"error with the last good value: deadband applies", 1, time.Hour, []step{
			{5.0, "stale", 0, true}, {5.5, "stale", 1, false}, {6.5, "stale", 2, true}}},
		{"NaN", 1, time.Hour, []step{
			{1.0, "", 0, true}, {nan, "", 1, true}, {nan, "", 2, false}, {1.0, "", 3, true}}},
		{"infinities", 1, time.Hour, []step{
			{inf, "", 0, true}, {inf, "", 1, false}, {-inf, "", 2, true}, {1e308, "", 3, true}, {1e308, "", 4, false}}},
		{"signed zeros are equal", 0, time.Hour, []step{{0.0, "", 0, true}, {math.Copysign(0, -1), "", 1, false}}},
		{"unknown types always pass", 1, time.Hour, []step{{int(1), "", 0, true}, {int(1), "", 1, true}}},
		{"invalid deadband: every change", -1, time.Hour, []step{{1.0, "", 0, true}, {1.0, "", 1, false}, {1.1, "", 2, true}}},
		{"NaN deadband: every change", nan, time.Hour, []step{{1.0, "", 0, true}, {1.1, "", 1, true}}},
		{"invalid rule: off", nan, -time.Second, []step{{1.0, "", 0, true}, {1.0, "", 1, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Filter{Deadband: tt.deadband, Heartbeat: tt.heartbeat}
			for i, s := range tt.steps {
				at := t0.Add(time.Duration(s.at * float64(time.Second)))
				if got := f.Pass(s.v, s.err, at); got != s.pass {
					t.Errorf("step %d (%v, %q, %vs): Pass = %v, want %v", i, s.v, s.err, s.at, got, s.pass)
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		f  Filter
		ok bool
	}{
		{Filter{}, true},
		{Filter{Deadband: 0.5, Heartbeat: time.Minute}, true},
		{Filter{Deadband: -0.1}, false},
		{Filter{Deadband: math.NaN()}, false},
		{Filter{Deadband: math.Inf(1)}, false},
		{Filter{Heartbeat: -time.Millisecond}, false},
	}
	for _, tt := range tests {
		err := tt.f.Check()
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%+v) = %v, want ok %v", tt.f, err, tt.ok)
		}
	}
}

func TestResetAndLast(t *testing.T) {
	f := Filter{Deadband: 1, Heartbeat: time.Hour}
	if _, _, _, ok := f.Last(); ok {
		t.Fatal("Last before any reading")
	}
	f.Pass(2.0, "e", t0)
	if v, e, at, ok := f.Last(); v != 2.0 || e != "e" || !at.Equal(t0) || !ok {
		t.Errorf("Last = %v, %q, %v, %v", v, e, at, ok)
	}
	f.Reset()
	if f.Deadband != 1 || f.Heartbeat != time.Hour || !f.Pass(2.0, "e", t0) {
		t.Errorf("after Reset: %+v, want the rule kept and the next reading passing", f)
	}
}

func TestPassDoesNotAllocate(t *testing.T) {
	f := Filter{Deadband: 0.5, Heartbeat: time.Minute}
	v := 1.0
	n := testing.AllocsPerRun(100, func() {
		v += 0.3
		f.Pass(v, "", t0)
	})
	if n != 0 {
		t.Errorf("%v allocations per Pass, want 0", n)
	}
}

// FuzzPass drives a Filter with readings built from data and checks the
// rule's invariants against the readings it sent:
//   - the first reading, and every reading when the rule is off, passes;
//   - a reading whose kind or error differs from the last one sent, a
//     number that moved by more than the deadband, a text or flag that
//     changed, passes at once;
//   - a reading at or after the heartbeat (or before the last send)
//     passes;
//   - every other reading is dropped: nothing unchanged passes early.
func FuzzPass(f *testing.F) {
	f.Add(0.5, uint32(1000), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add(0.0, uint32(0), []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2})
	f.Add(2.0, uint32(60000), []byte("a fuzzed sequence of readings with errors and text"))
	f.Fuzz(func(t *testing.T, deadband float64, heartbeatMs uint32, data []byte) {
		r := Filter{Deadband: deadband, Heartbeat: time.Duration(heartbeatMs%100000) * time.Millisecond}
		db := r.Deadband
		if !(db > 0) {
			db = 0
		}
		off := r.Off()
		now := t0
		var last struct {
			sent bool
			v    any
			err  string
			at   time.Time
		}
		for len(data) >= 4 {
			op, x, dt, e := data[0], data[1], data[2], data[3]
			data = data[4:]
			// Time mostly moves on, sometimes stands still or goes back.
			switch {
			case dt < 8:
				now = now.Add(-time.Duration(dt) * time.Second)
			default:
				now = now.Add(time.Duration(dt) * 50 * time.Millisecond)
			}
			var v any
			switch op % 5 {
			case 0:
				v = nil
			case 1:
				v = float64(int8(x)) / 4 // steps around typical deadbands
			case 2:
				v = []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, 1e300}[int(x)%5]
			case 3:
				v = string(rune('a' + x%3))
			case 4:
				v = x%2 == 0
			}
			errText := ""
			if e%4 == 0 {
				errText = string(rune('A' + e%3))
			}
			passed := r.Pass(v, errText, now)

			changed := !last.sent || errText != last.err || kindOf(v) != kindOf(last.v)
			if !changed {
				switch a := last.v.(type) {
				case float64:
					b := v.(float64)
					changed = a != b && !(math.IsNaN(a) && math.IsNaN(b)) &&
						(math.IsNaN(a) || math.IsNaN(b) || math.Abs(a-b) > db)
				case string, bool:
					changed = v != a
				}
			}
			due := r.Heartbeat > 0 && last.sent && (now.Sub(last.at) >= r.Heartbeat || now.Before(last.at))
			if want := off || changed || due; passed != want {
				t.Fatalf("Pass(%v, %q) at %v after sending %v, %q at %v (deadband %v, heartbeat %v): %v, want %v",
					v, errText, now.Sub(t0), last.v, last.err, last.at.Sub(t0), r.Deadband, r.Heartbeat, passed, want)
			}
			if passed {
				last.sent, last.v, last.err, last.at = true, v, errText, now
			}
			if lv, le, la, ok := r.Last(); !ok || le != last.err || !la.Equal(last.at) || !sameValue(lv, last.v) {
				t.Fatalf("Last = %v, %q, %v; want %v, %q, %v", lv, le, la, last.v, last.err, last.at)
			}
		}
	})
}

func kindOf(v any) string {
	switch v.(type) {
	case float64:
		return "number"
	case string:
		return "text"
	case bool:
		return "flag"
	}
	return "none"
}

func sameValue(a, b any) bool {
	x, ok1 := a.(float64)
	y, ok2 := b.(float64)
	if ok1 && ok2 {
		return math.Float64bits(x) == math.Float64bits(y) || x == y
	}
	return a == b
}

// FuzzPassTwice: a rule applied again, with now the reading's time in
// whole milliseconds (t_ms), to the readings a first application let
// through (with now to the nanosecond), lets every one of them through:
// livecgid may filter what an SDK plugin filtered already, as long as the
// heartbeat is whole milliseconds (the protocol's heartbeat_ms).
func FuzzPassTwice(f *testing.F) {
	f.Add(0.5, uint16(300), int64(123456789), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add(0.0, uint16(1), int64(999999), []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2})
	f.Fuzz(func(t *testing.T, deadband float64, heartbeatMs uint16, phase int64, data []byte) {
		rule := Filter{Deadband: deadband, Heartbeat: time.Duration(heartbeatMs) * time.Millisecond}
		plugin, again := rule, rule
		now := t0.Add(time.Duration(phase % int64(time.Second)))
		for len(data) >= 3 {
			op, x, dt := data[0], data[1], data[2]
			data = data[3:]
			now = now.Add(time.Duration(dt) * 997 * time.Microsecond) // readings come at any phase
			var v any = float64(int8(x)) / 4
			if op%3 == 1 {
				v = x%2 == 0
			}
			if !plugin.Pass(v, "", now) {
				continue
			}
			tms := time.UnixMilli(now.UnixMilli())
			if !again.Pass(v, "", tms) {
				t.Fatalf("%v at %v (t_ms %v) passed once, not again (rule %v/%v)", v, now.Sub(t0), tms.Sub(t0), rule.Deadband, rule.Heartbeat)
			}
		}
	})
}
