package supervisor

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/wire"
)

// toWire checks a plugin's reading against its descriptor. A value of the
// wrong type becomes a reading with an error; an unknown sensor is dropped.
func toWire(pid string, in *instance, r *proto.Reading) (wire.Reading, error) {
	typ, ok := in.types[r.Sensor]
	if !ok {
		return wire.Reading{}, fmt.Errorf("reading for undeclared sensor %q dropped", r.Sensor)
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

// check validates a plugin's self-description (proto.CheckDescription)
// and indexes its sensor types, commands and shortest interval.
func (in *instance) check() error {
	if err := proto.CheckDescription(in.desc); err != nil {
		return err
	}
	for _, s := range in.desc.Sensors {
		in.types[s.Id] = s.Type
		if every := int64(time.Duration(s.IntervalMs) * time.Millisecond); in.minEvery.Load() == 0 || every < in.minEvery.Load() {
			in.minEvery.Store(every)
		}
	}
	for _, c := range in.desc.Commands {
		in.cmds[c.Id] = true
	}
	return nil
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
			ValueType: wireType(s.Type), IntervalMS: s.IntervalMs,
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
