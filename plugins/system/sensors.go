package system

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// Poll intervals. The kernel recomputes load averages every 5 s, so
// polling them faster shows nothing new.
const (
	fastInterval = time.Second     // cpu, network
	slowInterval = 5 * time.Second // load, memory, uptime, thermal
)

// Report by exception (README.md, "Deadbands"): a reading is sent when it
// moved by more than its sensor's deadband since the last one sent, and
// at least once a heartbeat.
const (
	heartbeat = time.Minute
	kib       = 1024
	// netDeadband is a network rate's: the traffic of livecgi's own pages
	// moves the rate of the link they come over by about 200 B/s per
	// browser and reading sent, so a smaller one lets that traffic send
	// the rate again every second, and each of those readings makes more
	// of it (README.md, "Deadbands").
	netDeadband = 16 * kib
)

// sharedFresh is how long a shared read serves: the SDK wakes every
// reader of a tick together, within a few milliseconds; the next tick is
// an interval (1 s at least) away.
const sharedFresh = 100 * time.Millisecond

// shared is one /proc file as the sensors that read it see it: read once
// for all the readers of a tick (a read within sharedFresh of the last
// one gives its result), parsed once.
type shared[T any] struct {
	read func() (T, error)

	mu  sync.Mutex
	at  time.Time // of the last read; zero before the first
	v   T
	err error
}

// get returns the file's content as of at.
func (s *shared[T]) get() (T, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); s.at.IsZero() || now.Sub(s.at) >= sharedFresh || now.Before(s.at) {
		s.v, s.err = s.read()
		s.at = time.Now()
	}
	return s.v, s.at, s.err
}

// newPlugin builds the plugin's sensors over procRoot and sysRoot, with
// the network interfaces nets chooses (see netChoice). Network interfaces
// and thermal zones are found once, here; a group that can't be listed is
// left out with a warning, and the rest still serves.
func newPlugin(procRoot, sysRoot, nets string, log *slog.Logger) sdk.Plugin {
	p := sdk.Plugin{Name: "system"}
	ids := idSet{}
	add := func(id, title, unit string, every time.Duration, deadband float64, sample func() (float64, error)) {
		p.Sensors = append(p.Sensors, sdk.Sensor{
			ID: ids.unique(id), Title: title, Unit: unit, Interval: every,
			Deadband: deadband, Heartbeat: heartbeat, Read: gauge(sample),
		})
	}
	// The sensors of one file read it once per tick (see shared).
	loads := &shared[loadAvg]{read: func() (loadAvg, error) { return readLoad(procRoot) }}
	mems := &shared[memInfo]{read: func() (memInfo, error) { return readMem(procRoot) }}
	netdev := &shared[[]netDev]{read: func() ([]netDev, error) { return readNetDev(procRoot) }}
	load := func(i int) func() (float64, error) {
		return func() (float64, error) { l, _, err := loads.get(); return l[i], err }
	}
	mem := func(f func(memInfo) float64) func() (float64, error) {
		return func() (float64, error) { m, _, err := mems.get(); return f(m), err }
	}
	add("load1", "Load average, 1 min", "", slowInterval, 0.05, load(0))
	add("load5", "Load average, 5 min", "", slowInterval, 0.05, load(1))
	add("load15", "Load average, 15 min", "", slowInterval, 0.05, load(2))
	add("cpu_percent", "CPU", "%", fastInterval, 1, (&cpuSensor{root: procRoot}).sample)
	add("mem_total_bytes", "Memory total", "B", slowInterval, 0, mem(func(m memInfo) float64 { return float64(m.total) }))
	add("mem_available_bytes", "Memory available", "B", slowInterval, 256*kib, mem(func(m memInfo) float64 { return float64(m.available) }))
	add("mem_used_percent", "Memory used", "%", slowInterval, 0.5, mem(memInfo.usedPercent))
	add("uptime_seconds", "Uptime", "s", slowInterval, 60, func() (float64, error) { return readUptime(procRoot) })

	devs, err := readNetDev(procRoot)
	if err != nil {
		log.Warn("no network sensors", "err", err)
	}
	show := netChoice(nets, sysRoot)
	for _, d := range devs {
		if !show(d.name) {
			log.Debug("interface left out (net_interfaces)", "iface", d.name, "net_interfaces", nets)
			continue
		}
		id := "net_" + sanitize(d.name)
		add(id+"_rx_bytes_per_second", d.name+" received", "B/s", fastInterval, netDeadband, (&netSensor{root: procRoot, iface: d.name, devs: netdev}).sample)
		add(id+"_tx_bytes_per_second", d.name+" sent", "B/s", fastInterval, netDeadband, (&netSensor{root: procRoot, iface: d.name, tx: true, devs: netdev}).sample)
	}

	zones, err := findThermalZones(sysRoot)
	if err != nil {
		log.Warn("no thermal sensors", "err", err)
	}
	for _, z := range zones {
		add(sanitize(z.name)+"_celsius", z.title, "°C", slowInterval, 0.5, func() (float64, error) { return readCelsius(z.dir) })
	}
	return p
}

// gauge makes a sensor's Read from a func returning a number.
func gauge(sample func() (float64, error)) func(context.Context) (sdk.Reading, error) {
	return func(context.Context) (sdk.Reading, error) {
		v, err := sample()
		return sdk.Gauge(v), err
	}
}

// idSet hands out ids that are unique within the plugin.
type idSet map[string]bool

// unique returns id, or id with a number appended when two names sanitize
// alike ("br-lan" and "br.lan").
func (s idSet) unique(id string) string {
	u := id
	for n := 2; s[u]; n++ {
		u = id + "_" + strconv.Itoa(n)
	}
	s[u] = true
	return u
}

// cpuSensor reports CPU use between two reads. The first read reports the
// average since boot; a read in the same jiffy as the one before repeats
// the last value.
type cpuSensor struct {
	root string
	mu   sync.Mutex
	prev cpuTimes
	last float64
}

func (c *cpuSensor) sample() (float64, error) {
	cur, err := readCPU(c.root)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if pct, ok := cpuPercent(c.prev, cur); ok {
		c.last = pct
	}
	c.prev = cur
	return c.last, nil
}

// netSensor reports the bytes per second an interface received (or sent)
// between two reads. The first read reports 0.
type netSensor struct {
	root  string
	iface string
	tx    bool
	devs  *shared[[]netDev] // net/dev as every network sensor reads it; nil: read it here
	now   func() time.Time  // time.Now when nil; tests set a clock

	mu   sync.Mutex
	prev uint64
	at   time.Time // zero before the first read
}

func (n *netSensor) sample() (float64, error) {
	var devs []netDev
	var err error
	now := time.Now()
	if n.devs != nil {
		devs, now, err = n.devs.get() // the counters' time: when they were read
	} else {
		devs, err = readNetDev(n.root)
	}
	if err != nil {
		return 0, err
	}
	if n.now != nil {
		now = n.now()
	}
	for _, d := range devs {
		if d.name != n.iface {
			continue
		}
		cur := d.rx
		if n.tx {
			cur = d.tx
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		v := 0.0
		if !n.at.IsZero() {
			v = rate(n.prev, cur, now.Sub(n.at))
		}
		n.prev, n.at = cur, now
		return v, nil
	}
	return 0, fmt.Errorf("interface %s is gone", n.iface)
}
