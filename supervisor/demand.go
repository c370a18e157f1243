package supervisor

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	pb "google.golang.org/protobuf/proto"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/supervisor/internal/alarm"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
	"github.com/livecgi/livecgi/supervisor/internal/pluginhost"
)

// demand is what is wanted of each plugin's sensors (the plugin host's
// Demand, and stats.go's for livecgid's own figures), composed from
//
//   - the hub's consumers: while anyone consumes readings (a browser, a
//     poll session, the broker bridge), every sensor at its own interval;
//   - record.<id>: that sensor at that interval;
//   - alarm.<name>: the rule's sensor at its own interval;
//   - deadband.<id> and heartbeat.<id>: the rule of that sensor, when it
//     is wanted.
//
// With nobody watching and none of these configured nothing is wanted:
// no plugin streams, livecgid publishes nothing of its own. cur is
// replaced whole at each change, by one goroutine (followDemand; New
// sets the first), and read without a lock.
type demand struct {
	cur atomic.Pointer[wants]
}

// wants is one state of demand: never changed, but replaced.
type wants struct {
	all     bool
	sensors map[string][]*proto.SensorDemand // by plugin id, as pluginhost.Want.Sensors
	changed chan struct{}                    // closed when it is replaced
}

// Want returns what is wanted of plugin id now, and a channel closed at
// the next change.
func (d *demand) Want(id string) (pluginhost.Want, <-chan struct{}) {
	w := d.cur.Load()
	return pluginhost.Want{All: w.all, Sensors: w.sensors[id]}, w.changed
}

// set makes what all (someone consumes readings) and s (the
// configuration's sensor settings) want the demand, and reports whether
// that changed it.
func (d *demand) set(all bool, s config.Sensors) bool {
	next := &wants{all: all, sensors: composeDemand(all, s), changed: make(chan struct{})}
	old := d.cur.Load()
	if old != nil && old.all == next.all && equalDemand(old.sensors, next.sensors) {
		return false
	}
	d.cur.Store(next)
	if old != nil {
		close(old.changed)
	}
	return true
}

// equalDemand reports whether two compositions list the same.
func equalDemand(a, b map[string][]*proto.SensorDemand) bool {
	if len(a) != len(b) {
		return false
	}
	for p, ds := range a {
		if !slices.EqualFunc(ds, b[p], func(x, y *proto.SensorDemand) bool { return pb.Equal(x, y) }) {
			return false
		}
	}
	return true
}

// composeDemand returns, by plugin, the sensors the settings s name:
// those recorded or alarmed, each at the shortest interval asked (an
// alarm asks for its own: 0), and, with all, those whose rule is
// overridden; each with the overrides of its rule. With all every sensor
// is read at its own interval anyway (interval 0): the recorded and
// alarmed ones are listed still, so that a reload that records or alarms
// one more opens a new Stream, whose first reading of it the history and
// the alarm get at once. Sorted by id.
func composeDemand(all bool, s config.Sensors) map[string][]*proto.SensorDemand {
	type want struct {
		wanted bool
		every  time.Duration
	}
	ws := map[string]*want{}
	get := func(id string) *want {
		if ws[id] == nil {
			ws[id] = &want{}
		}
		return ws[id]
	}
	for id := range s.Deadband {
		get(id)
	}
	for id := range s.Heartbeat {
		get(id)
	}
	for id, every := range s.Record {
		w := get(id)
		if !w.wanted || every < w.every {
			w.every = every
		}
		w.wanted = true
	}
	for name, text := range s.Alarms {
		r, err := alarm.Parse(name, text)
		if err != nil {
			continue // the alarms say why
		}
		w := get(r.Sensor)
		w.wanted, w.every = true, 0
	}
	out := map[string][]*proto.SensorDemand{}
	for id, w := range ws {
		db, hasDB := s.Deadband[id]
		hb, hasHB := s.Heartbeat[id]
		switch {
		case !w.wanted && !(all && (hasDB || hasHB)):
			continue
		case all:
			w.every = 0
		}
		plugin, sensor, ok := strings.Cut(id, ".")
		if !ok {
			continue
		}
		d := &proto.SensorDemand{Id: sensor, IntervalMs: w.every.Milliseconds()}
		if hasDB {
			d.Deadband = &db
		}
		if hasHB {
			ms := hb.Milliseconds()
			d.HeartbeatMs = &ms
		}
		out[plugin] = append(out[plugin], d)
	}
	for _, ds := range out {
		slices.SortFunc(ds, func(a, b *proto.SensorDemand) int { return strings.Compare(a.Id, b.Id) })
	}
	return out
}

// overrides returns the settings of s that sensors' descriptors carry.
func overrides(s config.Sensors) fanout.Overrides {
	return fanout.Overrides{Deadband: s.Deadband, Heartbeat: s.Heartbeat, Record: s.Record}
}

// followDemand keeps the demand and the descriptors' overrides to the
// hub's consumers and the configuration in force, until ctx ends.
func (s *Supervisor) followDemand(ctx context.Context) {
	for {
		active, changed := s.hub.Demand()
		reloaded := s.reloaded() // before config: a reload after it closes this
		cfg := s.config()
		s.hub.SetOverrides(overrides(cfg.Sensors))
		s.demand.set(active, cfg.Sensors)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-reloaded:
		}
	}
}
