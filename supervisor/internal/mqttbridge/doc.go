// Package mqttbridge is livecgid's broker bridge (mqtt_url; README.md,
// "Many devices"): an MQTT 5 client of one broker that publishes the
// readings, the descriptors ($meta) and its state, announces them to Home
// Assistant if asked, and takes commands in. It is a client of the fan-out
// hub, as a long poll is, and runs commands through the function it is
// given (the supervisor's, which holds them to roles, schemas and the
// audit trail). It knows nothing of the supervisor that wires it.
//
// Start with New and Bridge.Run; Check is livecgid -check's look at the
// broker. The files:
//
//	bridge.go         the topics; Options, New, Run and its backoff; a session: readings and $meta out, commands in; Check
//	homeassistant.go  Home Assistant discovery (mqtt_homeassistant)
//
// Its tests run a real Mosquitto (supervisor/brokertest); the
// supervisor's run the bridge end to end.
package mqttbridge
