package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, hz, sensors string
		wantHz            float64
		wantSensors       int
		wantEvery         time.Duration
		err               string
	}{
		{name: "default", wantHz: 10, wantSensors: 1, wantEvery: 100 * time.Millisecond},
		{name: "100 Hz on one sensor", hz: "100", wantHz: 100, wantSensors: 1, wantEvery: 10 * time.Millisecond},
		{name: "1000 Hz split", hz: "1000", wantHz: 1000, wantSensors: 10, wantEvery: 10 * time.Millisecond},
		{name: "150 Hz on 2", hz: "150", wantHz: 150, wantSensors: 2, wantEvery: 13333333 * time.Nanosecond},
		{name: "more sensors than needed", hz: "10", sensors: "5", wantHz: 10, wantSensors: 5, wantEvery: 500 * time.Millisecond},
		{name: "too few sensors", hz: "1000", sensors: "3", err: "at least 10 sensors"},
		{name: "zero rate", hz: "0", err: "want a rate"},
		{name: "bad rate", hz: "fast", err: "want a rate"},
		{name: "bad sensors", sensors: "-1", err: "want 1 to 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(func(k string) string {
				return map[string]string{EnvHz: tc.hz, EnvSensors: tc.sensors}[k]
			})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.hz != tc.wantHz || c.sensors != tc.wantSensors || c.interval() != tc.wantEvery {
				t.Errorf("got %g Hz, %d sensors every %v; want %g, %d, %v", c.hz, c.sensors, c.interval(), tc.wantHz, tc.wantSensors, tc.wantEvery)
			}
			if c.interval() < MinInterval {
				t.Errorf("interval %v below the supervisor's minimum", c.interval())
			}
			p := c.plugin()
			if len(p.Sensors) != c.sensors || p.Sensors[0].ID != "tick_us" {
				t.Errorf("plugin sensors %d, first %q", len(p.Sensors), p.Sensors[0].ID)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bench")
	env := "# bench settings\nLIVECGI_BENCH_HZ = 200\n\nLIVECGI_BENCH_SENSORS=4\n"
	if err := os.WriteFile(filepath.Join(dir, ".bench.env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load(func(string) string { return "" }, exe)
	if err != nil || c.hz != 200 || c.sensors != 4 {
		t.Fatalf("from file: %+v, %v", c, err)
	}
	c, err = load(func(k string) string {
		if k == EnvHz {
			return "20"
		}
		return ""
	}, exe)
	if err != nil || c.hz != 20 || c.sensors != 4 {
		t.Fatalf("environment over file: %+v, %v", c, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".bench.env"), []byte("HZ\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := load(func(string) string { return "" }, exe); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad file: err = %v", err)
	}
	c, err = load(func(string) string { return "" }, filepath.Join(t.TempDir(), "bench"))
	if err != nil || c.hz != 10 {
		t.Fatalf("no file: %+v, %v", c, err)
	}
}
