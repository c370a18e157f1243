package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/testkit"
	"github.com/livecgi/livecgi/supervisor/brokertest"
)

// TestFleetSmall runs the fleet benchmark with three supervisors for a
// few seconds against a real Mosquitto and checks that every device's
// bench readings reached the subscriber through its bridge, that the
// figures were measured, and that no process it started is left.
func TestFleetSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds livecgid and runs a fleet: not in -short")
	}
	brokertest.Need(t, "mosquitto")
	t.Chdir(moduleRoot(t)) // fleet builds ./cmd/livecgid from the module root
	work := t.TempDir()
	cfg, err := parseFleet(strings.Fields("-n 3 -hz 10 -duration 3s -warmup 0 -work "+work), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.startMax = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log strings.Builder
	res, err := fleet(ctx, cfg, &log)
	if left := testkit.Matching(work); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
	if err != nil {
		t.Fatalf("fleet: %v\n%s", err, log.String())
	}
	var out strings.Builder
	printFleet(&out, res)
	t.Log(out.String())

	if res.Delivering != 3 || len(res.PerDevice) != 3 {
		t.Errorf("%d devices delivered readings in the window, want 3: %v", res.Delivering, res.PerDevice)
	}
	for id, n := range res.PerDevice {
		if n == 0 {
			t.Errorf("%s: no bench reading in the window", id)
		}
	}
	if res.Latency.N == 0 || res.Latency.N != res.Received {
		t.Errorf("%d latency samples for %d readings, want as many and more than 0", res.Latency.N, res.Received)
	}
	if res.Messages <= res.Received {
		t.Errorf("%d messages, %d bench readings: want the livecgid.* sensors too", res.Messages, res.Received)
	}
	if res.DeviceCPU <= 0 || res.CPUPerReading <= 0 {
		t.Errorf("device CPU %.2f %%, %.1f µs per reading: want both above 0", res.DeviceCPU, res.CPUPerReading)
	}
	if res.RSSMedian <= 0 || res.PluginRSS <= 0 {
		t.Errorf("RSS livecgid %d kB, plugin %d kB: want both above 0", res.RSSMedian, res.PluginRSS)
	}
	if res.Procs != 6 {
		t.Errorf("%d device processes, want 6 (3 livecgid, 3 bench plugins)", res.Procs)
	}
	if res.Killed != 0 {
		t.Errorf("%d livecgid did not end within 5 s of SIGTERM", res.Killed)
	}
	for _, want := range []string{"| devices delivering | 3 of 3 |", "| latency p99 |", "| device CPU per bench reading"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
