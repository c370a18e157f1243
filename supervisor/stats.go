package supervisor

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/livecgi/livecgi/proto/rbe"
	"github.com/livecgi/livecgi/proto/wire"
)

// builtinSensors are the supervisor's own figures, the sensors of plugin
// "livecgid", with the deadband of their report-by-exception rule (and
// builtinHeartbeat): what livecgid declares as a plugin would.
var builtinSensors = []struct {
	id, title, unit string
	deadband        float64
}{
	{"clients", "Connected clients", "", 0},
	{"messages_per_second", "Messages sent per second", "1/s", 20},
	{"coalesced_total", "Readings coalesced for slow clients", "", 0},
	{"too_slow_total", "Clients closed for being too slow", "", 0},
	{"plugin_restarts_total", "Plugin restarts", "", 0},
	{"rss_bytes", "Supervisor resident memory", "B", 256 << 10},
	{"goroutines", "Supervisor goroutines", "", 0},
}

// builtinHeartbeat is the heartbeat of every built-in figure.
const builtinHeartbeat = time.Minute

// registerBuiltin declares the supervisor's own figures as the sensors of
// plugin "livecgid"; they flow through the same pipeline as any plugin's.
func (s *Supervisor) registerBuiltin() {
	ms := s.stats.Milliseconds()
	var ss []wire.Sensor
	for _, b := range builtinSensors {
		ss = append(ss, wire.Sensor{ID: builtinPlugin + "." + b.id, Plugin: builtinPlugin, Title: b.title, Unit: b.unit,
			ValueType: wire.ValueNumber, IntervalMS: ms, Deadband: b.deadband, HeartbeatMS: builtinHeartbeat.Milliseconds()})
	}
	s.hub.SetPlugin(builtinPlugin, &wire.PluginInfo{ID: builtinPlugin, State: wire.StateOnline, Version: s.version}, ss, nil, nil)
}

// figure is how one built-in figure is sampled under the demand now.
type figure struct {
	every time.Duration // 0: not wanted
	next  time.Time
	rule  rbe.Filter
}

// publishStats samples the built-in figures the demand wants, as a
// plugin's Stream would: every one every s.stats while someone consumes
// readings, a recorded or alarmed one at its interval otherwise, none
// when nothing of livecgid is wanted (it sleeps). Each is sampled at once
// when the demand changes, then at its interval, and published when its
// rule (builtinSensors, with the configuration's overrides) passes it.
func (s *Supervisor) publishStats(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	last, lastT := s.hub.Counters().Delivered.Load(), time.Now()
	value := func(id string, now time.Time) float64 {
		switch id {
		case "clients":
			return float64(s.hub.ClientCount())
		case "messages_per_second":
			d := s.hub.Counters().Delivered.Load()
			rate := float64(d-last) / max(now.Sub(lastT).Seconds(), 1e-3)
			last, lastT = d, now
			return rate
		case "coalesced_total":
			return float64(s.hub.Counters().Coalesced.Load())
		case "too_slow_total":
			return float64(s.hub.Counters().TooSlow.Load())
		case "plugin_restarts_total":
			return float64(s.plugins.Restarts())
		case "rss_bytes":
			return float64(rss())
		case "goroutines":
			return float64(runtime.NumGoroutine())
		}
		return 0
	}
	figs := make([]figure, len(builtinSensors))
	for {
		w, changed := s.demand.Want(builtinPlugin)
		t0 := time.Now()
		for i, b := range builtinSensors {
			figs[i] = figure{}
			declared := rbe.Filter{Deadband: b.deadband, Heartbeat: builtinHeartbeat}
			if rule, wanted := w.Rule(b.id, declared); wanted {
				figs[i] = figure{every: w.Of(b.id).Every(s.stats), next: t0, rule: rule}
			}
		}
	wait:
		for {
			now := time.Now()
			var due time.Time // the next sample of any
			for i, b := range builtinSensors {
				f := &figs[i]
				if f.every == 0 {
					continue
				}
				if !f.next.After(now) {
					v := value(b.id, now)
					if f.rule.Pass(v, "", time.UnixMilli(now.UnixMilli())) {
						readings{s.hub, s}.Publish(wire.Reading{Sensor: builtinPlugin + "." + b.id, Value: v, T: now.UnixMilli()})
					}
					f.next = t0.Add((now.Sub(t0)/f.every + 1) * f.every)
				}
				if due.IsZero() || f.next.Before(due) {
					due = f.next
				}
			}
			if !due.IsZero() {
				timer.Reset(time.Until(due))
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
				timer.Stop()
				break wait
			case <-timer.C:
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
