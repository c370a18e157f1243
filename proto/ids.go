package proto

import (
	"errors"
	"fmt"
	"time"

	"github.com/livecgi/livecgi/proto/wire"
)

// MinInterval is the shortest sensor interval livecgid accepts.
const MinInterval = 10 * time.Millisecond

// ValidID reports whether id is lower_snake (a letter or _ first, then
// letters, digits and _; at most 64 bytes): the form of plugin, sensor
// and command ids. It is wire.ValidID, the rule's one home, which the
// supervisor also holds client frames to.
func ValidID(id string) bool { return wire.ValidID(id) }

// CheckDescription validates a plugin's self-description: at least one
// sensor or command (none is fine for a dynamic plugin, whose set may
// grow later), ids lower_snake and unique across both, known value
// types, intervals of at least MinInterval, report-by-exception rules
// that rbe.Filter.Check accepts, argument names unique and not empty, min
// not above max. The SDK checks a plugin with it before
// serving, and livecgid every plugin it starts.
func CheckDescription(d *Description) error {
	if len(d.Sensors) == 0 && len(d.Commands) == 0 && !d.Dynamic {
		return errors.New("no sensors and no commands")
	}
	seen := map[string]bool{}
	for _, s := range d.Sensors {
		if !ValidID(s.Id) || seen[s.Id] {
			return fmt.Errorf("sensor id %q: want a unique lower_snake id", s.Id)
		}
		seen[s.Id] = true
		if !knownType(s.Type) {
			return fmt.Errorf("sensor %s: unknown value type %v", s.Id, s.Type)
		}
		if s.IntervalMs < MinInterval.Milliseconds() {
			return fmt.Errorf("sensor %s: interval_ms %d below %d", s.Id, s.IntervalMs, MinInterval.Milliseconds())
		}
		if f := s.Filter(); f.Check() != nil {
			return fmt.Errorf("sensor %s: %w", s.Id, f.Check())
		}
	}
	for _, c := range d.Commands {
		if !ValidID(c.Id) || seen[c.Id] {
			return fmt.Errorf("command id %q: want a unique lower_snake id", c.Id)
		}
		seen[c.Id] = true
		args := map[string]bool{}
		for _, a := range c.Args {
			if a.Name == "" || args[a.Name] {
				return fmt.Errorf("command %s: argument names must be unique and not empty", c.Id)
			}
			args[a.Name] = true
			if !knownType(a.Type) {
				return fmt.Errorf("command %s: argument %s: unknown type %v", c.Id, a.Name, a.Type)
			}
			if a.Min != nil && a.Max != nil && *a.Min > *a.Max {
				return fmt.Errorf("command %s: argument %s: min above max", c.Id, a.Name)
			}
		}
	}
	return nil
}

func knownType(t ValueType) bool {
	return t == ValueType_NUMBER || t == ValueType_TEXT || t == ValueType_BOOL
}
