// Command tinyplugin is the SDK's test plugin: sensors and commands that
// succeed, fail and panic. With TINYPLUGIN_INVALID=1 it serves a plugin
// with a bad sensor id; with TINYPLUGIN_UNAVAILABLE=<reason> it has nothing
// to serve.
package main

import (
	"context"
	"errors"
	"os"
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
	if reason := os.Getenv("TINYPLUGIN_UNAVAILABLE"); reason != "" {
		sdk.Unavailable(reason)
	}
	if os.Getenv("TINYPLUGIN_INVALID") == "1" {
		p.Sensors[0].ID = "Answer-Count"
	}
	sdk.Serve(p)
}
