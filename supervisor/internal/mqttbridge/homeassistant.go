package mqttbridge

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/eclipse/paho.golang/paho"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
)

// Home Assistant MQTT discovery (mqtt_homeassistant = on): one retained
// config per sensor and per command Home Assistant has an entity for,
// under haPrefix/<component>/<device>/<object>/config, so that they
// appear there by themselves, grouped under the device.
//
//	number and text sensors  sensor (numbers with a device and state class, haClasses)
//	bool sensors             binary_sensor
//	commands without args    button (pressing it sends {})
//	one number arg           number (min and max from the schema)
//	one text arg with enum   select
//	alarms (alarm.<name>)    binary_sensor of device class problem, on while
//	                         the alarm is raised or stale; its state's
//	                         members are the entity's attributes
//
// Other commands have no entity; they still run through base cmd/<id>.
// A command is not tied to a sensor that shows its effect, so number and
// select have no state topic: they are optimistic (they show the last
// value sent from Home Assistant), and their configs say so.

// haPrefix is Home Assistant's default discovery prefix.
const haPrefix = config.HomeAssistantPrefix

// publishDiscovery publishes the configs that changed since the last call
// and clears those of sensors and commands that are gone.
func (b *Bridge) publishDiscovery(ctx context.Context, cli *paho.Client, h wire.Hello) error {
	node := haObject(b.device)
	dev := map[string]any{"identifiers": []string{"livecgi_" + node}, "name": b.device, "manufacturer": "livecgi", "sw_version": h.Server}
	want := map[string][]byte{}
	add := func(component, id string, cfg map[string]any) {
		obj := haObject(id)
		cfg["unique_id"] = "livecgi_" + node + "_" + obj
		cfg["availability_topic"] = b.base + "$state"
		cfg["device"] = dev
		js, _ := json.Marshal(cfg)
		want[haPrefix+"/"+component+"/"+node+"/"+obj+"/config"] = js
	}
	for _, s := range h.Sensors {
		cfg := map[string]any{"name": haName(s.Title, s.ID), "state_topic": b.base + s.ID}
		switch s.ValueType {
		case "bool":
			cfg["payload_on"], cfg["payload_off"] = "true", "false"
			add("binary_sensor", s.ID, cfg)
			continue
		case "number":
			device, state := haClasses(s)
			if device != "" {
				cfg["device_class"] = device
			}
			if state != "" {
				cfg["state_class"] = state
			}
			if s.Unit != "" {
				cfg["unit_of_measurement"] = s.Unit
			}
		}
		add("sensor", s.ID, cfg)
	}
	for _, c := range h.Commands {
		cfg := map[string]any{"name": haName(c.Title, c.ID), "command_topic": b.base + "cmd/" + c.ID}
		switch {
		case len(c.Args) == 0:
			cfg["payload_press"] = "{}"
			add("button", c.ID, cfg)
		case len(c.Args) == 1 && c.Args[0].Type == "number":
			a := c.Args[0]
			key, _ := json.Marshal(a.Name)
			cfg["command_template"] = "{" + string(key) + ": {{ value }}}"
			cfg["mode"] = "box"
			cfg["optimistic"] = true
			if a.Min != nil {
				cfg["min"] = *a.Min
			}
			if a.Max != nil {
				cfg["max"] = *a.Max
			}
			add("number", c.ID, cfg)
		case len(c.Args) == 1 && c.Args[0].Type == "text" && len(c.Args[0].Enum) > 0:
			key, _ := json.Marshal(c.Args[0].Name)
			cfg["command_template"] = "{" + string(key) + ": {{ value | tojson }}}"
			cfg["options"] = c.Args[0].Enum
			cfg["optimistic"] = true
			add("select", c.ID, cfg)
		}
	}
	for _, a := range b.o.Hub.Alarms() {
		topic := b.base + "$alarm/" + a.Name
		add("binary_sensor", haAlarmObject(a.Name), map[string]any{
			"name": "Alarm " + a.Name, "device_class": "problem",
			"state_topic": topic, "value_template": "{{ 'OFF' if value_json.state == 'ok' else 'ON' }}",
			"json_attributes_topic": topic,
		})
	}
	if b.discovery == nil {
		b.discovery = map[string]string{}
	}
	for topic, js := range want {
		if b.discovery[topic] == string(js) {
			continue
		}
		if err := b.retained(ctx, cli, topic, js); err != nil {
			return err
		}
		b.discovery[topic] = string(js)
	}
	for topic := range b.discovery {
		if want[topic] == nil {
			if err := b.retained(ctx, cli, topic, nil); err != nil {
				return err
			}
			delete(b.discovery, topic)
		}
	}
	return nil
}

// haDeviceClass is the Home Assistant device class of each unit of the
// vocabulary (proto/README.md, "Units") that has one: with it Home
// Assistant converts and displays the value (B as MB or GiB, s as h:mm,
// °C as °F where the user wants). µs is not here: Home Assistant spells
// it with a Greek mu. %, 1/s and a count have no device class.
var haDeviceClass = map[string]string{
	"B": "data_size", "B/s": "data_rate",
	"s": "duration", "ms": "duration",
	"°C": "temperature", "V": "voltage", "A": "current", "W": "power", "Hz": "frequency",
}

// haClasses returns a number sensor's device class (by its unit) and
// state class (by its id), "" for none:
//
//   - a counter (id ending in _total, which only grows and starts again
//     from 0 when its process restarts) is total_increasing: Home
//     Assistant takes a drop for a reset and sums the increases;
//   - an uptime (id with "uptime") has no state class: as a measurement
//     its mean, min and max over an hour say nothing, and as
//     total_increasing Home Assistant would add up the time between
//     readings, which is no quantity at all; without one it keeps its
//     history but no long-term statistics. (A timestamp of the boot
//     would be another model, but its value would wander by the clock
//     jitter between readings.) Its unit, s, still makes it a duration;
//   - anything else is a measurement.
//
// A device class that Home Assistant does not allow with total_increasing
// (temperature, data_rate…) is left out for a counter.
func haClasses(s wire.Sensor) (device, state string) {
	device = haDeviceClass[s.Unit]
	local := strings.TrimPrefix(s.ID, s.Plugin+".")
	switch {
	case strings.HasSuffix(local, "_total"):
		if device != "data_size" && device != "duration" {
			device = ""
		}
		return device, "total_increasing"
	case strings.Contains(local, "uptime"):
		return device, ""
	}
	return device, "measurement"
}

// haAlarmObject is the object id of alarm name: "alarm-<name>", which
// no sensor's or command's can be (they have no hyphen).
func haAlarmObject(name string) string { return "alarm-" + name }

// haAlarmTopic is the discovery config topic of alarm name of device.
func haAlarmTopic(device, name string) string {
	return haPrefix + "/binary_sensor/" + haObject(device) + "/" + haObject(haAlarmObject(name)) + "/config"
}

// haObject turns an id into a Home Assistant object or node id
// ([a-zA-Z0-9_-]).
func haObject(id string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, id)
}

// haName is an entity's name: its title, else its id.
func haName(title, id string) string {
	if title != "" {
		return title
	}
	return id
}
