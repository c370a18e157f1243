package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	execplugin "github.com/livecgi/livecgi/plugins/exec"
	"github.com/livecgi/livecgi/plugins/leds"
	"github.com/livecgi/livecgi/plugins/sdk"
	"github.com/livecgi/livecgi/plugins/system"
)

// builtins are the plugins compiled into livecgid. Each runs as its own
// process, as any plugin: the plugins directory holds a link named after
// it to livecgid (make install lays them out), and livecgid run under
// that name serves the plugin; livecgid plugin NAME does the same.
// Third-party plugins stay binaries of their own.
var builtins = map[string]func(version string) (sdk.Plugin, error){
	"system": system.Plugin,
	"leds":   leds.Plugin,
	"exec":   execplugin.Plugin,
	// A bridge or other plugin that ships with livecgid joins here, as a
	// package with a Plugin(version) (sdk.Plugin, error) like these.
}

// init runs what a built-in plugin must do on the main thread before
// anything else: exec asks for SIGTERM as its parent-death signal.
func init() {
	if name, ok := pluginName(os.Args); ok && name == "exec" {
		execplugin.Prepare()
	}
}

// builtinNames lists builtins, sorted.
func builtinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// pluginName returns the built-in plugin args[0] (a link's name) or
// "plugin NAME" asks for, if any.
func pluginName(args []string) (string, bool) {
	if len(args) == 0 {
		return "", false
	}
	if name := filepath.Base(args[0]); builtins[name] != nil {
		return name, true
	}
	if len(args) == 3 && args[1] == "plugin" {
		return args[2], true
	}
	return "", false
}

// servePlugin serves the built-in plugin name until the supervisor stops
// it; an unknown name is an error.
func servePlugin(name string) error {
	mk := builtins[name]
	if mk == nil {
		return fmt.Errorf("no built-in plugin %q: built in are %s", name, strings.Join(builtinNames(), ", "))
	}
	os.Args[0] = name // its messages name it, not the link's target
	p, err := mk(version)
	if err != nil {
		sdk.Unavailable(err.Error())
	}
	sdk.Serve(p)
	return nil
}
