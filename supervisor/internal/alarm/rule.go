package alarm

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/livecgi/livecgi/proto/wire"
)

// The states an alarm is in. Warning and Critical are also the two
// severities of a Rule.
const (
	OK       = "ok"
	Warning  = "warning"
	Critical = "critical"
	Stale    = "stale" // its sensor sent no good reading for twice its heartbeat
)

// KeyPrefix starts every alarm key of livecgi.conf: alarm.<name> = <rule>.
const KeyPrefix = "alarm."

// Rule is one alarm of the config, as Parse reads it.
type Rule struct {
	Name   string // lower_snake
	Sensor string // <plugin>.<sensor>, as in the wire protocol
	// Below: the alarm raises when the value falls below Value; else when
	// it rises above it.
	Below bool
	Value float64 // the threshold
	// Clear is where a raised alarm clears: at or below Clear for an
	// above alarm (Clear <= Value), at or above it for a below alarm.
	// Between Clear and Value the alarm keeps its state (hysteresis).
	// Default: Value.
	Clear float64
	// For is how long the value must stay beyond Value before the alarm
	// raises; a shorter spike does nothing. Default 0: at once.
	For      time.Duration
	Severity string // Warning (default) or Critical
}

// Syntax is the form of a rule, as the errors of Parse show it.
const Syntax = "<sensor> above|below <value> [for <duration>] [clear <value>] [warning|critical]"

// Parse reads the rule of key alarm.<name> from its value,
//
//	<sensor> above|below <value> [for <duration>] [clear <value>] [warning|critical]
//
// (the optional parts in any order, each once; durations as Go writes
// them: 30s, 1m30s). Errors start with the key: "alarm.hot: want ...".
func Parse(name, value string) (Rule, error) {
	r, err := parse(name, value)
	if err != nil {
		key := KeyPrefix + name
		if !wire.ValidID(name) {
			key = fmt.Sprintf("%s%q", KeyPrefix, name)
		}
		return Rule{}, fmt.Errorf("%s: %w", key, err)
	}
	return r, nil
}

func parse(name, value string) (Rule, error) {
	if !wire.ValidID(name) {
		return Rule{}, errors.New("want a lower_snake alarm name (a-z, 0-9 and _, at most 64 bytes)")
	}
	w := strings.Fields(value)
	if len(w) < 3 || (w[1] != "above" && w[1] != "below") {
		return Rule{}, fmt.Errorf("want `%s`, got %q", Syntax, value)
	}
	if !validSensor(w[0]) {
		return Rule{}, fmt.Errorf("sensor %q: want <plugin>.<sensor>, both lower_snake", w[0])
	}
	r := Rule{Name: name, Sensor: w[0], Below: w[1] == "below", Severity: Warning}
	var err error
	if r.Value, err = number(w[2]); err != nil {
		return Rule{}, fmt.Errorf("threshold: %w", err)
	}
	r.Clear = r.Value
	seen := map[string]bool{}
	for i := 3; i < len(w); i++ {
		key := w[i]
		if key == Warning || key == Critical {
			key = "severity"
		}
		if seen[key] {
			return Rule{}, fmt.Errorf("%s given twice", key)
		}
		seen[key] = true
		switch w[i] {
		case Warning, Critical:
			r.Severity = w[i]
			continue
		case "for", "clear":
		default:
			return Rule{}, fmt.Errorf("unexpected %q: want `%s`", w[i], Syntax)
		}
		if i+1 == len(w) {
			return Rule{}, fmt.Errorf("%q wants a value", w[i])
		}
		i++
		if w[i-1] == "for" {
			if r.For, err = time.ParseDuration(w[i]); err != nil || r.For < 0 {
				return Rule{}, fmt.Errorf("for %q: want a duration such as 30s or 5m", w[i])
			}
		} else if r.Clear, err = number(w[i]); err != nil {
			return Rule{}, fmt.Errorf("clear: %w", err)
		}
	}
	switch {
	case !r.Below && r.Clear > r.Value:
		return Rule{}, fmt.Errorf("clear %s is above the threshold %s: an above alarm clears at or below a value not above it", num(r.Clear), num(r.Value))
	case r.Below && r.Clear < r.Value:
		return Rule{}, fmt.Errorf("clear %s is below the threshold %s: a below alarm clears at or above a value not below it", num(r.Clear), num(r.Value))
	}
	return r, nil
}

// String is the rule in the form Parse reads, with every default left out.
func (r Rule) String() string {
	op := "above"
	if r.Below {
		op = "below"
	}
	s := fmt.Sprintf("%s %s %s", r.Sensor, op, num(r.Value))
	if r.For != 0 {
		s += " for " + r.For.String()
	}
	if r.Clear != r.Value {
		s += " clear " + num(r.Clear)
	}
	if r.Severity != Warning {
		s += " " + r.Severity
	}
	return s
}

// beyond reports whether v is past the threshold (raising side).
func (r *Rule) beyond(v float64) bool {
	if r.Below {
		return v < r.Value
	}
	return v > r.Value
}

// cleared reports whether v is past the clear value (clearing side).
func (r *Rule) cleared(v float64) bool {
	if r.Below {
		return v >= r.Clear
	}
	return v <= r.Clear
}

func number(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("want a number, got %q", s)
	}
	return f, nil
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// validSensor reports whether id is a sensor id of the wire protocol:
// <plugin>.<sensor>, both lower_snake.
func validSensor(id string) bool { return wire.ValidName(id) }
