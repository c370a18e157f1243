// Package supervisor is livecgid: it runs the plugin binaries of a
// directory as go-plugin processes, keeps the last value of every sensor,
// and serves browsers over WebSockets (protocol in proto/wire).
//
// Start with New and Supervisor.Run: supervisor.go wires the parts. Every
// way in passes one door: admission.go lets clients in (the WebSocket
// port, the same-port hand-over, long polling), frames.go takes every
// client frame (those three and the broker bridge's); the transports
// only carry bytes. The parts that run on their own are packages under
// internal/, each built from what it needs and none reaching back into
// this one (proto/deps_test.go keeps it so):
//
//	internal/fanout      the hub: last values (with when each changed), a ring of readings, the writers to clients; the sensors' descriptors with the configuration's overrides; counts the consumers of readings (Demand) and the clients of each address (MaxPerKey)
//	internal/pluginhost  the plugin host: one slot per binary, restarts, hot swap, the plugins directory, commands on plugins; streams what is wanted of each plugin (Want), filtered by report by exception
//	internal/mqttbridge  the broker bridge (mqtt_url): readings, $meta and $alarm out, command and history messages in as frames
//	internal/ratelimit   the token bucket each transport holds a client's messages to
//	internal/wsconn      the WebSocket client the bridge dials a ws:// broker with
//
// (internal/history and internal/alarm say what they are in their own
// doc.go.) The files of this package:
//
//	supervisor.go  Options, New, Status, Run and its shutdown in order: the wiring
//	admission.go   the door of every client: Host, token, origin, nonce, role (check); max_clients and max_clients_per_addr (enter)
//	frames.go      the path of every client frame: rate, size, UTF-8, decoding, role, schema, run, audit, answer; ask, for transports that wait
//	accept.go      the listener: a goroutine per connection, small buffers, bounded unfinished handshakes; the hand-over's entry
//	ws.go          the WebSocket transport: upgrade, the reader, pings
//	poll.go        the long-poll transport through the control socket: sessions, polls, commands
//	audit.go       the audit trail: bounded records, operators' and viewers' files, refusals summarised
//	reload.go      following the configuration file, holding each client to it; the bridge's start and restarts
//	demand.go      what is wanted of each plugin's sensors: the hub's consumers (all), record.<id>, alarm.<name>, with deadband.<id> and heartbeat.<id>
//	stats.go       the supervisor's own figures (plugin livecgid), sampled as demand wants them
//	alarms.go      the alarms (alarm.<name>): the engine fed every reading, its timers; each transition to the clients, alarms.log, alarms.json and alarm_exec; reloads
//	records.go     the history: record.<id> kept (internal/history), history requests, CSV downloads, history_dir
//	idle.go        the idle exit: no consumer of readings for idle_timeout, and nothing recorded or alarmed
//	check.go       what livecgid -check asks of the internal parts (CheckPluginFile, CheckBroker)
//	daemon.go      the single-instance lock and the rotated log file
//
// brokertest runs a real Mosquitto for the bridge's tests (and for
// livecgi-bench).
//
// # Locking
//
// Every lock order of the process, "A -> B" meaning B may be taken while
// A is held and never the other way round. A lock not named on the left
// of any line is a leaf: nothing else is taken while it is held. No lock
// is held across a call into another package but for those listed.
//
// internal/fanout (the contracts on Hub and Client):
//
//	Hub.mu -> Client.mu                 broadcast, Attach, Rehello and the alarms' frames are queued under mu
//	Client.mu -> (Control sink)         a socketless client's frames are handed over under its lock: here pollQueue.mu
//	Hub.idleMu, Hub.waitMu, Cork.mu     leaves, taken with no other fanout lock held
//
// internal/pluginhost (the contracts on Host, slot and instance):
//
//	Host.mu -> Hub.mu                   load reports a refused file name
//	instance.descMu -> slot.pub         a redescription publishes only if its instance is still current
//	slot.pub -> Hub.mu                  the current instance changes together with its descriptors
//	instance.descMu -> instance.reshapeMu
//	instance.mu, debouncer.mu, startup.mu, links.mu, the stderr tail's mu: leaves
//
// This package:
//
//	reloader.mu -> Hub.mu               a reload sets the hub's limits (SetLimits, SetMaxPerKey)
//	reloader.mu -> records.mu           a reload gives the history its new sensors before the demand follows (apply)
//	alarms.mu -> Hub.mu                 the engine's transitions reach the hub (SetAlarm, SetAlarms) in the order it made them
//	alarms.mu -> Engine.mu, Runner.mu   (internal/alarm) every engine call; a transition queued for alarm_exec
//	alarms.mu -> Log.mu -> LogFile.mu   a transition's line in alarms.log
//	slot.pub -> alarms.mu               new descriptors tell the alarms their sensors' heartbeats (readings.SetPlugin)
//	mqttRun.mu -> (the bridge's run)    swapBridge waits under it for the old bridge to return, which detaches from the hub
//	polls.mu -> pollSession.mu          sweepPolls reads each session's use; endPoll and sweepPolls detach after letting go
//	polls.mu -> pollQueue.mu            sweepPolls reads an overflow
//	records.mu -> history Store.mu      apply adds and removes record.<id> sensors (Store.mu -> series.mu, one at a time)
//	Client.mu -> pollQueue.mu           (above) a poll session's control frames
//	pollSession.mu, gate.mu, nonceMu, hsMu, Supervisor.mu, usersFile.mu,
//	refusals.mu, LogFile.mu, commands.mu, keepalive's mu: leaves (the
//	audit trail writes a summary after letting refusals.mu go)
//
// internal/mqttbridge holds no lock of its own; it reaches the hub as a
// client does. internal/wsconn's write lock is a leaf. internal/history:
// a reading, Query and WriteCSV take one series.mu (a leaf) without
// Store.mu; Save and Load take Store.mu, then each series.mu in turn;
// none of them is called with a lock of this package held.
// internal/alarm's Engine.mu and Runner.mu are leaves (Engine.Carry
// takes the old engine's, then the new one's, which nobody else holds
// yet).
package supervisor
