// Package system is the livecgi plugin for the machine's own health: load
// averages, CPU and memory use, uptime, per-interface network throughput
// and thermal zones, read from /proc and /sys (or the roots livecgid sets in
// LIVECGI_PROC_ROOT and LIVECGI_SYS_ROOT). It is built into livecgid and
// runs as its own process: a link named system to livecgid in the plugins
// directory, or livecgid plugin system.
//
// The parsers are in proc.go (pure functions of a root directory, tested on
// testdata/); the sensors built on them are in sensors.go. See README.md
// for the sensor ids.
package system

import (
	"os"

	"github.com/livecgi/livecgi/plugins/sdk"
	"github.com/livecgi/livecgi/proto"
)

// Plugin returns the plugin over the roots and interfaces livecgid
// configured (net_interfaces), with version. Its error is always nil (see
// leds.Plugin for one that is not).
func Plugin(version string) (sdk.Plugin, error) {
	p := newPlugin(sdk.ProcPath(), sdk.SysPath(), os.Getenv(proto.EnvNetInterfaces), sdk.Logger())
	p.Version = version
	return p, nil
}
