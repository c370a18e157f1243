// Command bench is a livecgi sensor plugin for benchmarks: it publishes
// its own send time, in Unix microseconds, at a fixed rate, so that a
// client can measure delivery latency finer than the reading's
// millisecond "t". cmd/livecgi-bench drives it.
//
// The rate is LIVECGI_BENCH_HZ readings per second in total (default 10).
// The supervisor refuses sensor intervals under 10 ms and the SDK does not
// clamp them, so one sensor carries at most 100 Hz: above that the plugin
// splits the rate over LIVECGI_BENCH_SENSORS sensors (default: as few as
// needed), tick_us, tick1_us, tick2_us… A supervisor started by the CGI
// stub has a clean environment, so the same keys are also read from the
// file .<name>.env next to the binary (KEY=value lines; the environment
// wins). Dotfiles in the plugins directory are not taken for plugins.
//
// The settings are parsed by pure functions in config.go.
package main

import (
	"os"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// version is set at build time with -ldflags '-X main.version=…'.
var version = "dev"

func main() {
	exe, _ := os.Executable()
	cfg, err := load(os.Getenv, exe)
	if err != nil {
		sdk.Logger().Error("bench settings", "err", err)
		os.Exit(1)
	}
	sdk.Serve(cfg.plugin())
}
