package pluginhost

import (
	"fmt"
	"testing"

	"github.com/livecgi/livecgi/proto"
)

// TestToWire: a reading's error may come with the last good value, which
// is kept when it has the sensor's type.
func TestToWire(t *testing.T) {
	types := map[string]proto.ValueType{"n": proto.ValueType_NUMBER}
	num := func(v float64) *proto.Reading_Number { return &proto.Reading_Number{Number: v} }
	tests := []struct {
		name string
		r    *proto.Reading
		want string
	}{
		{"value", &proto.Reading{Sensor: "n", Value: num(2)}, "2 "},
		{"error", &proto.Reading{Sensor: "n", Error: "broken"}, "<nil> broken"},
		{"error with the last value", &proto.Reading{Sensor: "n", Value: num(2), Error: "garbage"}, "2 garbage"},
		{"error with a value of the wrong type", &proto.Reading{Sensor: "n", Value: &proto.Reading_Text{Text: "x"}, Error: "garbage"}, "<nil> garbage"},
		{"no value", &proto.Reading{Sensor: "n"}, "<nil> plugin sent no value"},
		{"wrong type", &proto.Reading{Sensor: "n", Value: &proto.Reading_Flag{Flag: true}}, "<nil> plugin sent a bool for a number sensor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := toWire("p", types, tt.r)
			if got := fmt.Sprint(w.Value, " ", w.Error); got != tt.want || w.Sensor != "p.n" {
				t.Errorf("got %s %q, want %q", w.Sensor, got, tt.want)
			}
		})
	}
}
