// Command leds is the livecgi plugin for the Linux LED class
// (/sys/class/leds, or under the root livecgid sets in LIVECGI_SYS_ROOT):
// a brightness and a trigger sensor per LED, and the commands
// set_brightness and set_trigger. It is the reference command plugin.
//
// Everything but main is in leds.go. See README.md for the ids.
package main

import (
	"os"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// version is set at build time with -ldflags '-X main.version=…'.
var version = "dev"

func main() {
	leds, err := findLEDs(sdk.SysPath("class/leds"))
	if err != nil {
		// With no LED there is nothing to serve: say why and let
		// livecgid show the plugin as down (it retries with backoff).
		sdk.Logger().Error("no LEDs to serve", "err", err)
		os.Exit(1)
	}
	sdk.Serve(newPlugin(leds))
}
