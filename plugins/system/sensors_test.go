package system

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCPUSensor feeds the sensor successive /proc/stat contents.
func TestCPUSensor(t *testing.T) {
	root := t.TempDir()
	c := &cpuSensor{root: root}
	steps := []struct {
		stat string
		want float64
	}{
		{"cpu 100 0 100 800 0 0 0 0\n", 20}, // since boot
		{"cpu 150 0 150 900 0 0 0 0\n", 50}, // 100 busy of 200
		{"cpu 150 0 150 900 0 0 0 0\n", 50}, // same jiffy: repeats
		{"cpu 150 0 150 1300 0 0 0 0\n", 0}, // idle
		{"cpu 10 0 10 100 0 0 0 0\n", 0},    // went back: repeats
		{"cpu 110 0 10 100 0 0 0 0\n", 100}, // all busy since the reset
	}
	for i, s := range steps {
		writeFile(t, filepath.Join(root, "stat"), s.stat)
		got, err := c.sample()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got != s.want {
			t.Errorf("step %d: got %v, want %v", i, got, s.want)
		}
	}
}

// TestNetSensor feeds the sensor successive /proc/net/dev contents on a
// fake clock.
func TestNetSensor(t *testing.T) {
	root := t.TempDir()
	now := time.Unix(1000, 0)
	rx := &netSensor{root: root, iface: "eth0", now: func() time.Time { return now }}
	tx := &netSensor{root: root, iface: "eth0", tx: true, now: func() time.Time { return now }}
	dev := func(rx, tx string) string {
		return "Inter-|Receive|Transmit\n face |bytes|bytes\n  eth0: " + rx + " 0 0 0 0 0 0 0 " + tx + " 0 0 0 0 0 0 0\n"
	}
	steps := []struct {
		dt               time.Duration
		rxBytes, txBytes string
		wantRx, wantTx   float64
	}{
		{0, "1000", "500", 0, 0}, // first read
		{2 * time.Second, "5000", "1500", 2000, 500},
		{time.Second, "5000", "1500", 0, 0},
		{time.Second, "10", "20", 0, 0}, // counters reset
		{500 * time.Millisecond, "1010", "20", 2000, 0},
	}
	for i, s := range steps {
		now = now.Add(s.dt)
		writeFile(t, filepath.Join(root, "net/dev"), dev(s.rxBytes, s.txBytes))
		for _, c := range []struct {
			n    *netSensor
			want float64
		}{{rx, s.wantRx}, {tx, s.wantTx}} {
			got, err := c.n.sample()
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if got != c.want {
				t.Errorf("step %d, tx=%v: got %v, want %v", i, c.n.tx, got, c.want)
			}
		}
	}
	writeFile(t, filepath.Join(root, "net/dev"), "Inter-|\n face |\n  eth1: 1 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0\n")
	if _, err := rx.sample(); err == nil || !strings.Contains(err.Error(), "interface eth0 is gone") {
		t.Errorf("gone interface: got %v", err)
	}
}

// TestPluginWithoutNetOrThermal checks that a root without net/dev or
// thermal zones still gives the base sensors.
func TestPluginWithoutNetOrThermal(t *testing.T) {
	p := newPlugin(t.TempDir(), t.TempDir(), "", discardLogger())
	if len(p.Sensors) != 8 {
		t.Errorf("got %d sensors, want the 8 base ones", len(p.Sensors))
	}
	for _, s := range p.Sensors {
		if _, err := s.Read(context.Background()); err == nil {
			t.Errorf("%s: read of an empty root gave no error", s.ID)
		}
	}
}
