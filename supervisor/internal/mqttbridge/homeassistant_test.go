package mqttbridge

import (
	"strings"
	"testing"

	"github.com/livecgi/livecgi/proto/wire"
)

// TestHAClasses: the device and state class of each kind of sensor
// livecgi ships.
func TestHAClasses(t *testing.T) {
	for _, tc := range []struct{ id, unit, device, state string }{
		{"system.uptime_seconds", "s", "duration", ""},
		{"system.mem_total_bytes", "B", "data_size", "measurement"},
		{"system.net_eth0_rx_bytes_per_second", "B/s", "data_rate", "measurement"},
		{"system.thermal_zone0_celsius", "°C", "temperature", "measurement"},
		{"system.cpu_percent", "%", "", "measurement"},
		{"system.load1", "", "", "measurement"},
		{"livecgid.messages_per_second", "1/s", "", "measurement"},
		{"livecgid.too_slow_total", "", "", "total_increasing"},
		{"exec.sent_bytes_total", "B", "data_size", "total_increasing"},
		{"exec.busy_seconds_total", "s", "duration", "total_increasing"},
		{"exec.heat_celsius_total", "°C", "", "total_increasing"}, // temperature is a measurement only
		{"bench.tick_us", "µs", "", "measurement"},
	} {
		plugin, _, _ := strings.Cut(tc.id, ".")
		device, state := haClasses(wire.Sensor{ID: tc.id, Plugin: plugin, Unit: tc.unit, ValueType: wire.ValueNumber})
		if device != tc.device || state != tc.state {
			t.Errorf("%s (%s): device_class %q, state_class %q; want %q, %q", tc.id, tc.unit, device, state, tc.device, tc.state)
		}
	}
}
