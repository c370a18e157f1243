// Package pluginhost is livecgid's plugin host: it runs the plugin
// binaries of one directory as go-plugin processes, restarts one that
// crashes or hangs with backoff, swaps in a new binary without dropping
// anyone, follows the directory with fsnotify, and runs commands on the
// plugins. It publishes their readings, descriptors and states through
// Publisher (the fan-out hub is one), and learns from Demand what is
// wanted of each plugin: all its sensors (someone consumes readings) or
// some at their interval (records, alarms); plugins stream only that,
// and only while something is wanted. It knows nothing of the
// supervisor that wires it.
//
// Start with New, then Host.Start (the plugins' lifetime) and Host.Watch
// (the directory); Host.Do runs a command, after ValidateArgs. The files:
//
//	plugins.go    Host, Options, Timing, Publisher; one slot per binary name (load, unload, Reconfigure)
//	want.go       Demand and Want; a Stream's plan (its request, the watchdog's limit) and livecgid's filter of what it brings
//	slot.go       a slot's loop: start, restart, swap, the watchdog; streaming what is wanted; a dynamic plugin's redescriptions
//	instance.go   one plugin process: its start (trust, handshake, Describe, checks) and stop
//	command.go    Do: a command on the slot's current process, which a swap drains first
//	translate.go  descriptors and readings into wire form, readings checked against their sensors' types
//	validate.go   ValidateArgs: a command's arguments against its schema
//	watch.go      Watch: the plugins directory (debounced, symlink targets, a directory that comes later); Described
//	check.go      CheckPluginFile: why livecgid would not run a file (livecgid -check)
//	stderr.go     a plugin's last word on stderr, for the reason shown when it fails
//	hclog.go      go-plugin's logger over slog
//
// The concurrency rules are written on Host and slot; their lock orders
// are listed with every other of livecgid in the supervisor's doc.go,
// "Locking". Its tests run the test binary as a plugin; the
// supervisor's run the host end to end.
package pluginhost
