package pluginhost

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/wire"
)

// errUndeclared is toWire's error for a reading of a sensor the plugin
// did not describe.
var errUndeclared = errors.New("undeclared sensor")

// toWire checks a plugin's reading against its sensors' types. A value of
// the wrong type becomes a reading with an error; an unknown sensor is
// dropped.
func toWire(pid string, types map[string]proto.ValueType, r *proto.Reading) (wire.Reading, error) {
	typ, ok := types[r.Sensor]
	if !ok {
		return wire.Reading{}, fmt.Errorf("reading for %w %q dropped", errUndeclared, r.Sensor)
	}
	w := wire.Reading{Sensor: pid + "." + r.Sensor, T: r.TMs, Error: r.Error}
	if w.T <= 0 {
		w.T = time.Now().UnixMilli()
	}
	var got proto.ValueType
	switch v := r.Value.(type) {
	case *proto.Reading_Number:
		got, w.Value = proto.ValueType_NUMBER, v.Number
		if math.IsNaN(v.Number) || math.IsInf(v.Number, 0) {
			w.Value, w.Error = nil, "value is not a finite number"
			return w, errors.New(w.Error)
		}
	case *proto.Reading_Text:
		got, w.Value = proto.ValueType_TEXT, v.Text
	case *proto.Reading_Flag:
		got, w.Value = proto.ValueType_BOOL, v.Flag
	default:
		if w.Error != "" {
			return w, nil
		}
		w.Error = "plugin sent no value"
		return w, errors.New(w.Error)
	}
	if got != typ && r.Error != "" {
		w.Value = nil // an error with a value of the wrong type: the error stands
		return w, nil
	}
	if got != typ {
		w.Value = nil
		w.Error = fmt.Sprintf("plugin sent a %s for a %s sensor", wireType(got), wireType(typ))
		return w, errors.New(w.Error)
	}
	return w, nil
}

// check validates a plugin's first self-description and indexes it
// (index).
func (in *instance) check() error {
	k, err := index(in.desc)
	if err != nil {
		return err
	}
	in.known.Store(k)
	return nil
}

// index validates a plugin's self-description (proto.CheckDescription)
// and indexes its sensor types and shortest interval.
func index(d *proto.Description) (*described, error) {
	if err := proto.CheckDescription(d); err != nil {
		return nil, err
	}
	k := &described{desc: d, types: map[string]proto.ValueType{}}
	for _, s := range d.Sensors {
		k.types[s.Id] = s.Type
		if every := time.Duration(s.IntervalMs) * time.Millisecond; k.minEvery == 0 || every < k.minEvery {
			k.minEvery = every
		}
	}
	return k, nil
}

func wireType(t proto.ValueType) string {
	switch t {
	case proto.ValueType_NUMBER:
		return wire.ValueNumber
	case proto.ValueType_TEXT:
		return wire.ValueText
	case proto.ValueType_BOOL:
		return wire.ValueBool
	}
	return ""
}

// describe turns a plugin's descriptors into wire descriptors with global
// ids "<plugin>.<id>".
func describe(pid string, d *proto.Description) ([]wire.Sensor, []wire.Command) {
	var ss []wire.Sensor
	for _, s := range d.Sensors {
		ss = append(ss, wire.Sensor{
			ID: pid + "." + s.Id, Plugin: pid, Title: cmp(s.Title, s.Id), Unit: s.Unit,
			ValueType: wireType(s.Type), IntervalMS: s.IntervalMs, Deadband: s.Deadband, HeartbeatMS: s.HeartbeatMs,
		})
	}
	var cs []wire.Command
	for _, c := range d.Commands {
		wc := wire.Command{ID: pid + "." + c.Id, Plugin: pid, Title: cmp(c.Title, c.Id), Args: []wire.Arg{}}
		for _, a := range c.Args {
			wc.Args = append(wc.Args, wire.Arg{
				Name: a.Name, Title: a.Title, Type: wireType(a.Type), Required: a.Required, Min: a.Min, Max: a.Max, Enum: a.Enum,
			})
		}
		cs = append(cs, wc)
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].ID < ss[j].ID })
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	return ss, cs
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
