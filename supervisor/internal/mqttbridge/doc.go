// Package mqttbridge is livecgid's broker bridge (mqtt_url; README.md,
// "Many devices"): an MQTT 5 client of one broker that publishes the
// readings, the descriptors ($meta), the alarms' states ($alarm/<name>)
// and its own state, announces them to Home Assistant if asked, and
// takes commands and history requests in. It is a client of the fan-out hub, as a long poll
// is, and makes each command or history message a client frame that it takes
// through the function it is given (the supervisor's frame path, every
// transport's: rate, size, decoding, role, schema, audit).
// It knows nothing of the supervisor that wires it.
//
// Start with New and Bridge.Run; Check is livecgid -check's look at the
// broker. The files:
//
//	bridge.go         the topics; Options, New, Run and its backoff; a session: readings, $meta and $alarm out, commands and history requests in; Check
//	homeassistant.go  Home Assistant discovery (mqtt_homeassistant)
//
// Its tests run a real Mosquitto (supervisor/brokertest); the
// supervisor's run the bridge end to end.
package mqttbridge
