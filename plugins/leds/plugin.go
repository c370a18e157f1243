// Package leds is the livecgi plugin for the Linux LED class
// (/sys/class/leds, or under the root livecgid sets in LIVECGI_SYS_ROOT):
// a brightness and a trigger sensor per LED, and the commands
// set_brightness and set_trigger. It is the reference command plugin. It
// is built into livecgid and runs as its own process: a link named leds to
// livecgid in the plugins directory, or livecgid plugin leds.
//
// Everything but Plugin is in leds.go. See README.md for the ids.
package leds

import (
	"errors"
	"io/fs"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// Plugin returns the plugin over the LEDs livecgid's sys root has, with
// version. Its error says why there is nothing to serve (no LEDs): the
// caller passes it to sdk.Unavailable.
func Plugin(version string) (sdk.Plugin, error) {
	dir := sdk.SysPath("class/leds")
	leds, err := findLEDs(dir)
	if errors.Is(err, fs.ErrNotExist) {
		err = errors.New("no LEDs: " + dir + " does not exist")
	}
	if err != nil {
		// Most servers and containers have no LED: livecgid shows the
		// plugin as unavailable, with the reason, and does not restart it.
		return sdk.Plugin{}, err
	}
	p := newPlugin(leds)
	p.Version = version
	return p, nil
}
