package sdk_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "google.golang.org/protobuf/proto"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto"
)

// BenchmarkStreamRBE measures what the system plugin costs per second of
// streaming, as livecgid asks today (every reading of every sensor) and
// by exception (all: true, each sensor by its declared deadband and
// heartbeat), on its fixtures: static (nothing changes), moving (a model
// of a quiet device, changed every 100 ms by movingFixture), and the
// host's own /proc and /sys; and, on the moving fixture, with only two
// sensors demanded every 10 s (a record kept while nobody watches) against
// all of them. One op is one second: plugin-µs/s is the plugin process's
// CPU time per second, plugin-runs/s the times its threads were put on a
// CPU, msgs/s and B/s the readings and their protobuf bytes it sent per
// second (the first reading of each sensor excluded).
//
//	go test -run '^$' -bench StreamRBE -benchtime 20x -count 6 ./plugins/sdk/
func BenchmarkStreamRBE(b *testing.B) {
	bin := sdktest.BuildBuiltin(b, "system", "")
	fixture := func(b *testing.B, moving bool) []string {
		proc := sdktest.CopyFixture(b, "../system/testdata/proc")
		sys := sdktest.CopyFixture(b, "../system/testdata/sys")
		if moving {
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { movingFixture(ctx, b, proc, sys) })
			b.Cleanup(func() { cancel(); wg.Wait() })
		}
		return []string{proto.EnvProcRoot + "=" + proc, proto.EnvSysRoot + "=" + sys}
	}
	every := &proto.StreamRequest{}
	rbe := &proto.StreamRequest{All: true}
	for _, fx := range []string{"static", "moving", "host"} {
		for _, mode := range []struct {
			name string
			req  *proto.StreamRequest
		}{{"every", every}, {"rbe", rbe}} {
			b.Run(fx+"/"+mode.name, func(b *testing.B) {
				var env []string
				if fx != "host" {
					env = fixture(b, fx == "moving")
				}
				streamRate(b, bin, mode.req, env...)
			})
		}
	}
	recorded := &proto.StreamRequest{Demand: []*proto.SensorDemand{
		{Id: "cpu_percent", IntervalMs: 10000}, {Id: "thermal_zone0_celsius", IntervalMs: 10000},
	}}
	b.Run("moving/recorded", func(b *testing.B) { streamRate(b, bin, recorded, fixture(b, true)...) })
}

// streamRate starts bin with env, streams req, waits for the first
// reading of every sensor it asks for, then reports the plugin's CPU
// time, readings and bytes per second of wall time.
func streamRate(b *testing.B, bin string, req *proto.StreamRequest, env ...string) {
	before := childPIDs(b)
	c, _ := sdktest.Start(b, bin, env...)
	pid := newChild(b, before)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := c.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		b.Fatal(err)
	}
	want := len(d.Sensors)
	if len(req.Demand) > 0 && !req.All {
		want = len(req.Demand)
	}
	st, err := c.Stream(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < want {
		r, err := st.Recv()
		if err != nil {
			b.Fatal(err)
		}
		seen[r.Sensor] = true
	}
	var msgs, bytes atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			msgs.Add(1)
			bytes.Add(int64(pb.Size(r)))
		}
	}()
	msgs.Store(0)
	bytes.Store(0)
	cpu, runs := cpuNanos(b, pid)
	start := time.Now()
	b.ResetTimer()
	for b.Loop() {
		time.Sleep(time.Second)
	}
	b.StopTimer()
	secs := time.Since(start).Seconds()
	cpuEnd, runsEnd := cpuNanos(b, pid)
	n, size := msgs.Load(), bytes.Load()
	cancel()
	<-done
	b.ReportMetric(float64(cpuEnd-cpu)/1e3/secs, "plugin-µs/s")
	b.ReportMetric(float64(runsEnd-runs)/secs, "plugin-runs/s")
	b.ReportMetric(float64(n)/secs, "msgs/s")
	b.ReportMetric(float64(size)/secs, "B/s")
	b.ReportMetric(0, "ns/op")
}

// movingFixture changes the fixture under proc and sys every 100 ms
// until ctx ends, as a quiet device's would: CPU busy 2–30 % (a random
// walk) of 4 CPUs counted in 10 ms ticks; eth0 receiving about 20 KB/s
// and sending 5 KB/s, br-lan and lo a few hundred B/s, wlan0 nothing;
// load averages by the kernel's formula every 5 s over 0–2 runnable
// tasks; available memory wandering by up to 64 KiB a step; uptime
// counting; thermal zones stepping by 0.5 °C now and then. Seeded: every
// run sees the same values.
func movingFixture(ctx context.Context, tb testing.TB, proc, sys string) {
	rng := rand.New(rand.NewPCG(1, 2))
	write := func(path, s string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			tb.Error(err)
			return
		}
		if err := os.Rename(tmp, path); err != nil {
			tb.Error(err)
		}
	}
	var (
		user, system, idle uint64 = 10132153, 3084719, 46828483
		busy                      = 0.05
		rx                        = map[string]uint64{"lo": 428731, "eth0": 918273645, "wlan0": 0, "br-lan": 5120034, "ifb0": 0, "ifb1": 0}
		tx                        = map[string]uint64{"lo": 428731, "eth0": 123456789, "wlan0": 0, "br-lan": 8843310, "ifb0": 0, "ifb1": 0}
		rate                      = map[string][2]float64{"lo": {150, 150}, "eth0": {20000, 5000}, "br-lan": {300, 300}}
		load                      = [3]float64{0.52, 0.38, 0.31}
		avail              uint64 = 312884 // kB
		uptime                    = 354012.45
		temps                     = []int{48312, 45000, 51500}
	)
	decay := [3]float64{math.Exp(-5.0 / 60), math.Exp(-5.0 / 300), math.Exp(-5.0 / 900)}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for step := 0; ; step++ {
		busy = min(max(busy+(rng.Float64()-0.5)*0.02, 0.02), 0.30)
		n := uint64(0)
		for range 40 {
			if rng.Float64() < busy {
				n++
			}
		}
		user, system, idle = user+n*7/10, system+n-n*7/10, idle+40-n
		write(filepath.Join(proc, "stat"), fmt.Sprintf("cpu  %d 290696 %d %d 16683 0 25195 0 175628 0\n", user, system, idle))

		dev := "Inter-|   Receive                                                |  Transmit\n" +
			" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
		for _, name := range []string{"lo", "eth0", "wlan0", "br-lan", "ifb0", "ifb1"} {
			r := rate[name]
			rx[name] += uint64(r[0] / 10 * rng.ExpFloat64())
			tx[name] += uint64(r[1] / 10 * rng.ExpFloat64())
			dev += fmt.Sprintf("%6s: %d 0 0 0 0 0 0 0 %d 0 0 0 0 0 0 0\n", name, rx[name], tx[name])
		}
		write(filepath.Join(proc, "net/dev"), dev)

		if step%50 == 0 {
			runnable := float64(rng.IntN(3))
			for i := range load {
				load[i] = load[i]*decay[i] + runnable*(1-decay[i])
			}
			write(filepath.Join(proc, "loadavg"), fmt.Sprintf("%.2f %.2f %.2f 2/183 4242\n", load[0], load[1], load[2]))
		}
		avail = uint64(int64(avail) + rng.Int64N(129) - 64)
		write(filepath.Join(proc, "meminfo"), fmt.Sprintf("MemTotal:         507652 kB\nMemFree:           48236 kB\nMemAvailable:     %d kB\nBuffers:           21728 kB\nCached:           245376 kB\n", avail))
		uptime += 0.1
		write(filepath.Join(proc, "uptime"), fmt.Sprintf("%.2f 1321034.88\n", uptime))
		for i := range temps {
			if rng.Float64() < 0.02 {
				temps[i] += []int{-500, 500}[rng.IntN(2)]
				write(filepath.Join(sys, "class/thermal", fmt.Sprintf("thermal_zone%d", i), "temp"), fmt.Sprintf("%d\n", temps[i]))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
