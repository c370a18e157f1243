// Package supervisor is livecgid: it runs the plugin binaries of a
// directory as go-plugin processes, keeps the last value of every sensor,
// and serves browsers over WebSockets (protocol in proto/wire).
//
// Start with New and Supervisor.Run: supervisor.go wires the parts and
// reads each WebSocket client's frames. The parts that run on their own
// are packages under internal/, each built from what it needs and none
// reaching back into this one (proto/deps_test.go keeps it so):
//
//	internal/fanout      the hub: last values, a ring of readings, the writers to clients; counts the consumers of readings (Demand)
//	internal/pluginhost  the plugin host: one slot per binary, restarts, hot swap, the plugins directory, commands on plugins
//	internal/mqttbridge  the broker bridge (mqtt_url): readings and $meta out, commands in
//	internal/ratelimit   the token bucket each transport holds a client's messages to
//	internal/wsconn      the WebSocket client the bridge dials a ws:// broker with
//
// (internal/history and internal/alarm say what they are in their own
// doc.go.) The files of this package:
//
//	supervisor.go  Options, New, Run and its shutdown in order; the WebSocket upgrade, reader and commands
//	accept.go      the listener: a goroutine per connection, small buffers, bounded unfinished handshakes
//	poll.go        long polls through the control socket; runCommand, for clients without a socket (polls, the bridge)
//	reload.go      following the configuration file, holding each command to it; the bridge's start and restarts
//	audit.go       the audit trail and the role check of every command
//	stats.go       the supervisor's own figures (plugin livecgid) and the idle timeout
//	check.go       what livecgid -check asks of the internal parts (CheckPluginFile, CheckBroker)
//	daemon.go      the single-instance lock and the rotated log file
//
// brokertest runs a real Mosquitto for the bridge's tests (and for
// livecgi-bench).
package supervisor
