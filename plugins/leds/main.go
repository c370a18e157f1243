// Command leds is the livecgi plugin for the Linux LED class
// (/sys/class/leds, or under the root livecgid sets in LIVECGI_SYS_ROOT):
// a brightness and a trigger sensor per LED, and the commands
// set_brightness and set_trigger. It is the reference command plugin.
//
// Everything but main is in leds.go. See README.md for the ids.
package main

import (
	"errors"
	"io/fs"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// version is set at build time with -ldflags '-X main.version=…'.
var version = "dev"

func main() {
	dir := sdk.SysPath("class/leds")
	leds, err := findLEDs(dir)
	if errors.Is(err, fs.ErrNotExist) {
		err = errors.New("no LEDs: " + dir + " does not exist")
	}
	if err != nil {
		// Most servers and containers have no LED: livecgid shows the
		// plugin as unavailable, with the reason, and does not restart it.
		sdk.Unavailable(err.Error())
	}
	sdk.Serve(newPlugin(leds))
}
