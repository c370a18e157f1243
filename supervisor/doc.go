// Package supervisor is livecgid: it runs the plugin binaries of a
// directory as go-plugin processes, keeps the last value of every sensor,
// and serves browsers over WebSockets (protocol in proto/wire).
//
// Start with New and Supervisor.Run. The fan-out (internal/fanout) sends
// readings to clients through a small pool of writers; hub.go adapts it.
// The manager keeps one slot per plugin binary (plugins.go); a slot's loop
// starts, restarts and swaps its process and streams its readings
// (slot.go); instance.go starts and stops one process, command.go runs
// commands on it, translate.go turns its descriptors and readings into
// wire form; watch.go follows the plugins directory, reload.go the
// configuration file (and holds each command to it). demand.go counts the
// consumers of readings: plugins stream only while there is one. poll.go
// serves long polls through the control socket; mqtt.go bridges readings
// and commands to an MQTT broker (mqtt_url), and brokertest runs a real
// Mosquitto for its tests.
package supervisor
