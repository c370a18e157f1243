// Command board reports the SoC temperature and switches the fan.
package sdk_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// version is set at build time: -ldflags '-X main.version=1.0.0'.
var version = "dev"

func ExampleServe() {
	sdk.Serve(sdk.Plugin{
		Name:    "board", // its own name; the id in the browser is the file name
		Version: version, // shown on the dashboard and in status messages
		Sensors: []sdk.Sensor{{
			ID:       "temp_celsius",      // board.temp_celsius in the browser
			Title:    "Board temperature", // the dashboard's label
			Unit:     "°C",
			Type:     sdk.Number,      // the default; sdk.Text, sdk.Bool
			Interval: 2 * time.Second, // how often Read runs while someone looks
			Read: func(ctx context.Context) (sdk.Reading, error) {
				b, err := os.ReadFile(sdk.SysPath("class/thermal/thermal_zone0/temp"))
				if err != nil {
					return sdk.Reading{}, fmt.Errorf("read thermal zone: %w", err)
				}
				milli, err := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil {
					return sdk.Reading{}, fmt.Errorf("parse thermal zone: %w", err)
				}
				return sdk.Gauge(float64(milli) / 1000), nil // sdk.String, sdk.Flag
			},
		}},
		Commands: []sdk.Command{{
			ID:    "set_fan",
			Title: "Fan",
			Args: []sdk.Arg{{Name: "speed", Type: sdk.Number, Required: true,
				Min: sdk.Range(0), Max: sdk.Range(100)}}, // or Enum for sdk.Text
			Do: func(ctx context.Context, args map[string]any) (any, error) {
				speed := args["speed"].(float64) // checked against Args already
				return speed, os.WriteFile(sdk.SysPath("class/hwmon/hwmon0/pwm1"),
					[]byte(strconv.Itoa(int(speed*255/100))), 0)
			},
		}},
	})
}
