package fanout

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/livecgi/livecgi/proto/wire"
)

// The alarms' states (alarm.<name>; the supervisor evaluates them): the
// hub keeps the last state of each, lists them in every snapshot, and
// sends each change to every client as an alarm frame, whatever its role
// or subscription. Like hello and status, alarm frames are control
// frames: never coalesced, never dropped.

// SetAlarms replaces the states of the alarms with as, the alarms
// configured (at start, at a reload). When that adds or removes an
// alarm, every client gets a full snapshot (reason "alarms changed"),
// whose list of alarms is the new one; else an alarm frame for each
// state that changed.
func (h *Hub) SetAlarms(as []wire.Alarm) {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := make(map[string]wire.Alarm, len(as))
	for _, a := range as {
		a.Type = ""
		next[a.Name] = a
	}
	old := h.alarms
	h.alarms = next
	if !slices.Equal(slices.Sorted(maps.Keys(old)), slices.Sorted(maps.Keys(next))) {
		for c := range h.clients {
			b, _ := json.Marshal(h.snapshotLocked(c.wants, "alarms changed"))
			c.skipTo(h.seq) // the snapshot covers everything up to here
			c.QueueControl(b)
		}
		return
	}
	for _, a := range h.alarmsLocked() {
		if old[a.Name] != a {
			h.queueAlarmLocked(a)
		}
	}
}

// SetAlarm records the new state of one alarm that SetAlarms set, and
// sends it to every client as an alarm frame.
func (h *Hub) SetAlarm(a wire.Alarm) {
	a.Type = ""
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.alarms[a.Name]; !ok {
		return
	}
	h.alarms[a.Name] = a
	h.queueAlarmLocked(a)
}

// Alarms returns the state of every alarm, sorted by name.
func (h *Hub) Alarms() []wire.Alarm {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.alarmsLocked()
}

// alarmsLocked lists the alarms sorted by name; nil when none is
// configured (a snapshot leaves its "alarms" out).
func (h *Hub) alarmsLocked() []wire.Alarm {
	if len(h.alarms) == 0 {
		return nil
	}
	out := slices.Collect(maps.Values(h.alarms))
	slices.SortFunc(out, func(a, b wire.Alarm) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// queueAlarmLocked sends a to every client as an alarm frame.
func (h *Hub) queueAlarmLocked(a wire.Alarm) {
	a.Type = wire.TypeAlarm
	b, _ := json.Marshal(a)
	for c := range h.clients {
		c.QueueControl(b)
	}
}
