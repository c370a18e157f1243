package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// Setting names, in the environment or the .<name>.env file.
const (
	EnvHz      = "LIVECGI_BENCH_HZ"
	EnvSensors = "LIVECGI_BENCH_SENSORS"
)

// MinInterval is the shortest sensor interval the supervisor accepts.
const MinInterval = sdk.MinInterval

// config is the plugin's settings.
type config struct {
	hz      float64 // readings per second, all sensors together
	sensors int
}

// load reads the settings from getenv, then from the file .<base>.env
// beside exe for keys getenv lacks.
func load(getenv func(string) string, exe string) (config, error) {
	file := map[string]string{}
	if exe != "" {
		path := filepath.Join(filepath.Dir(exe), "."+filepath.Base(exe)+".env")
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return config{}, fmt.Errorf("read %s: %w", path, err)
		}
		if file, err = parseEnvFile(b); err != nil {
			return config{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	return parse(func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return file[k]
	})
}

// parseEnvFile reads KEY=value lines; blank lines and # comments are
// skipped.
func parseEnvFile(b []byte) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want KEY=value, got %q", n, line)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, sc.Err()
}

// parse checks the settings: hz in (0, 100000], sensors in [1, 1000] and
// enough of them that none runs faster than MinInterval.
func parse(get func(string) string) (config, error) {
	c := config{hz: 10}
	if v := get(EnvHz); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 100000) {
			return c, fmt.Errorf("%s=%q: want a rate in (0, 100000] readings per second", EnvHz, v)
		}
		c.hz = f
	}
	need := int(math.Ceil(c.hz * MinInterval.Seconds()))
	c.sensors = max(1, need)
	if v := get(EnvSensors); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return c, fmt.Errorf("%s=%q: want 1 to 1000 sensors", EnvSensors, v)
		}
		if n < need {
			return c, fmt.Errorf("%s=%d: %g Hz needs at least %d sensors (one sensor runs at most every %v)", EnvSensors, n, c.hz, need, MinInterval)
		}
		c.sensors = n
	}
	return c, nil
}

// interval is each sensor's period.
func (c config) interval() time.Duration {
	return time.Duration(float64(c.sensors) / c.hz * float64(time.Second))
}

// sensorID names sensor i: tick_us, tick1_us, tick2_us…
func sensorID(i int) string {
	if i == 0 {
		return "tick_us"
	}
	return "tick" + strconv.Itoa(i) + "_us"
}

// plugin is the SDK definition for c.
func (c config) plugin() sdk.Plugin {
	p := sdk.Plugin{Name: "bench", Version: version}
	every := c.interval()
	for i := range c.sensors {
		p.Sensors = append(p.Sensors, sdk.Sensor{
			ID:       sensorID(i),
			Title:    "Send time " + strconv.Itoa(i),
			Unit:     "µs",
			Interval: every,
			Read:     read,
		})
	}
	return p
}

// read returns the send time in Unix microseconds: exact in a float64
// until the year 2255.
func read(context.Context) (sdk.Reading, error) {
	return sdk.Gauge(float64(time.Now().UnixMicro())), nil
}
