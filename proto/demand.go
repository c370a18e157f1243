package proto

import (
	"fmt"
	"math"
	"time"

	"github.com/livecgi/livecgi/proto/rbe"
)

// maxMs is the largest count of milliseconds a time.Duration holds.
const maxMs = math.MaxInt64 / int64(time.Millisecond)

// msDuration converts milliseconds to a Duration, clamped to what one
// holds (negative stays negative, for the checks to refuse).
func msDuration(ms int64) time.Duration {
	return time.Duration(max(min(ms, maxMs), -maxMs)) * time.Millisecond
}

// Filter returns the report-by-exception rule the sensor declares, with
// no reading sent yet. Nil-safe: nil declares none (every reading passes).
func (d *SensorDesc) Filter() rbe.Filter {
	return rbe.Filter{Deadband: d.GetDeadband(), Heartbeat: msDuration(d.GetHeartbeatMs())}
}

// ByException reports whether r asks for readings by demand and by
// exception (demand or all set), rather than every reading of the
// sensors it names.
func (r *StreamRequest) ByException() bool {
	return len(r.GetDemand()) > 0 || r.GetAll()
}

// Filter returns the rule of the demanded sensor: declared (the sensor's
// own, SensorDesc.Filter) with what d overrides. Nil-safe: nil overrides
// nothing.
func (d *SensorDemand) Filter(declared rbe.Filter) rbe.Filter {
	if d.HasDeadband() {
		declared.Deadband = d.GetDeadband()
	}
	if d.HasHeartbeatMs() {
		declared.Heartbeat = msDuration(d.GetHeartbeatMs())
	}
	return declared
}

// HasDeadband reports whether d overrides the deadband.
func (d *SensorDemand) HasDeadband() bool { return d != nil && d.Deadband != nil }

// HasHeartbeatMs reports whether d overrides the heartbeat.
func (d *SensorDemand) HasHeartbeatMs() bool { return d != nil && d.HeartbeatMs != nil }

// Every returns how often to read a sensor whose own interval is own: the
// demanded interval, but never shorter than own (a sensor's interval is
// its fastest). Nil-safe: nil demands own.
func (d *SensorDemand) Every(own time.Duration) time.Duration {
	return max(own, msDuration(d.GetIntervalMs()))
}

// CheckStreamRequest validates r's demand: ids lower_snake and each
// listed once, interval_ms and heartbeat_ms not negative, a deadband
// finite and not negative. Whether the ids exist is for the plugin to
// say.
func CheckStreamRequest(r *StreamRequest) error {
	seen := map[string]bool{}
	for _, d := range r.GetDemand() {
		if !ValidID(d.Id) || seen[d.Id] {
			return fmt.Errorf("demand: sensor id %q: want a lower_snake id, listed once", d.Id)
		}
		seen[d.Id] = true
		if d.IntervalMs < 0 {
			return fmt.Errorf("demand: sensor %s: interval_ms %d: want 0 (its own) or more", d.Id, d.IntervalMs)
		}
		if f := d.Filter(rbe.Filter{}); f.Check() != nil {
			return fmt.Errorf("demand: sensor %s: %w", d.Id, f.Check())
		}
	}
	return nil
}
