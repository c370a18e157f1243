package sdk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// The examples are compiled, not run: a plugin serves livecgid over
// go-plugin, and run by hand it only says so. example_test.go is the
// program plugins/README.md shows.

// A plugin with one sensor is one call: the plugin is named after it.
func ExampleServeSensor() {
	sdk.ServeSensor(sdk.Sensor{
		ID:       "board_temp_celsius",
		Unit:     "°C",
		Interval: 2 * time.Second,
		Read: func(ctx context.Context) (sdk.Reading, error) {
			b, err := os.ReadFile(sdk.SysPath("class/thermal/thermal_zone0/temp"))
			if err != nil {
				return sdk.Reading{}, fmt.Errorf("read thermal zone: %w", err)
			}
			milli, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				return sdk.Reading{}, fmt.Errorf("parse thermal zone: %w", err)
			}
			return sdk.Gauge(float64(milli) / 1000), nil
		},
	})
}

// A plugin with one command: livecgid checks the arguments against Args
// before Do runs; Do checks what only the device knows.
func ExampleServeCommand() {
	sdk.ServeCommand(sdk.Command{
		ID:    "set_led",
		Title: "Status LED",
		Args: []sdk.Arg{
			{Name: "state", Type: sdk.Text, Required: true, Enum: []string{"on", "off"}},
		},
		Do: func(ctx context.Context, args map[string]any) (any, error) {
			v := "0"
			if args["state"] == "on" {
				v = "1"
			}
			return args["state"], os.WriteFile(sdk.SysPath("class/leds/status/brightness"), []byte(v), 0)
		},
	})
}

// A plugin for hardware this machine lacks says so before Serve: the page
// shows it as unavailable with the reason, and livecgid does not restart
// it in a loop.
func ExampleUnavailable() {
	if _, err := os.Stat(sdk.SysPath("class/hwmon")); err != nil {
		sdk.Unavailable("no sensor chip in /sys/class/hwmon")
	}
	sdk.ServeSensor(sdk.Sensor{ID: "fan_rpm", Read: func(ctx context.Context) (sdk.Reading, error) {
		b, err := os.ReadFile(sdk.SysPath("class/hwmon/hwmon0/fan1_input"))
		if err != nil {
			return sdk.Reading{}, err
		}
		rpm, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return sdk.Reading{}, fmt.Errorf("parse fan speed: %w", err)
		}
		return sdk.Gauge(float64(rpm)), nil
	}})
}

// A sensor whose values come when they come (lines from a serial port)
// uses Watch instead of Read. Last keeps the last good value on the page
// beside an error.
func ExampleSensor_watch() {
	sdk.ServeSensor(sdk.Sensor{
		ID:       "weather_celsius",
		Unit:     "°C",
		Interval: time.Minute, // the page marks the sensor stale after 3 minutes of silence
		Watch: func(ctx context.Context, send func(sdk.Reading, error)) {
			f, err := os.Open("/dev/ttyS1")
			if err != nil {
				send(sdk.Reading{}, err)
				return
			}
			context.AfterFunc(ctx, func() { f.Close() })
			var last sdk.Reading
			for lines := bufio.NewScanner(f); lines.Scan(); {
				v, err := strconv.ParseFloat(lines.Text(), 64)
				if err != nil {
					send(sdk.Last(last), fmt.Errorf("station sent %q", lines.Text()))
					continue
				}
				last = sdk.Gauge(v)
				send(last, nil)
			}
			if ctx.Err() == nil {
				send(sdk.Last(last), errors.New("serial port closed"))
			}
		},
	})
}
