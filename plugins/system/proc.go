package system

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file holds the pure parsers of the proc and sys files. Each readX
// takes the root of its file system (normally /proc or /sys) so tests run
// them against testdata/.

// readFile reads root/name.
func readFile(root, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(root, name))
}

// loadAvg holds the 1, 5 and 15 minute load averages.
type loadAvg [3]float64

// readLoad reads procRoot/loadavg.
func readLoad(procRoot string) (loadAvg, error) {
	b, err := readFile(procRoot, "loadavg")
	if err != nil {
		return loadAvg{}, err
	}
	l, err := parseLoad(b)
	if err != nil {
		return loadAvg{}, fmt.Errorf("parse %s: %w", filepath.Join(procRoot, "loadavg"), err)
	}
	return l, nil
}

// parseLoad parses "0.52 0.38 0.31 2/183 4242".
func parseLoad(b []byte) (loadAvg, error) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return loadAvg{}, fmt.Errorf("want 3 load averages, got %d fields", len(f))
	}
	var l loadAvg
	for i := range l {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return loadAvg{}, err
		}
		l[i] = v
	}
	return l, nil
}

// cpuTimes are the busy and total jiffies of all CPUs since boot.
type cpuTimes struct{ busy, total uint64 }

// readCPU reads the aggregate "cpu" line of procRoot/stat.
func readCPU(procRoot string) (cpuTimes, error) {
	b, err := readFile(procRoot, "stat")
	if err != nil {
		return cpuTimes{}, err
	}
	c, err := parseCPU(b)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("parse %s: %w", filepath.Join(procRoot, "stat"), err)
	}
	return c, nil
}

// parseCPU parses the first line of /proc/stat: "cpu user nice system idle
// iowait irq softirq steal guest guest_nice". Old kernels print fewer
// columns. Guest time is already counted in user and nice, so it is left
// out of the total; idle and iowait are not busy.
func parseCPU(b []byte) (cpuTimes, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("want a \"cpu\" line with at least 4 counters, got %q", line)
	}
	var c cpuTimes
	for i, s := range f[1:] {
		if i >= 8 { // guest, guest_nice
			break
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, err
		}
		c.total += v
		if i != 3 && i != 4 { // idle, iowait
			c.busy += v
		}
	}
	return c, nil
}

// cpuPercent returns the busy share of the jiffies between prev and cur, in
// percent. With a zero prev it is the average since boot. ok is false when
// no jiffy passed (or the counters went back), when there is nothing to
// say.
func cpuPercent(prev, cur cpuTimes) (pct float64, ok bool) {
	if cur.total <= prev.total || cur.busy < prev.busy {
		return 0, false
	}
	busy := min(cur.busy-prev.busy, cur.total-prev.total)
	return 100 * float64(busy) / float64(cur.total-prev.total), true
}

// memInfo is the memory total and available, in bytes.
type memInfo struct{ total, available uint64 }

// usedPercent is the share of memory not available, in percent.
func (m memInfo) usedPercent() float64 {
	if m.total == 0 || m.available > m.total {
		return 0
	}
	return 100 * float64(m.total-m.available) / float64(m.total)
}

// readMem reads procRoot/meminfo.
func readMem(procRoot string) (memInfo, error) {
	b, err := readFile(procRoot, "meminfo")
	if err != nil {
		return memInfo{}, err
	}
	m, err := parseMem(b)
	if err != nil {
		return memInfo{}, fmt.Errorf("parse %s: %w", filepath.Join(procRoot, "meminfo"), err)
	}
	return m, nil
}

// parseMem parses /proc/meminfo. Kernels before 3.14 have no MemAvailable;
// then MemFree + Buffers + Cached stands in for it.
func parseMem(b []byte) (memInfo, error) {
	kb := map[string]uint64{}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return memInfo{}, fmt.Errorf("%s: %w", name, err)
		}
		kb[name] = v
	}
	total, ok := kb["MemTotal"]
	if !ok {
		return memInfo{}, fmt.Errorf("no MemTotal")
	}
	avail, ok := kb["MemAvailable"]
	if !ok {
		free, ok := kb["MemFree"]
		if !ok {
			return memInfo{}, fmt.Errorf("neither MemAvailable nor MemFree")
		}
		avail = free + kb["Buffers"] + kb["Cached"]
	}
	return memInfo{total: total * 1024, available: min(avail, total) * 1024}, nil
}

// readUptime reads the seconds since boot from procRoot/uptime.
func readUptime(procRoot string) (float64, error) {
	b, err := readFile(procRoot, "uptime")
	if err != nil {
		return 0, err
	}
	v, err := parseUptime(b)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", filepath.Join(procRoot, "uptime"), err)
	}
	return v, nil
}

// parseUptime parses "354012.45 1321034.88" (uptime, idle time).
func parseUptime(b []byte) (float64, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("empty")
	}
	return strconv.ParseFloat(f[0], 64)
}

// netDev holds the byte counters of one network interface.
type netDev struct {
	name   string
	rx, tx uint64
}

// readNetDev reads procRoot/net/dev.
func readNetDev(procRoot string) ([]netDev, error) {
	b, err := readFile(procRoot, "net/dev")
	if err != nil {
		return nil, err
	}
	d, err := parseNetDev(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(procRoot, "net/dev"), err)
	}
	return d, nil
}

// parseNetDev parses /proc/net/dev: two header lines, then "name: rx_bytes
// … (8 receive columns) tx_bytes …". Old kernels print no space after the
// colon; interface names never hold one.
func parseNetDev(b []byte) ([]netDev, error) {
	var devs []netDev
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.Contains(name, "|") {
			continue // header
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			return nil, fmt.Errorf("interface %s: want at least 9 columns, got %d", strings.TrimSpace(name), len(f))
		}
		rx, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", strings.TrimSpace(name), err)
		}
		tx, err := strconv.ParseUint(f[8], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", strings.TrimSpace(name), err)
		}
		devs = append(devs, netDev{name: strings.TrimSpace(name), rx: rx, tx: tx})
	}
	return devs, nil
}

// rate is the per-second increase of a counter from prev to cur over dt.
// A counter that went back (reset, 32-bit wrap, interface re-created)
// gives 0 rather than a huge bogus value.
func rate(prev, cur uint64, dt time.Duration) float64 {
	if cur < prev || dt <= 0 {
		return 0
	}
	return float64(cur-prev) / dt.Seconds()
}

// thermalZone is one directory sysRoot/class/thermal/thermal_zoneN.
type thermalZone struct {
	dir   string // full path
	name  string // thermal_zone0
	title string // the type file: "cpu-thermal"
}

// findThermalZones lists the thermal zones under sysRoot, in numeric order.
// A zone's title is its type, or its name when type can't be read.
func findThermalZones(sysRoot string) ([]thermalZone, error) {
	dirs, err := filepath.Glob(filepath.Join(sysRoot, "class/thermal/thermal_zone*"))
	if err != nil {
		return nil, err
	}
	num := func(dir string) int {
		n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "thermal_zone"))
		return n
	}
	sort.Slice(dirs, func(i, j int) bool { return num(dirs[i]) < num(dirs[j]) })
	var zones []thermalZone
	for _, d := range dirs {
		z := thermalZone{dir: d, name: filepath.Base(d), title: filepath.Base(d)}
		if b, err := os.ReadFile(filepath.Join(d, "type")); err == nil && len(bytes.TrimSpace(b)) > 0 {
			z.title = string(bytes.TrimSpace(b))
		}
		zones = append(zones, z)
	}
	return zones, nil
}

// readCelsius reads a zone's temperature (millidegrees Celsius in its temp
// file).
func readCelsius(zoneDir string) (float64, error) {
	b, err := os.ReadFile(filepath.Join(zoneDir, "temp"))
	if err != nil {
		return 0, err
	}
	milli, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", filepath.Join(zoneDir, "temp"), err)
	}
	return float64(milli) / 1000, nil
}

// sanitize makes a lower_snake id part from a free name: lower-case ASCII
// letters and digits kept, every other run of bytes becomes one '_', no '_'
// at either end. "br-lan" → "br_lan", "eth0.100" → "eth0_100".
func sanitize(name string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if under && b.Len() > 0 {
				b.WriteByte('_')
			}
			under = false
			b.WriteRune(r)
			continue
		}
		under = true
	}
	return b.String()
}

// netChoice returns whether to show interface name, as net_interfaces
// says: "up" or empty (the default), the interfaces brought up (IFF_UP in
// sysRoot/class/net/NAME/flags; one whose flags can't be read is shown),
// so an idle ifb0 is left out while a port without a cable stays; "all",
// every interface; else the names listed, separated by blanks or commas.
func netChoice(nets, sysRoot string) func(name string) bool {
	words := strings.FieldsFunc(nets, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	switch {
	case len(words) == 0 || len(words) == 1 && words[0] == "up":
		return func(name string) bool { return ifUp(sysRoot, name) }
	case len(words) == 1 && words[0] == "all":
		return func(string) bool { return true }
	}
	return func(name string) bool { return slices.Contains(words, name) }
}

// ifUp reports whether interface name was brought up ("ip link set NAME
// up"): the IFF_UP bit of sysRoot/class/net/NAME/flags, a hex number. The
// operstate file is "down" also for an interface that is up without a
// carrier, which may get one at any time, so it does not decide. A flags
// file that can't be read or parsed counts as up.
func ifUp(sysRoot, name string) bool {
	b, err := os.ReadFile(filepath.Join(sysRoot, "class/net", name, "flags"))
	if err != nil {
		return true
	}
	flags, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), 16, 32)
	if err != nil {
		return true
	}
	const iffUp = 0x1
	return flags&iffUp != 0
}
