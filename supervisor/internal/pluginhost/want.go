package pluginhost

import (
	"slices"
	"time"

	pb "google.golang.org/protobuf/proto"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/rbe"
	"github.com/livecgi/livecgi/proto/wire"
)

// Demand tells the host what is wanted of each plugin's sensors now:
// plugins stream only what is wanted, and only while something is.
type Demand interface {
	// Want returns what is wanted of plugin id's sensors now, and a
	// channel closed at the next change of what is wanted of any plugin.
	Want(id string) (w Want, changed <-chan struct{})
}

// Want is what is wanted of one plugin's sensors.
type Want struct {
	// All: every sensor, each at its own interval (someone consumes
	// readings: a browser, a poll session, the broker bridge).
	All bool
	// Sensors lists sensors by their id within the plugin (without
	// "<plugin>."), each once, sorted by id: without All, the sensors
	// wanted and how often (interval_ms; 0: its own); with All, sensors
	// wanted for more than being watched, or whose report-by-exception
	// rule is overridden (interval_ms 0). Either way with the deadband
	// and heartbeat_ms that replace the declared ones, when set. Never
	// changed once handed out.
	Sensors []*proto.SensorDemand
}

// Any reports whether anything is wanted.
func (w Want) Any() bool { return w.All || len(w.Sensors) > 0 }

// Equal reports whether w and o want the same.
func (w Want) Equal(o Want) bool {
	return w.All == o.All && slices.EqualFunc(w.Sensors, o.Sensors, func(a, b *proto.SensorDemand) bool { return pb.Equal(a, b) })
}

// Of returns the entry of sensor id (nil: not listed).
func (w Want) Of(id string) *proto.SensorDemand {
	i, ok := slices.BinarySearchFunc(w.Sensors, id, func(d *proto.SensorDemand, id string) int {
		switch {
		case d.Id < id:
			return -1
		case d.Id > id:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return w.Sensors[i]
}

// Rule returns the report-by-exception rule of a sensor whose own is
// declared, as w wants it, and whether the sensor is wanted at all.
func (w Want) Rule(id string, declared rbe.Filter) (rbe.Filter, bool) {
	d := w.Of(id)
	if d == nil && !w.All {
		return declared, false
	}
	return d.Filter(declared), true
}

// Consumers is what the fanout hub's Demand says: whether anyone
// consumes readings, and a channel closed at the next change.
type Consumers interface {
	Demand() (active bool, changed <-chan struct{})
}

// AllWhile is the demand of a host with no settings of its own: every
// sensor of every plugin while c has a consumer, nothing otherwise.
func AllWhile(c Consumers) Demand { return allWhile{c} }

type allWhile struct{ c Consumers }

func (a allWhile) Want(string) (Want, <-chan struct{}) {
	active, changed := a.c.Demand()
	return Want{All: active}, changed
}

// plan is how an instance streams under a Want: the Stream request (nil:
// no Stream) and how long it may stay silent before it is taken for hung
// (0: it may stay silent for ever).
type plan struct {
	want  Want
	req   *proto.StreamRequest
	limit time.Duration
}

// same reports whether p and o stream alike: what changes neither needs
// no new Stream.
func (p plan) same(o plan) bool {
	return p.limit == o.limit && p.want.Equal(o.want) && (p.req == nil) == (o.req == nil) && (p.req == nil || pb.Equal(p.req, o.req))
}

// makePlan returns how in streams under w. A plugin that honours demand
// (its Description says so) is asked {all, demand}: the sensors of w it
// has (a dynamic one ignores those it has not, so it gets them all: one
// may come); one that predates demand is asked {} (every reading of
// every sensor, which stream filters) whenever anything of it is wanted.
// A dynamic plugin that does not tell its changes on Changes streams
// while anything of it is wanted, as its Stream is then where it says
// that it changed; any other plugin only while a sensor it has is
// wanted.
func makePlan(in *instance, w Want) plan {
	k := in.known.Load()
	p := plan{want: w}
	has := w.All && len(k.types) > 0
	for _, d := range w.Sensors {
		if _, ok := k.types[d.Id]; ok {
			has = true
		}
	}
	if !has && !(in.desc.Dynamic && !in.follows.Load() && w.Any()) {
		return p
	}
	switch {
	case !in.desc.Demand:
		p.req = &proto.StreamRequest{}
	case in.desc.Dynamic:
		p.req = &proto.StreamRequest{All: w.All, Demand: w.Sensors}
	default:
		p.req = &proto.StreamRequest{All: w.All}
		for _, d := range w.Sensors {
			if _, ok := k.types[d.Id]; ok {
				p.req.Demand = append(p.req.Demand, d)
			}
		}
	}
	p.limit = watchLimit(in.desc.Demand, k, w)
	return p
}

// minWatch is the shortest silence taken for a hang.
const minWatch = 5 * time.Second

// watchLimit returns how long a plugin streaming under w may send
// nothing before it is taken for hung; 0: it may be silent for ever.
// One that predates demand sends every reading of every sensor: three
// of its shortest intervals. One that honours it sends by exception:
// each wanted sensor, at the interval it is read, is heard at least
// every interval when its rule is off (three of them, then), at least
// every heartbeat and one interval when it has a heartbeat (and two
// intervals, then), and may be silent for ever with a deadband and no
// heartbeat; the plugin, as soon as the first of them may speak. At
// least minWatch.
func watchLimit(honours bool, k *described, w Want) time.Duration {
	if !honours {
		if k.minEvery == 0 {
			return 0
		}
		return max(3*k.minEvery, minWatch)
	}
	var limit time.Duration
	for _, s := range k.desc.Sensors {
		d := w.Of(s.Id)
		if d == nil && !w.All {
			continue
		}
		every := d.Every(time.Duration(s.IntervalMs) * time.Millisecond)
		rule := d.Filter(s.Filter())
		var b time.Duration
		switch {
		case rule.Off():
			b = 3 * every
		case rule.Heartbeat > 0:
			b = rule.Heartbeat + 2*every
		default:
			continue
		}
		if limit == 0 || b < limit {
			limit = b
		}
	}
	if limit == 0 {
		return 0
	}
	return max(limit, minWatch)
}

// gates is the filter livecgid applies to what a Stream brings, one gate
// per sensor, made at its first reading: a sensor not wanted is dropped;
// a wanted one passes its report-by-exception rule (the declared one
// with w's overrides, package proto/rbe, with the reading's own time),
// and, from a plugin that predates demand, at most as often as w asks.
// For a plugin that honours demand the rule passes again what the
// plugin let through; for one that predates it, it is the only filter.
//
// A new description (a dynamic plugin's) starts every gate again: the
// first reading after it passes, so that a client told of a sensor's new
// unit or rule gets a reading by it even when the value did not move.
type gates struct {
	want    Want
	honours bool
	k       *described // the description the gates were made by
	m       map[string]*gate
}

type gate struct {
	drop bool          // not wanted
	thin time.Duration // a reading at most this often (by t), less half its own interval; 0: each
	rule rbe.Filter
	seen bool
	last int64 // t of the last reading past thin
}

// pass reports whether r, a reading of the plugin's sensor id, goes on.
// known is the plugin's description as it is now.
func (g *gates) pass(k *described, id string, r wire.Reading) bool {
	if k != g.k {
		g.k, g.m = k, nil
	}
	gt := g.m[id]
	if gt == nil {
		gt = g.gate(k, id)
		if g.m == nil {
			g.m = map[string]*gate{}
		}
		g.m[id] = gt
	}
	if gt.drop {
		return false
	}
	if gt.thin > 0 {
		if gt.seen && r.T-gt.last < gt.thin.Milliseconds() {
			return false
		}
		gt.seen, gt.last = true, r.T
	}
	return gt.rule.Pass(r.Value, r.Error, time.UnixMilli(r.T))
}

func (g *gates) gate(k *described, id string) *gate {
	var sd *proto.SensorDesc
	for _, s := range k.desc.Sensors {
		if s.Id == id {
			sd = s
		}
	}
	rule, wanted := g.want.Rule(id, sd.Filter())
	if !wanted {
		return &gate{drop: true}
	}
	gt := &gate{rule: rule}
	if d := g.want.Of(id); !g.honours && !g.want.All && d != nil && sd != nil {
		own := time.Duration(sd.IntervalMs) * time.Millisecond
		if every := d.Every(own); every > own {
			gt.thin = every - own/2
		}
	}
	return gt
}
