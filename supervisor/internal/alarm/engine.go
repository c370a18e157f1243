package alarm

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Flapping: an alarm that made FlapLimit transitions within FlapWindow
// is flapping. While it flaps, it leaves a raised or stale state only
// once the state it would move to has held for FlapQuiet (a value that
// keeps crossing the threshold keeps it raised); it still raises from ok
// at once. So a value crossing the threshold at any rate makes at most
// about FlapLimit+1 transitions per FlapWindow.
const (
	FlapLimit  = 6
	FlapWindow = 10 * time.Minute
	FlapQuiet  = 5 * time.Minute
)

// State is what clients see of one alarm: its alarm frame, and what a
// hello or snapshot lists for it.
type State struct {
	Name   string    `json:"name"`
	Sensor string    `json:"sensor"`
	State  string    `json:"state"`           // OK, Warning, Critical or Stale
	Value  *float64  `json:"value,omitempty"` // the sensor's value at Since; nil before any reading
	Since  time.Time `json:"since"`           // the last transition (or when the engine started)
	// Message says why, for people: "system.board_temp 72.5 celsius
	// above 70 for 1m0s".
	Message string `json:"message"`
}

// Active reports whether the alarm needs attention: raised or stale
// (Home Assistant's problem binary_sensor is on).
func (s State) Active() bool { return s.State != OK }

// Transition is a change of an alarm's state.
type Transition struct {
	State           // the new state
	Previous string // the state before
	Severity string // the rule's severity (Warning or Critical), whatever State is
}

// Engine evaluates alarm rules on readings: Observe on each reading of
// any sensor, Tick when Next says (a `for` window or a sensor's
// heartbeat ran out without a reading). Every method returns the
// transitions it caused, in alarm name order, for the caller to send,
// log, publish and run alarm_exec on. All methods may be called
// concurrently; one mutex guards everything, a leaf lock (nothing
// outside the engine is called under it).
type Engine struct {
	now func() time.Time

	mu      sync.Mutex
	alarms  []*alarm // sorted by name
	byName  map[string]*alarm
	sensors map[string]*sensor // the sensors of the rules
}

// sensor is what the engine knows of a sensor some rule watches.
type sensor struct {
	id, unit  string
	heartbeat time.Duration // 0: never stale
	lastSeen  time.Time     // its last good reading, or when the heartbeat became known
	stale     bool
	value     *float64 // last good value
	alarms    []*alarm // sorted by name
}

// alarm is one rule and its state.
type alarm struct {
	rule   Rule
	sensor *sensor
	cur    State
	// raised: the value went beyond the threshold (for long enough) and
	// has not come back past the clear value since. Kept while stale.
	raised  bool
	pending time.Time   // beyond the threshold since then, not raised yet
	flips   []time.Time // the last FlapLimit transitions
	want    string      // flapping: the state it would move to ("": none)
	wantAt  time.Time   // since when want has held
}

// New returns an engine for rules, every alarm ok. now is its clock
// (nil: time.Now). Rule names must be unique.
func New(rules []Rule, now func() time.Time) (*Engine, error) {
	if now == nil {
		now = time.Now
	}
	e := &Engine{now: now, byName: map[string]*alarm{}, sensors: map[string]*sensor{}}
	t := now()
	for _, r := range rules {
		if e.byName[r.Name] != nil {
			return nil, fmt.Errorf("alarm %s: defined twice", r.Name)
		}
		s := e.sensors[r.Sensor]
		if s == nil {
			s = &sensor{id: r.Sensor}
			e.sensors[r.Sensor] = s
		}
		a := &alarm{rule: r, sensor: s, cur: State{Name: r.Name, Sensor: r.Sensor, State: OK, Since: t}}
		e.alarms = append(e.alarms, a)
		e.byName[r.Name] = a
	}
	sort.Slice(e.alarms, func(i, j int) bool { return e.alarms[i].rule.Name < e.alarms[j].rule.Name })
	for _, a := range e.alarms {
		a.sensor.alarms = append(a.sensor.alarms, a)
	}
	return e, nil
}

// Carry takes over old's state, for new rules (a reload): an alarm of
// the same name that watches the same sensor keeps its state, and, if
// its rule is unchanged, its `for` window and flapping history too (a
// changed rule, as after Load, re-evaluates the alarm at the sensor's
// next reading); every sensor keeps its unit, heartbeat, last good value
// and silence. No transition is reported. Call it before e is used.
func (e *Engine) Carry(old *Engine) {
	old.mu.Lock()
	defer old.mu.Unlock()
	e.mu.Lock() // e is not in use yet: no order to keep with old's
	defer e.mu.Unlock()
	for id, s := range e.sensors {
		if o := old.sensors[id]; o != nil {
			s.unit, s.heartbeat, s.lastSeen, s.stale, s.value = o.unit, o.heartbeat, o.lastSeen, o.stale, o.value
		}
	}
	for _, a := range e.alarms {
		o := old.byName[a.rule.Name]
		if o == nil || o.rule.Sensor != a.rule.Sensor {
			continue
		}
		a.cur, a.raised = o.cur, o.raised
		if o.rule == a.rule {
			a.pending, a.flips, a.want, a.wantAt = o.pending, slices.Clone(o.flips), o.want, o.wantAt
		}
	}
}

// SetSensor tells the engine a sensor's unit (for messages) and heartbeat:
// its alarms go stale when it sends no good reading for twice that long
// (0: never). Call it when the sensor is described (its interval); the
// heartbeat counts from the first call. A sensor no rule watches is
// ignored.
func (e *Engine) SetSensor(id, unit string, heartbeat time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.sensors[id]
	if s == nil {
		return
	}
	if s.heartbeat == 0 && s.lastSeen.IsZero() {
		s.lastSeen = e.now()
	}
	s.unit, s.heartbeat = unit, heartbeat
}

// Number is a reading's value as Observe takes it: a number as is, a
// bool as 0 or 1; ok is false for anything else (text, none).
func Number(v any) (f float64, ok bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// Observe evaluates the alarms of sensor on a reading, at the engine's
// clock. ok false (an error reading, a text value) is no news: it neither
// raises nor clears, and does not count as a sign of life, so a sensor
// that only fails goes stale.
func (e *Engine) Observe(sensor string, v float64, ok bool) []Transition {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.sensors[sensor]
	if s == nil || !ok {
		return nil
	}
	t := e.now()
	s.lastSeen, s.stale, s.value = t, false, &v
	var out []Transition
	for _, a := range s.alarms {
		r := &a.rule
		switch {
		case a.raised:
			a.raised = !r.cleared(v)
		case !r.beyond(v):
			a.pending = time.Time{}
		case a.pending.IsZero() && r.For > 0:
			a.pending = t
		case a.pending.IsZero() || !t.Before(a.pending.Add(r.For)):
			a.raised, a.pending = true, time.Time{}
		}
		if tr := a.settle(t); tr != nil {
			out = append(out, *tr)
		}
	}
	return out
}

// Tick evaluates the timers that ran out by now: sensors silent for twice
// their heartbeat go stale, `for` windows elapse, flapping alarms' quiet
// periods end. Each transition is dated when its timer ran out. Call it
// at Next.
func (e *Engine) Tick() []Transition {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.now()
	var silent map[*sensor]time.Time // went stale now, since then
	for _, s := range e.sensors {
		if at := s.lastSeen.Add(2 * s.heartbeat); s.heartbeat > 0 && !s.stale && !t.Before(at) {
			if silent == nil {
				silent = map[*sensor]time.Time{}
			}
			s.stale, silent[s] = true, at
		}
	}
	var out []Transition
	for _, a := range e.alarms {
		at := t
		staleAt, fresh := silent[a.sensor]
		if due := a.pending.Add(a.rule.For); !a.pending.IsZero() && !t.Before(due) && !(fresh && !staleAt.After(due)) {
			a.raised, at = true, due
		}
		if a.raised || a.sensor.stale {
			a.pending = time.Time{} // stale: no reading says it held
		}
		if fresh {
			at = staleAt
		}
		if tr := a.settle(at); tr != nil {
			out = append(out, *tr)
		}
	}
	return out
}

// Next is when Tick must run next; zero when no timer runs.
func (e *Engine) Next() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	var next time.Time
	min := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, s := range e.sensors {
		if s.heartbeat > 0 && !s.stale {
			min(s.lastSeen.Add(2 * s.heartbeat))
		}
	}
	for _, a := range e.alarms {
		if !a.pending.IsZero() {
			min(a.pending.Add(a.rule.For))
		}
		if a.want != "" {
			min(a.wantAt.Add(FlapQuiet))
		}
	}
	return next
}

// States is the current state of every alarm, sorted by name: what a new
// or resuming client gets first.
func (e *Engine) States() []State {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]State, len(e.alarms))
	for i, a := range e.alarms {
		out[i] = a.cur
	}
	return out
}

// settle moves a to the state its condition asks for, at t, unless it is
// flapping (see FlapLimit); it returns the transition, if any.
func (a *alarm) settle(t time.Time) *Transition {
	d := OK
	switch {
	case a.sensor.stale:
		d = Stale
	case a.raised:
		d = a.rule.Severity
	}
	if d == a.cur.State {
		a.want = ""
		return nil
	}
	if a.cur.State != OK && (a.want != "" || a.flapping(t)) {
		if a.want != d {
			a.want, a.wantAt = d, t
		}
		if t.Before(a.wantAt.Add(FlapQuiet)) {
			return nil
		}
		t = a.wantAt.Add(FlapQuiet)
	}
	a.want = ""
	tr := &Transition{Previous: a.cur.State, Severity: a.rule.Severity}
	a.flips = append(a.flips, t)
	if len(a.flips) > FlapLimit {
		a.flips = a.flips[1:]
	}
	a.cur.State, a.cur.Since, a.cur.Value = d, t, a.sensor.value
	a.cur.Message = a.message(t)
	if d != OK && a.flapping(t) {
		a.cur.Message += fmt.Sprintf(" (flapping: held until steady for %v)", FlapQuiet)
	}
	tr.State = a.cur
	return tr
}

// flapping reports whether a made FlapLimit transitions in the FlapWindow
// before t.
func (a *alarm) flapping(t time.Time) bool {
	return len(a.flips) == FlapLimit && t.Sub(a.flips[0]) < FlapWindow
}

// message says why a is in its current state.
func (a *alarm) message(t time.Time) string {
	r, s := &a.rule, a.sensor
	if a.cur.State == Stale {
		return fmt.Sprintf("%s sent no reading for %v (twice its %v heartbeat)", s.id, t.Sub(s.lastSeen), s.heartbeat)
	}
	if s.value == nil {
		return ""
	}
	v := num(*s.value)
	if s.unit != "" {
		v += " " + s.unit
	}
	op := "above"
	if r.Below {
		op = "below"
	}
	if a.cur.State == OK {
		to := r.Clear
		if !r.cleared(*s.value) {
			to = r.Value // back from stale, between the two
		}
		return fmt.Sprintf("%s %s not %s %s", s.id, v, op, num(to))
	}
	m := fmt.Sprintf("%s %s %s %s", s.id, v, op, num(r.Value))
	if r.For > 0 {
		m += " for " + r.For.String()
	}
	return m
}
