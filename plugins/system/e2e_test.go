package system

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto"
)

// TestEndToEnd builds the plugin, runs it as a real go-plugin process over
// the fixtures, and checks Describe and the first reading of every sensor.
func TestEndToEnd(t *testing.T) {
	procRoot, _ := filepath.Abs(procFixture)
	sysRoot, _ := filepath.Abs(sysFixture)
	c := mustStart(t, "-X main.version=v1.2.3-test",
		proto.EnvProcRoot+"="+procRoot, proto.EnvSysRoot+"="+sysRoot)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	d, err := c.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if d.Name != "system" || d.Version != "v1.2.3-test" {
		t.Errorf("name, version = %q, %q; want system, v1.2.3-test", d.Name, d.Version)
	}
	if len(d.Commands) != 0 {
		t.Errorf("got %d commands, want none", len(d.Commands))
	}
	desc := map[string]*proto.SensorDesc{}
	for _, s := range d.Sensors {
		desc[s.Id] = s
	}
	for _, id := range fixtureIDs() {
		if desc[id] == nil {
			t.Errorf("Describe lacks sensor %s", id)
		}
	}
	if len(desc) != len(fixtureIDs()) {
		t.Errorf("Describe has %d sensors, want %d", len(desc), len(fixtureIDs()))
	}
	for id, want := range map[string]struct {
		title, unit string
		ms          int64
		deadband    float64
	}{
		"cpu_percent":                    {"CPU", "%", 1000, 1},
		"load1":                          {"Load average, 1 min", "", 5000, 0.05},
		"net_eth0_rx_bytes_per_second":   {"eth0 received", "B/s", 1000, 16384},
		"net_br_lan_tx_bytes_per_second": {"br-lan sent", "B/s", 1000, 16384},
		"thermal_zone0_celsius":          {"cpu-thermal", "°C", 5000, 0.5},
		"mem_total_bytes":                {"Memory total", "B", 5000, 0},
		"mem_available_bytes":            {"Memory available", "B", 5000, 256 << 10},
		"mem_used_percent":               {"Memory used", "%", 5000, 0.5},
		"uptime_seconds":                 {"Uptime", "s", 5000, 60},
	} {
		if s := desc[id]; s != nil && (s.Title != want.title || s.Unit != want.unit || s.IntervalMs != want.ms || s.Type != proto.ValueType_NUMBER ||
			s.Deadband != want.deadband || s.HeartbeatMs != 60000) {
			t.Errorf("%s: got %v, want %+v and a heartbeat of 60000 ms", id, s, want)
		}
	}

	stream, err := c.Stream(ctx, &proto.StreamRequest{})
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	want := fixtureValues()
	got := map[string]*proto.Reading{}
	for len(got) < len(want) {
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv after %d sensors: %v", len(got), err)
		}
		if _, ok := got[r.Sensor]; !ok {
			got[r.Sensor] = r
		}
	}
	for id, v := range want {
		r := got[id]
		if r == nil {
			t.Errorf("no reading of %s", id)
			continue
		}
		n, ok := r.Value.(*proto.Reading_Number)
		if r.Error != "" || !ok || !approx(n.Number, v) {
			t.Errorf("%s: got %v, want %v", id, r, v)
		}
		if r.TMs == 0 {
			t.Errorf("%s: no timestamp", id)
		}
	}
}

// mustStart builds livecgid with the extra ldflags and starts this plugin
// as livecgid does (a link named system to it), with env.
func mustStart(tb testing.TB, ldflags string, env ...string) proto.PluginClient {
	tb.Helper()
	c, _ := sdktest.Start(tb, sdktest.BuildBuiltin(tb, "system", ldflags), env...)
	return c
}
