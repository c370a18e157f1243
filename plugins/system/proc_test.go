package system

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	procFixture = "testdata/proc"
	sysFixture  = "testdata/sys"
)

func TestParseLoad(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    loadAvg
		wantErr string
	}{
		{name: "typical", in: "0.52 0.38 0.31 2/183 4242\n", want: loadAvg{0.52, 0.38, 0.31}},
		{name: "busy", in: "12.00 8.50 4.25 9/1200 31337", want: loadAvg{12, 8.5, 4.25}},
		{name: "only three", in: "1 2 3", want: loadAvg{1, 2, 3}},
		{name: "empty", in: "", wantErr: "want 3 load averages, got 0 fields"},
		{name: "short", in: "0.1 0.2\n", wantErr: "got 2 fields"},
		{name: "garbage", in: "0.1 x 0.3 1/2 3", wantErr: `invalid syntax`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLoad([]byte(tt.in))
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == "" && got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseCPU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    cpuTimes
		wantErr string
	}{
		{
			// user nice system idle iowait irq softirq steal guest guest_nice
			name: "modern", in: "cpu  100 10 50 800 20 5 15 0 40 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n",
			want: cpuTimes{busy: 100 + 10 + 50 + 5 + 15, total: 1000},
		},
		{name: "2.6 kernel, 7 columns", in: "cpu  100 0 100 700 50 25 25\n", want: cpuTimes{busy: 250, total: 1000}},
		{name: "4 columns", in: "cpu 1 2 3 4\n", want: cpuTimes{busy: 6, total: 10}},
		{name: "per-cpu first", in: "cpu0 1 2 3 4\n", wantErr: `want a "cpu" line`},
		{name: "too few", in: "cpu 1 2 3\n", wantErr: `want a "cpu" line`},
		{name: "empty", in: "", wantErr: `want a "cpu" line`},
		{name: "negative", in: "cpu 1 -2 3 4\n", wantErr: "invalid syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPU([]byte(tt.in))
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == "" && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCPUPercent(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur cpuTimes
		want      float64
		ok        bool
	}{
		{name: "since boot", cur: cpuTimes{busy: 250, total: 1000}, want: 25, ok: true},
		{name: "delta", prev: cpuTimes{busy: 250, total: 1000}, cur: cpuTimes{busy: 350, total: 1200}, want: 50, ok: true},
		{name: "all idle", prev: cpuTimes{busy: 250, total: 1000}, cur: cpuTimes{busy: 250, total: 1400}, want: 0, ok: true},
		{name: "all busy", prev: cpuTimes{busy: 250, total: 1000}, cur: cpuTimes{busy: 450, total: 1200}, want: 100, ok: true},
		{name: "same jiffy", prev: cpuTimes{busy: 250, total: 1000}, cur: cpuTimes{busy: 250, total: 1000}},
		{name: "went back", prev: cpuTimes{busy: 250, total: 1000}, cur: cpuTimes{busy: 10, total: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cpuPercent(tt.prev, tt.cur)
			if ok != tt.ok || got != tt.want {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseMem(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    memInfo
		wantErr string
	}{
		{
			name: "modern", in: "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\nCached: 200 kB\n",
			want: memInfo{total: 1000 * 1024, available: 600 * 1024},
		},
		{
			name: "before 3.14, no MemAvailable", in: "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\n",
			want: memInfo{total: 1000 * 1024, available: 350 * 1024},
		},
		{name: "HugePages lines have no unit", in: "MemTotal: 8 kB\nMemAvailable: 4 kB\nHugePages_Total: 0\n", want: memInfo{total: 8192, available: 4096}},
		{name: "no total", in: "MemFree: 100 kB\n", wantErr: "no MemTotal"},
		{name: "no available", in: "MemTotal: 100 kB\n", wantErr: "neither MemAvailable nor MemFree"},
		{name: "bad number", in: "MemTotal: lots kB\n", wantErr: "MemTotal: strconv.ParseUint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMem([]byte(tt.in))
			checkErr(t, err, tt.wantErr)
			if tt.wantErr == "" && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUsedPercent(t *testing.T) {
	tests := []struct {
		m    memInfo
		want float64
	}{
		{memInfo{total: 1000, available: 250}, 75},
		{memInfo{total: 1000, available: 1000}, 0},
		{memInfo{total: 1000}, 100},
		{memInfo{}, 0},
	}
	for _, tt := range tests {
		if got := tt.m.usedPercent(); got != tt.want {
			t.Errorf("%+v: got %v, want %v", tt.m, got, tt.want)
		}
	}
}

func TestParseUptime(t *testing.T) {
	tests := []struct {
		in      string
		want    float64
		wantErr string
	}{
		{in: "354012.45 1321034.88\n", want: 354012.45},
		{in: "5.01 3.2", want: 5.01},
		{in: "", wantErr: "empty"},
		{in: "soon 1", wantErr: "invalid syntax"},
	}
	for _, tt := range tests {
		got, err := parseUptime([]byte(tt.in))
		checkErr(t, err, tt.wantErr)
		if tt.wantErr == "" && got != tt.want {
			t.Errorf("%q: got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	const header = "Inter-|   Receive                                                |  Transmit\n" +
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
	tests := []struct {
		name    string
		in      string
		want    []netDev
		wantErr string
	}{
		{
			name: "two interfaces",
			in: header +
				"    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n" +
				"  eth0: 5000 50 0 0 0 0 0 0 7000 70 0 0 0 0 0 0\n",
			want: []netDev{{"lo", 1000, 1000}, {"eth0", 5000, 7000}},
		},
		{
			name: "old kernel, no space after colon",
			in:   header + "  eth0:4294967295 50 0 0 0 0 0 0 17 70 0 0 0 0 0 0\n",
			want: []netDev{{"eth0", 4294967295, 17}},
		},
		{name: "header only", in: header},
		{name: "short line", in: header + "eth0: 1 2 3\n", wantErr: "interface eth0: want at least 9 columns, got 3"},
		{name: "bad tx", in: header + "eth0: 1 2 3 4 5 6 7 8 x 10\n", wantErr: "interface eth0: strconv.ParseUint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNetDev([]byte(tt.in))
			checkErr(t, err, tt.wantErr)
			if tt.wantErr != "" {
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("[%d] got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur uint64
		dt        time.Duration
		want      float64
	}{
		{"steady", 1000, 3000, 2 * time.Second, 1000},
		{"idle", 1000, 1000, time.Second, 0},
		{"half second", 0, 500, 500 * time.Millisecond, 1000},
		{"counter reset", 5000, 100, time.Second, 0},
		{"no time", 0, 100, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rate(tt.prev, tt.cur, tt.dt); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	tests := map[string]string{
		"eth0":           "eth0",
		"br-lan":         "br_lan",
		"eth0.100":       "eth0_100",
		"WLAN0":          "wlan0",
		"--x--y--":       "x_y",
		"thermal_zone10": "thermal_zone10",
		"ünï":            "n",
		"":               "",
	}
	for in, want := range tests {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIDSetUnique(t *testing.T) {
	s := idSet{}
	for _, want := range []string{"net_br_lan", "net_br_lan_2", "net_br_lan_3"} {
		if got := s.unique("net_br_lan"); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// TestReadFixtures reads every file of testdata/ through the readX
// functions the sensors use.
func TestReadFixtures(t *testing.T) {
	l, err := readLoad(procFixture)
	if err != nil || l != (loadAvg{0.52, 0.38, 0.31}) {
		t.Errorf("readLoad = %v, %v", l, err)
	}
	c, err := readCPU(procFixture)
	if err != nil || c != fixtureCPU {
		t.Errorf("readCPU = %+v, %v; want %+v", c, err, fixtureCPU)
	}
	m, err := readMem(procFixture)
	if want := (memInfo{total: 507652 * 1024, available: 312884 * 1024}); err != nil || m != want {
		t.Errorf("readMem = %+v, %v; want %+v", m, err, want)
	}
	u, err := readUptime(procFixture)
	if err != nil || u != 354012.45 {
		t.Errorf("readUptime = %v, %v", u, err)
	}
	d, err := readNetDev(procFixture)
	want := []netDev{{"lo", 428731, 428731}, {"eth0", 918273645, 123456789}, {"wlan0", 0, 0}, {"br-lan", 5120034, 8843310}, {"ifb0", 0, 0}, {"ifb1", 0, 0}}
	if err != nil || len(d) != len(want) {
		t.Fatalf("readNetDev = %+v, %v; want %+v", d, err, want)
	}
	for i := range d {
		if d[i] != want[i] {
			t.Errorf("readNetDev[%d] = %+v, want %+v", i, d[i], want[i])
		}
	}
	zones, err := findThermalZones(sysFixture)
	if err != nil || len(zones) != 3 {
		t.Fatalf("findThermalZones = %+v, %v; want 3 zones", zones, err)
	}
	for i, want := range []struct {
		name, title string
		celsius     float64
	}{{"thermal_zone0", "cpu-thermal", 48.312}, {"thermal_zone1", "gpu-thermal", 46.75}, {"thermal_zone2", "battery", -2.5}} {
		if zones[i].name != want.name || zones[i].title != want.title {
			t.Errorf("zone %d = %+v, want %+v", i, zones[i], want)
		}
		if got, err := readCelsius(zones[i].dir); err != nil || got != want.celsius {
			t.Errorf("readCelsius(%s) = %v, %v; want %v", zones[i].dir, got, err, want.celsius)
		}
	}
}

// fixtureCPU is the aggregate cpu line of testdata/proc/stat.
var fixtureCPU = cpuTimes{
	busy:  10132153 + 290696 + 3084719 + 0 + 25195 + 0,
	total: 10132153 + 290696 + 3084719 + 46828483 + 16683 + 0 + 25195 + 0,
}

func TestReadMissing(t *testing.T) {
	empty := t.TempDir()
	if _, err := readLoad(empty); !os.IsNotExist(err) {
		t.Errorf("readLoad: got %v, want not-exist", err)
	}
	if _, err := readNetDev(empty); !os.IsNotExist(err) {
		t.Errorf("readNetDev: got %v, want not-exist", err)
	}
	zones, err := findThermalZones(empty)
	if err != nil || len(zones) != 0 {
		t.Errorf("findThermalZones(empty) = %v, %v", zones, err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "temp"), []byte("hot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readCelsius(bad); err == nil || !strings.Contains(err.Error(), "parse "+filepath.Join(bad, "temp")) {
		t.Errorf("readCelsius(bad) = %v, want a parse error naming the file", err)
	}
	if err := os.WriteFile(filepath.Join(bad, "stat"), []byte("intr 1 2 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readCPU(bad); err == nil || !strings.Contains(err.Error(), "parse "+filepath.Join(bad, "stat")) {
		t.Errorf("readCPU(bad) = %v, want a parse error naming the file", err)
	}
}

// TestNewPluginIDs checks the sensor ids built from the fixtures, and that
// the SDK accepts them.
func TestNewPluginIDs(t *testing.T) {
	p := newPlugin(procFixture, sysFixture, "", discardLogger())
	var got []string
	for _, s := range p.Sensors {
		got = append(got, s.ID)
	}
	want := fixtureIDs()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("ids:\n got %v\nwant %v", got, want)
	}
	if p.Name != "system" {
		t.Errorf("name, version = %q, %q", p.Name, p.Version)
	}
}

// fixtureIDs are the sensors the plugin finds in testdata/, in order.
func fixtureIDs() []string {
	return []string{
		"load1", "load5", "load15", "cpu_percent",
		"mem_total_bytes", "mem_available_bytes", "mem_used_percent", "uptime_seconds",
		"net_lo_rx_bytes_per_second", "net_lo_tx_bytes_per_second",
		"net_eth0_rx_bytes_per_second", "net_eth0_tx_bytes_per_second",
		"net_wlan0_rx_bytes_per_second", "net_wlan0_tx_bytes_per_second",
		"net_br_lan_rx_bytes_per_second", "net_br_lan_tx_bytes_per_second",
		"thermal_zone0_celsius", "thermal_zone1_celsius", "thermal_zone2_celsius",
	}
}

// fixtureValues are the first readings the plugin reports on testdata/.
// Rates need two reads, so the first is 0; CPU starts at its average since
// boot.
func fixtureValues() map[string]float64 {
	return map[string]float64{
		"load1": 0.52, "load5": 0.38, "load15": 0.31,
		"cpu_percent":           100 * float64(fixtureCPU.busy) / float64(fixtureCPU.total),
		"mem_total_bytes":       507652 * 1024,
		"mem_available_bytes":   312884 * 1024,
		"mem_used_percent":      100 * float64(507652-312884) / 507652,
		"uptime_seconds":        354012.45,
		"thermal_zone0_celsius": 48.312, "thermal_zone1_celsius": 46.75, "thermal_zone2_celsius": -2.5,
		"net_lo_rx_bytes_per_second": 0, "net_lo_tx_bytes_per_second": 0,
		"net_eth0_rx_bytes_per_second": 0, "net_eth0_tx_bytes_per_second": 0,
		"net_wlan0_rx_bytes_per_second": 0, "net_wlan0_tx_bytes_per_second": 0,
		"net_br_lan_rx_bytes_per_second": 0, "net_br_lan_tx_bytes_per_second": 0,
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("got no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// TestNetInterfaces: by default the interfaces that are down (ifb0 and
// ifb1 in testdata/sys/class/net: no IFF_UP) are left out, while wlan0, up
// without a carrier, stays; net_interfaces = all shows every one, a list
// only those named (a name that is not there is no error).
func TestNetInterfaces(t *testing.T) {
	nets := func(choice string) []string {
		var got []string
		for _, s := range newPlugin(procFixture, sysFixture, choice, discardLogger()).Sensors {
			if name, ok := strings.CutSuffix(s.ID, "_rx_bytes_per_second"); ok {
				got = append(got, strings.TrimPrefix(name, "net_"))
			}
		}
		return got
	}
	for _, tt := range []struct{ choice, want string }{
		{"", "lo eth0 wlan0 br_lan"},
		{"up", "lo eth0 wlan0 br_lan"},
		{"all", "lo eth0 wlan0 br_lan ifb0 ifb1"},
		{"eth0 ifb1", "eth0 ifb1"},
		{"br-lan,eth9", "br_lan"},
	} {
		if got := strings.Join(nets(tt.choice), " "); got != tt.want {
			t.Errorf("net_interfaces = %q: %s, want %s", tt.choice, got, tt.want)
		}
	}
	// Without a sys/class/net (an old kernel, a fixture without it) every
	// interface counts as up.
	if got := nets(""); len(got) != 4 {
		t.Fatalf("fixture: %v", got)
	}
	n := 0
	for _, s := range newPlugin(procFixture, t.TempDir(), "", discardLogger()).Sensors {
		if strings.HasSuffix(s.ID, "_rx_bytes_per_second") {
			n++
		}
	}
	if n != 6 {
		t.Errorf("no sys/class/net: %d interfaces, want all 6", n)
	}
}
