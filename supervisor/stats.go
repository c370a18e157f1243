package supervisor

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/livecgi/livecgi/proto/wire"
)

// registerBuiltin declares the supervisor's own figures as the sensors of
// plugin "livecgid"; they flow through the same pipeline as any plugin's.
func (s *Supervisor) registerBuiltin() {
	ms := s.stats.Milliseconds()
	sensor := func(id, title, unit string) wire.Sensor {
		return wire.Sensor{ID: builtinPlugin + "." + id, Plugin: builtinPlugin, Title: title, Unit: unit, ValueType: wire.ValueNumber, IntervalMS: ms}
	}
	s.hub.SetPlugin(builtinPlugin, &wire.PluginInfo{ID: builtinPlugin, State: wire.StateOnline, Version: s.version}, []wire.Sensor{
		sensor("clients", "Connected clients", ""),
		sensor("messages_per_second", "Messages sent per second", "1/s"),
		sensor("coalesced_total", "Readings coalesced for slow clients", ""),
		sensor("too_slow_total", "Clients closed for being too slow", ""),
		sensor("plugin_restarts_total", "Plugin restarts", ""),
		sensor("rss_bytes", "Supervisor resident memory", "B"),
		sensor("goroutines", "Supervisor goroutines", ""),
	}, nil, nil)
}

// publishStats publishes the built-in sensors every s.stats while someone
// consumes readings, and at once when the first one arrives. With no
// consumer it sleeps.
func (s *Supervisor) publishStats(ctx context.Context) {
	tick := time.NewTicker(s.stats)
	tick.Stop()
	defer tick.Stop()
	last, lastT := s.hub.Counters().Delivered.Load(), time.Now()
	publish := func(now time.Time) {
		d := s.hub.Counters().Delivered.Load()
		rate := float64(d-last) / max(now.Sub(lastT).Seconds(), 1e-3)
		last, lastT = d, now
		ms := now.UnixMilli()
		pub := func(id string, v float64) {
			readings{s.hub, s}.Publish(wire.Reading{Sensor: builtinPlugin + "." + id, Value: v, T: ms})
		}
		pub("clients", float64(s.hub.ClientCount()))
		pub("messages_per_second", rate)
		pub("coalesced_total", float64(s.hub.Counters().Coalesced.Load()))
		pub("too_slow_total", float64(s.hub.Counters().TooSlow.Load()))
		pub("plugin_restarts_total", float64(s.plugins.Restarts()))
		pub("rss_bytes", float64(rss()))
		pub("goroutines", float64(runtime.NumGoroutine()))
	}
	for {
		active, changed := s.hub.Demand()
		if active {
			publish(time.Now())
			tick.Reset(s.stats)
		} else {
			tick.Stop()
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				break wait
			case now := <-tick.C:
				publish(now)
			}
		}
	}
}

// rss returns this process's resident set size in bytes, or 0.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
