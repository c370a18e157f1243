// Package pluginhost is livecgid's plugin host: it runs the plugin
// binaries of one directory as go-plugin processes, restarts one that
// crashes or hangs with backoff, swaps in a new binary without dropping
// anyone, follows the directory with fsnotify, and runs commands on the
// plugins. It publishes their readings, descriptors and states through
// Publisher (the fan-out hub is one), and learns from Demand whether
// anyone consumes readings: plugins stream only then. It knows nothing of
// the supervisor that wires it.
//
// Start with New, then Host.Start (the plugins' lifetime) and Host.Watch
// (the directory); Host.Do runs a command, after ValidateArgs. The files:
//
//	plugins.go    Host, Options, Timing, Publisher, Demand; one slot per binary name (load, unload, Reconfigure)
//	slot.go       a slot's loop: start, restart, swap; streaming while there is demand; a dynamic plugin's redescriptions
//	instance.go   one plugin process: its start (trust, handshake, Describe, checks) and stop
//	command.go    Do: a command on the slot's current process, which a swap drains first
//	translate.go  descriptors and readings into wire form, readings checked against their sensors' types
//	validate.go   ValidateArgs: a command's arguments against its schema
//	watch.go      Watch: the plugins directory (debounced, symlink targets, a directory that comes later); Described
//	check.go      CheckPluginFile: why livecgid would not run a file (livecgid -check)
//	stderr.go     a plugin's last word on stderr, for the reason shown when it fails
//	hclog.go      go-plugin's logger over slog
//
// The concurrency rules are written on Host and slot. Its tests run the
// test binary as a plugin; the supervisor's run the host end to end.
package pluginhost
