// Command system is the livecgi plugin for the machine's own health: load
// averages, CPU and memory use, uptime, per-interface network throughput
// and thermal zones, read from /proc and /sys (or the roots livecgid sets in
// LIVECGI_PROC_ROOT and LIVECGI_SYS_ROOT).
//
// The parsers are in proc.go (pure functions of a root directory, tested on
// testdata/); the sensors built on them are in sensors.go. See README.md
// for the sensor ids.
package main

import "github.com/livecgi/livecgi/plugins/sdk"

// version is set at build time with -ldflags '-X main.version=…'.
var version = "dev"

func main() {
	sdk.Serve(newPlugin(sdk.ProcPath(), sdk.SysPath(), sdk.Logger()))
}
