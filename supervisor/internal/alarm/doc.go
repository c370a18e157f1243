// Package alarm evaluates livecgid's alarms: threshold rules on sensor
// readings, with a time the condition must hold, a clear value for
// hysteresis, a severity, staleness when a sensor goes silent, bounded
// flapping, state that survives a restart, and a program run on every
// transition (alarm_exec) with a log of them. It knows nothing of
// plugins, clients or MQTT: livecgid feeds it readings and sends on the
// transitions it returns.
//
// Start with Parse (one `alarm.<name> = ...` key of livecgi.conf) and
// Engine: New with the rules, SetSensor when a sensor is described,
// Observe on every reading, Tick whenever Next says, States for what a
// new or resuming client gets first, SaveFile/LoadFile in the state
// directory across restarts, Carry across a reload of the rules. Runner
// runs alarm_exec (Close it for another program); Log writes the
// transition log.
//
// Files:
//
//	rule.go     Rule, Parse, the state names
//	engine.go   Engine: for windows, hysteresis, staleness, flapping
//	persist.go  Save/Load of the states (StateFile)
//	runner.go   Runner: alarm_exec, one run at a time, bounded queue
//	log.go      Log: the transition log (LogFile), JSON lines
//
// An alarm's state is OK, its rule's severity (Warning or Critical) once
// raised, or Stale while its sensor is silent. A rule
//
//	alarm.hot = system.board_temp above 70 for 1m clear 65 critical
//
// raises hot as critical once board_temp has stayed above 70 for a
// minute (readings at or below 70 in between start the minute again),
// and clears it once a reading is at or below 65.
package alarm
