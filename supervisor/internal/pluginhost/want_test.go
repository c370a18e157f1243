package pluginhost

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	pb "google.golang.org/protobuf/proto"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/wire"
)

// testInstance is an instance described by d, as start leaves it.
func testInstance(t *testing.T, d *proto.Description) *instance {
	t.Helper()
	in := &instance{desc: d, reshaped: make(chan struct{})}
	if err := in.check(); err != nil {
		t.Fatal(err)
	}
	return in
}

func ptr[T any](v T) *T { return &v }

// sensors of the plans below: a fast number with a deadband and a
// heartbeat, a slow one with a deadband only, a text with neither.
func planSensors() []*proto.SensorDesc {
	return []*proto.SensorDesc{
		{Id: "cpu", Type: proto.ValueType_NUMBER, IntervalMs: 1000, Deadband: 1, HeartbeatMs: 60000},
		{Id: "disk", Type: proto.ValueType_NUMBER, IntervalMs: 5000, Deadband: 1},
		{Id: "state", Type: proto.ValueType_TEXT, IntervalMs: 2000},
	}
}

// TestMakePlan: the Stream request and the watchdog's limit under each
// kind of want, for a plugin that honours demand and one that predates
// it.
func TestMakePlan(t *testing.T) {
	record := &proto.SensorDemand{Id: "cpu", IntervalMs: 10000}
	quiet := &proto.SensorDemand{Id: "disk", IntervalMs: 0}
	noHeartbeat := &proto.SensorDemand{Id: "cpu", HeartbeatMs: ptr(int64(0))}
	gone := &proto.SensorDemand{Id: "nope", IntervalMs: 1000}
	for _, tt := range []struct {
		name    string
		honours bool
		dynamic bool
		want    Want
		req     string // protojson; "" for no Stream
		limit   time.Duration
	}{
		{"nothing wanted", true, false, Want{}, "", 0},
		{"all", true, false, Want{All: true}, `{"all":true}`, 6 * time.Second}, // state: rule off, 3 × 2 s
		{"a recorded sensor", true, false, Want{Sensors: []*proto.SensorDemand{record}}, `{"demand":[{"id":"cpu","intervalMs":"10000"}]}`, 80 * time.Second}, // 60 s + 2 × 10 s
		{"one that may stay silent", true, false, Want{Sensors: []*proto.SensorDemand{quiet}}, `{"demand":[{"id":"disk"}]}`, 0},
		{"a sensor it does not have", true, false, Want{Sensors: []*proto.SensorDemand{gone}}, "", 0},
		{"a dynamic plugin gets it", true, true, Want{Sensors: []*proto.SensorDemand{record, gone}}, `{"demand":[{"id":"cpu","intervalMs":"10000"},{"id":"nope","intervalMs":"1000"}]}`, 80 * time.Second},
		{"all, an override", true, false, Want{All: true, Sensors: []*proto.SensorDemand{noHeartbeat}}, `{"all":true,"demand":[{"id":"cpu","heartbeatMs":"0"}]}`, 6 * time.Second},
		{"predates: nothing", false, false, Want{}, "", 0},
		{"predates: all", false, false, Want{All: true}, `{}`, 5 * time.Second}, // every reading, 3 × 1 s, at least 5 s
		{"predates: a recorded sensor", false, false, Want{Sensors: []*proto.SensorDemand{record}}, `{}`, 5 * time.Second},
		{"predates: a sensor it does not have", false, false, Want{Sensors: []*proto.SensorDemand{gone}}, "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := testInstance(t, &proto.Description{Name: "p", Demand: tt.honours, Dynamic: tt.dynamic, Sensors: planSensors()})
			in.follows.Store(tt.dynamic)
			p := makePlan(in, tt.want)
			var want *proto.StreamRequest
			if tt.req != "" {
				want = &proto.StreamRequest{}
				if err := protojson.Unmarshal([]byte(tt.req), want); err != nil {
					t.Fatal(err)
				}
			}
			if (p.req == nil) != (want == nil) || p.req != nil && !pb.Equal(p.req, want) || p.limit != tt.limit {
				t.Errorf("request %v, limit %v; want %s, %v", p.req, p.limit, tt.req, tt.limit)
			}
			if !p.same(makePlan(in, tt.want)) {
				t.Error("the same want makes a plan that is not the same")
			}
		})
	}
	in := testInstance(t, &proto.Description{Name: "p", Demand: true, Sensors: planSensors()})
	a := makePlan(in, Want{Sensors: []*proto.SensorDemand{record}})
	b := makePlan(in, Want{Sensors: []*proto.SensorDemand{{Id: "cpu", IntervalMs: 20000}}})
	if a.same(b) || a.same(makePlan(in, Want{All: true})) {
		t.Error("plans of different wants are the same")
	}
}

// TestGates: what livecgid lets through of a Stream: from a plugin that
// predates demand, every reading comes, so the rule (declared, with the
// want's overrides) and the demanded interval apply here, by the
// readings' own time; sensors not wanted are dropped.
func TestGates(t *testing.T) {
	in := testInstance(t, &proto.Description{Name: "p", Sensors: planSensors()})
	k := in.known.Load()
	num := func(sensor string, ms int64, v float64) wire.Reading {
		return wire.Reading{Sensor: "p." + sensor, T: ms, Value: v}
	}
	g := gates{want: Want{Sensors: []*proto.SensorDemand{
		{Id: "cpu", IntervalMs: 10000, Deadband: ptr(5.0)},
	}}}
	var got []float64
	for ms := int64(0); ms <= 120000; ms += 1000 {
		v := 50.0
		if ms == 21000 || ms == 30000 {
			v = 60 // moved by more than the deadband: the one at 21 s is thinned out, the one at 30 s passes
		}
		if g.pass(k, "cpu", num("cpu", ms, v)) {
			got = append(got, float64(ms/1000))
		}
		if g.pass(k, "disk", num("disk", ms, float64(ms))) || g.pass(k, "state", wire.Reading{T: ms, Value: "x"}) {
			t.Fatalf("a sensor not wanted passed at %d ms", ms)
		}
	}
	// 0 first; 30 moved; 40 moved back; then the heartbeat (60 s) after 40: 100.
	if want := []float64{0, 30, 40, 100}; !equalFloats(got, want) {
		t.Errorf("cpu passed at %v s, want %v", got, want)
	}

	// All: every sensor by its declared rule, each reading it brings.
	g = gates{want: Want{All: true}}
	got = nil
	for ms := int64(0); ms < 5000; ms += 1000 {
		if g.pass(k, "state", wire.Reading{T: ms, Value: "on"}) {
			got = append(got, float64(ms))
		}
		if !g.pass(k, "disk", num("disk", ms, float64(ms))) {
			t.Errorf("disk moving by 1000 per reading (deadband 1) held at %d ms", ms)
		}
	}
	if len(got) != 5 {
		t.Errorf("state (no rule) passed at %v, want each reading", got)
	}

	// A new description (a conf changed the unit) starts the gates again:
	// the unchanged value passes once more, by the new description.
	g = gates{want: Want{All: true}}
	if !g.pass(k, "cpu", num("cpu", 0, 50)) || g.pass(k, "cpu", num("cpu", 1000, 50)) {
		t.Fatal("cpu: want its first reading only")
	}
	k2 := *k
	if !g.pass(&k2, "cpu", num("cpu", 2000, 50)) {
		t.Error("the first reading after a new description was held")
	}
	if g.pass(&k2, "cpu", num("cpu", 3000, 50)) {
		t.Error("a repeated reading passed after the new description's first")
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
