package fanout

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/wire"
)

// TestReadingChanged: each reading carries when its sensor's value last
// changed: the first reading's t; the t of a value that moved by more
// than the deadband (from the value at the last change: a creep adds
// up); kept by a heartbeat repeating the value, by one within the
// deadband and by an error without a value; any change of text. It is
// in the frame, the last value, a full snapshot and a replay.
func TestReadingChanged(t *testing.T) {
	h := New(Options{MaxClients: 4, History: 64})
	h.SetPlugin("p", &wire.PluginInfo{ID: "p", State: wire.StateOnline}, []wire.Sensor{
		{ID: "p.temp", Plugin: "p", ValueType: wire.ValueNumber, IntervalMS: 1000, Deadband: 0.5, HeartbeatMS: 60000},
		{ID: "p.mode", Plugin: "p", ValueType: wire.ValueText, IntervalMS: 1000},
	}, nil, nil)
	var frames [][]byte
	c := h.NewClient(ClientOptions{Control: func(b []byte) { frames = append(frames, b) }})
	if err := h.Attach(c); err != nil {
		t.Fatal(err)
	}
	start := c.Cursor()
	for _, tt := range []struct {
		sensor  string
		t       int64
		v       any
		err     string
		changed int64
	}{
		{"p.temp", 1000, 20.0, "", 1000},
		{"p.temp", 61000, 20.0, "", 1000},     // a heartbeat
		{"p.temp", 62000, 20.3, "", 1000},     // within the deadband
		{"p.temp", 63000, 20.6, "", 63000},    // moved by 0.6 from 20
		{"p.temp", 64000, 20.9, "", 63000},    // 0.3 from 20.6
		{"p.temp", 65000, 21.2, "", 65000},    // 0.6 from 20.6: a creep adds up
		{"p.temp", 66000, nil, "busy", 65000}, // an error without a value
		{"p.temp", 67000, 21.2, "", 65000},    // back, unchanged
		{"p.mode", 1000, "auto", "", 1000},
		{"p.mode", 2000, "auto", "", 1000},
		{"p.mode", 3000, "manual", "", 3000},
	} {
		if !h.Publish(wire.Reading{Sensor: tt.sensor, T: tt.t, Value: tt.v, Error: tt.err}) {
			t.Fatal("unknown sensor")
		}
		r, ok := h.Last(tt.sensor)
		if !ok || r.Changed != tt.changed || r.T != tt.t {
			t.Errorf("%s %v at %d: last %+v, want changed %d", tt.sensor, tt.v, tt.t, r, tt.changed)
		}
	}
	// The frames as clients get them.
	fs := h.after(c, start, h.head.Load(), nil)
	var last map[string]any
	if err := json.Unmarshal(fs[len(fs)-1].data, &last); err != nil || last["changed"] != 3000.0 {
		t.Errorf("the last frame %s: want changed 3000", fs[len(fs)-1].data)
	}
	// A full snapshot and a replay keep it.
	snap := func(b []byte) map[string]float64 {
		var s wire.Snapshot
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, r := range s.Readings {
			out[r.Sensor+"@"+s.Mode] = float64(r.Changed) // the last of each sensor
		}
		return out
	}
	got, _ := h.Collect(c, nil)
	if s := snap(got[1]); s["p.temp@full"] != 65000 || s["p.mode@full"] != 3000 {
		t.Errorf("full snapshot: changed %v, want p.temp 65000, p.mode 3000", s)
	}
	if s := snap(h.Resume(c, h.Epoch(), start+3)); s["p.temp@replay"] != 65000 || s["p.mode@replay"] != 3000 {
		t.Errorf("replay: changed %v, want p.temp 65000, p.mode 3000", s)
	}
}

// TestSetOverrides: the configuration's deadband, heartbeat and record
// interval of a sensor replace what its plugin declared in the
// descriptors clients get: a change sends every client a fresh hello, the
// same overrides again send nothing, a plugin described later gets them,
// and taking them away restores the declared values.
func TestSetOverrides(t *testing.T) {
	h := New(Options{MaxClients: 4})
	declared := wire.Sensor{ID: "p.temp", Plugin: "p", ValueType: wire.ValueNumber, IntervalMS: 1000, Deadband: 0.5, HeartbeatMS: 60000}
	h.SetPlugin("p", &wire.PluginInfo{ID: "p", State: wire.StateOnline}, []wire.Sensor{declared}, nil, nil)
	var hellos []wire.Hello
	c := h.NewClient(ClientOptions{Control: func(b []byte) {
		var m wire.Hello
		if json.Unmarshal(b, &m) == nil && m.Type == wire.TypeHello {
			hellos = append(hellos, m)
		}
	}})
	if err := h.Attach(c); err != nil {
		t.Fatal(err)
	}
	sensor := func(m wire.Hello, id string) wire.Sensor {
		for _, s := range m.Sensors {
			if s.ID == id {
				return s
			}
		}
		t.Fatalf("no %s in %+v", id, m.Sensors)
		return wire.Sensor{}
	}
	if s := sensor(hellos[0], "p.temp"); s != declared {
		t.Fatalf("before overrides: %+v, want as declared", s)
	}
	o := Overrides{
		Deadband:  map[string]float64{"p.temp": 2, "q.volts": 0.1},
		Heartbeat: map[string]time.Duration{"p.temp": 5 * time.Minute},
		Record:    map[string]time.Duration{"p.temp": 10 * time.Second, "q.volts": time.Minute},
	}
	h.SetOverrides(o)
	if len(hellos) != 2 {
		t.Fatalf("%d hellos after the overrides, want a fresh one", len(hellos))
	}
	want := declared
	want.Deadband, want.HeartbeatMS, want.RecordMS = 2, 300000, 10000
	if s := sensor(hellos[1], "p.temp"); s != want {
		t.Errorf("with overrides: %+v, want %+v", s, want)
	}
	h.SetOverrides(o)
	if len(hellos) != 2 {
		t.Errorf("the same overrides again: %d hellos, want none more", len(hellos))
	}
	h.SetPlugin("q", &wire.PluginInfo{ID: "q", State: wire.StateOnline}, []wire.Sensor{{ID: "q.volts", Plugin: "q", ValueType: wire.ValueNumber, IntervalMS: 500}}, nil, nil)
	if s := sensor(hellos[len(hellos)-1], "q.volts"); s.Deadband != 0.1 || s.RecordMS != 60000 || s.HeartbeatMS != 0 {
		t.Errorf("a plugin described later: %+v, want deadband 0.1, record_ms 60000", s)
	}
	n := len(hellos)
	h.SetOverrides(Overrides{})
	if len(hellos) != n+1 || sensor(hellos[n], "p.temp") != declared {
		t.Errorf("overrides taken away: %d hellos, p.temp %+v; want a fresh hello as declared", len(hellos)-n, sensor(hellos[len(hellos)-1], "p.temp"))
	}
}
