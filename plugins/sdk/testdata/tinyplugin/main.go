// Command tinyplugin is the SDK's test plugin: sensors and commands that
// succeed, fail and panic. With TINYPLUGIN_INVALID=1 it serves a plugin
// with a bad sensor id; with TINYPLUGIN_UNAVAILABLE=<reason> it has nothing
// to serve. With TINYPLUGIN_RBE_DIR=<dir> it also has the sensors of the
// report-by-exception tests (rbeSensors).
package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
)

func main() {
	const every = 50 * time.Millisecond
	p := sdk.Plugin{
		Name:    "tiny",
		Version: "1.0.0",
		Sensors: []sdk.Sensor{
			{ID: "answer_count", Title: "Answer", Interval: every, Read: func(context.Context) (sdk.Reading, error) { return sdk.Gauge(42), nil }},
			{ID: "greeting_text", Type: sdk.Text, Interval: every, Read: func(context.Context) (sdk.Reading, error) { return sdk.String("hello"), nil }},
			{ID: "door_open", Type: sdk.Bool, Interval: time.Hour, Read: func(context.Context) (sdk.Reading, error) { return sdk.Flag(true), nil }},
			{ID: "broken_count", Interval: every, Read: func(context.Context) (sdk.Reading, error) { return sdk.Reading{}, errors.New("sensor unplugged") }},
			{ID: "panic_count", Interval: every, Read: func(context.Context) (sdk.Reading, error) { panic("boom") }},
		},
		Commands: []sdk.Command{
			{ID: "echo", Args: []sdk.Arg{{Name: "text", Type: sdk.Text}}, Do: func(_ context.Context, args map[string]any) (any, error) { return args, nil }},
			{ID: "fail", Do: func(context.Context, map[string]any) (any, error) { return nil, errors.New("no can do") }},
			{ID: "explode", Do: func(context.Context, map[string]any) (any, error) { panic("kaboom") }},
		},
	}
	if dir := os.Getenv("TINYPLUGIN_RBE_DIR"); dir != "" {
		p.Sensors = append(p.Sensors, rbeSensors(dir)...)
	}
	if reason := os.Getenv("TINYPLUGIN_UNAVAILABLE"); reason != "" {
		sdk.Unavailable(reason)
	}
	if os.Getenv("TINYPLUGIN_INVALID") == "1" {
		p.Sensors[0].ID = "Answer-Count"
	}
	sdk.Serve(p)
}

// rbeSensors read every 10 ms:
//   - steady_count: always 7; deadband 0, heartbeat 300 ms.
//   - file_value: the number in dir/value (an error when it is not one);
//     deadband 0.5, heartbeat an hour. After each read it writes what it
//     read to dir/seen, so a test knows a value was read.
//   - tick_count: how many times it was read (1 first); no rule.
func rbeSensors(dir string) []sdk.Sensor {
	const every = 10 * time.Millisecond
	var ticks atomic.Int64
	return []sdk.Sensor{
		{ID: "steady_count", Interval: every, Heartbeat: 300 * time.Millisecond,
			Read: func(context.Context) (sdk.Reading, error) { return sdk.Gauge(7), nil }},
		{ID: "file_value", Interval: every, Deadband: 0.5, Heartbeat: time.Hour,
			Read: func(context.Context) (sdk.Reading, error) {
				b, err := os.ReadFile(filepath.Join(dir, "value"))
				if err != nil {
					return sdk.Reading{}, err
				}
				s := strings.TrimSpace(string(b))
				os.WriteFile(filepath.Join(dir, "seen"), []byte(s), 0o644)
				v, err := strconv.ParseFloat(s, 64)
				if err != nil {
					return sdk.Reading{}, errors.New("not a number: " + s)
				}
				return sdk.Gauge(v), nil
			}},
		{ID: "tick_count", Interval: every,
			Read: func(context.Context) (sdk.Reading, error) { return sdk.Gauge(float64(ticks.Add(1))), nil }},
	}
}
