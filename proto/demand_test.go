package proto

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/rbe"
)

func TestDemand(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	ms := func(v int64) *int64 { return &v }
	declared := (&SensorDesc{Deadband: 0.5, HeartbeatMs: 60000}).Filter()
	if declared.Deadband != 0.5 || declared.Heartbeat != time.Minute {
		t.Errorf("SensorDesc.Filter = %+v", declared)
	}
	if got := (*SensorDesc)(nil).Filter(); !got.Off() {
		t.Errorf("nil SensorDesc.Filter = %+v, want off", got)
	}
	tests := []struct {
		name  string
		d     *SensorDemand
		every time.Duration
		rule  rbe.Filter
	}{
		{"nil: its own", nil, time.Second, declared},
		{"nothing set: its own", &SensorDemand{Id: "x"}, time.Second, declared},
		{"slower", &SensorDemand{IntervalMs: 60000}, time.Minute, declared},
		{"faster than its own: its own", &SensorDemand{IntervalMs: 10}, time.Second, declared},
		{"deadband 0 set", &SensorDemand{Deadband: f(0)}, time.Second, rbe.Filter{Heartbeat: time.Minute}},
		{"heartbeat 0 set", &SensorDemand{HeartbeatMs: ms(0)}, time.Second, rbe.Filter{Deadband: 0.5}},
		{"both set", &SensorDemand{Deadband: f(2), HeartbeatMs: ms(5000)}, time.Second, rbe.Filter{Deadband: 2, Heartbeat: 5 * time.Second}},
		{"huge interval clamps", &SensorDemand{IntervalMs: math.MaxInt64}, time.Duration(maxMs) * time.Millisecond, declared},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.Every(time.Second); got != tt.every {
				t.Errorf("Every = %v, want %v", got, tt.every)
			}
			if got := tt.d.Filter(declared); got != tt.rule {
				t.Errorf("Filter = %+v, want %+v", got, tt.rule)
			}
		})
	}
}

func TestCheckStreamRequest(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	ms := func(v int64) *int64 { return &v }
	tests := []struct {
		name    string
		r       *StreamRequest
		exc     bool
		wantErr string
	}{
		{name: "empty", r: &StreamRequest{}},
		{name: "old style", r: &StreamRequest{Sensors: []string{"a", "b"}}},
		{name: "all", r: &StreamRequest{All: true}, exc: true},
		{name: "demand", r: &StreamRequest{Demand: []*SensorDemand{{Id: "a", IntervalMs: 1000, Deadband: f(0.1), HeartbeatMs: ms(0)}, {Id: "b"}}}, exc: true},
		{name: "twice", r: &StreamRequest{Demand: []*SensorDemand{{Id: "a"}, {Id: "a"}}}, exc: true, wantErr: `sensor id "a": want a lower_snake id, listed once`},
		{name: "bad id", r: &StreamRequest{Demand: []*SensorDemand{{Id: "A-1"}}}, exc: true, wantErr: `sensor id "A-1"`},
		{name: "negative interval", r: &StreamRequest{Demand: []*SensorDemand{{Id: "a", IntervalMs: -1}}}, exc: true, wantErr: "interval_ms -1"},
		{name: "negative deadband", r: &StreamRequest{Demand: []*SensorDemand{{Id: "a", Deadband: f(-1)}}}, exc: true, wantErr: "sensor a: invalid report-by-exception rule: deadband -1"},
		{name: "NaN deadband", r: &StreamRequest{Demand: []*SensorDemand{{Id: "a", Deadband: f(math.NaN())}}}, exc: true, wantErr: "deadband NaN"},
		{name: "infinite deadband", r: &StreamRequest{Demand: []*SensorDemand{{Id: "a", Deadband: f(math.Inf(1))}}}, exc: true, wantErr: "deadband +Inf"},
		{name: "negative heartbeat", r: &StreamRequest{Demand: []*SensorDemand{{Id: "a", HeartbeatMs: ms(-5)}}}, exc: true, wantErr: "heartbeat -5ms"},
		{name: "most negative heartbeat", r: &StreamRequest{Demand: []*SensorDemand{{Id: "a", HeartbeatMs: ms(math.MinInt64)}}}, exc: true, wantErr: "heartbeat -"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.ByException(); got != tt.exc {
				t.Errorf("ByException = %v, want %v", got, tt.exc)
			}
			err := CheckStreamRequest(tt.r)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckDescriptionRule(t *testing.T) {
	desc := func(deadband float64, hb int64) *Description {
		return &Description{Sensors: []*SensorDesc{{Id: "t", Type: ValueType_NUMBER, IntervalMs: 1000, Deadband: deadband, HeartbeatMs: hb}}}
	}
	for _, tt := range []struct {
		d       *Description
		wantErr string
	}{
		{desc(0, 0), ""},
		{desc(0.5, 60000), ""},
		{desc(-0.5, 0), "sensor t: invalid report-by-exception rule: deadband -0.5"},
		{desc(math.NaN(), 0), "deadband NaN"},
		{desc(0, -1), "heartbeat -1ms"},
	} {
		err := CheckDescription(tt.d)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckDescription(%v) = %v, want %q", tt.d.Sensors[0], err, tt.wantErr)
		}
	}
}
