// Package rbe is the report-by-exception rule of livecgi: a sensor's
// reading is sent only when it differs from the last one sent by more than
// the sensor's deadband, or when its heartbeat is due. The plugin SDK
// applies it before a reading crosses the plugin RPC, and livecgid to what
// arrives anyway (a plugin that predates the rule sends every reading), so
// both sides share this one copy. Standard library only.
//
// To apply the rule again to readings a plugin filtered already, pass as
// now the reading's own time in whole milliseconds (time.UnixMilli of its
// t_ms): with a heartbeat in whole milliseconds, as the plugin RPC carries
// it, every reading the plugin let through passes again (unless the wall
// clock stepped back between two of them), and the rule drops only what a
// plugin without it sent. Arrival times would not do: a reading delayed on
// the way makes the next heartbeat look early.
//
// Start with Filter.
package rbe

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Filter is the rule for one sensor and the last reading it let through.
// Deadband and Heartbeat are the rule; the rest is state, which the zero
// Filter starts without (its first reading passes). Change Deadband and
// Heartbeat at will: the state is kept. A Filter is not safe for concurrent
// use; a copy carries the state with it.
//
// A reading passes when
//   - it is the first;
//   - the rule is off: Deadband and Heartbeat both 0 (every reading passes,
//     as without the rule);
//   - it is a number that differs from the last one sent by more than
//     Deadband (with Deadband 0: by anything). NaN differs from every
//     number but NaN; +Inf equals +Inf;
//   - it is text or a flag that differs from the last one sent;
//   - its kind differs (a value after none, text after a number, …);
//   - its error text differs from the last one sent (an error appears,
//     changes or clears);
//   - the heartbeat is due: Heartbeat > 0 and now - the last send >=
//     Heartbeat, or now is before the last send (the clock went back).
//
// The comparison is with the last reading sent, not the last read: a value
// creeping by less than Deadband per reading is sent once it has moved by
// more than Deadband in all. With Heartbeat 0 an unchanged value is never
// sent again. A reading read every interval I is thus repeated after a
// silence of at least Heartbeat and less than Heartbeat + I.
type Filter struct {
	// Deadband is the absolute change, in the sensor's unit, that a number
	// must exceed to be sent before the heartbeat: 0 sends every change.
	// Check rejects a negative, infinite or NaN one; Pass takes it as 0.
	Deadband float64
	// Heartbeat is the longest silence: an unchanged reading is sent again
	// when this long has passed since the last send. 0: never. Check
	// rejects a negative one; Pass takes it as 0.
	Heartbeat time.Duration

	sent bool      // a reading passed: the fields below hold it
	at   time.Time // when
	kind kind
	num  float64
	text string
	flag bool
	err  string
}

// kind is what a reading holds.
type kind uint8

const (
	none kind = iota
	number
	text
	flag
	other // a type Pass does not know: every such reading passes
)

// ErrInvalid is wrapped by Check's errors.
var ErrInvalid = errors.New("invalid report-by-exception rule")

// Check reports whether the rule is valid: Deadband finite and not
// negative, Heartbeat not negative.
func (f *Filter) Check() error {
	if math.IsNaN(f.Deadband) || math.IsInf(f.Deadband, 0) || f.Deadband < 0 {
		return fmt.Errorf("%w: deadband %v: want a finite number, 0 or more", ErrInvalid, f.Deadband)
	}
	if f.Heartbeat < 0 {
		return fmt.Errorf("%w: heartbeat %v: want 0 (none) or more", ErrInvalid, f.Heartbeat)
	}
	return nil
}

// Off reports whether every reading passes: Deadband and Heartbeat are 0
// (or invalid, which Pass takes as 0).
func (f *Filter) Off() bool {
	return !(f.Deadband > 0) && f.Heartbeat <= 0
}

// Pass reports whether a reading is to be sent, and if so records it as
// the last one sent. v is the reading's value: a float64, string or bool,
// or nil for none (an error reading without a value); any other type
// always passes. errText is its error, "" for none. now is when it was
// read; callers that stamp readings pass the same time.
func (f *Filter) Pass(v any, errText string, now time.Time) bool {
	k, num, txt, fl := split(v)
	if f.sent && !f.Off() && errText == f.err && k == f.kind && k != other && !f.moved(k, num, txt, fl) &&
		!(f.Heartbeat > 0 && (now.Sub(f.at) >= f.Heartbeat || now.Before(f.at))) {
		return false
	}
	f.sent, f.at, f.kind, f.num, f.text, f.flag, f.err = true, now, k, num, txt, fl, errText
	return true
}

// Reset forgets the last reading sent: the next one passes. The rule
// stays.
func (f *Filter) Reset() {
	*f = Filter{Deadband: f.Deadband, Heartbeat: f.Heartbeat}
}

// Last returns the last reading sent (value as Pass took it, error text)
// and when; ok is false before the first.
func (f *Filter) Last() (v any, errText string, at time.Time, ok bool) {
	if !f.sent {
		return nil, "", time.Time{}, false
	}
	switch f.kind {
	case number:
		v = f.num
	case text:
		v = f.text
	case flag:
		v = f.flag
	}
	return v, f.err, f.at, true
}

// moved reports whether a value of the last kind sent differs from it.
func (f *Filter) moved(k kind, num float64, txt string, fl bool) bool {
	switch k {
	case number:
		return Moved(f.num, num, f.Deadband)
	case text:
		return txt != f.text
	case flag:
		return fl != f.flag
	}
	return false
}

// Moved reports whether number b differs from a by more than deadband:
// equal numbers (+Inf and +Inf too) never; NaN differs from everything
// but NaN; a negative or NaN deadband counts as 0.
func Moved(a, b, deadband float64) bool {
	switch {
	case a == b:
		return false
	case a != a || b != b: // NaN
		return a == a || b == b
	case !(deadband > 0):
		return true
	}
	return math.Abs(a-b) > deadband
}

func split(v any) (kind, float64, string, bool) {
	switch x := v.(type) {
	case nil:
		return none, 0, "", false
	case float64:
		return number, x, "", false
	case string:
		return text, 0, x, false
	case bool:
		return flag, 0, "", x
	}
	return other, 0, "", false
}
