package supervisor

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/eclipse/paho.golang/paho"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
)

// Home Assistant MQTT discovery (mqtt_homeassistant = on): one retained
// config per sensor and per command Home Assistant has an entity for,
// under haPrefix/<component>/<device>/<object>/config, so that they
// appear there by themselves, grouped under the device.
//
//	number and text sensors  sensor (numbers with state_class measurement)
//	bool sensors             binary_sensor
//	commands without args    button (pressing it sends {})
//	one number arg           number (min and max from the schema)
//	one text arg with enum   select
//
// Other commands have no entity; they still run through base cmd/<id>.

// haPrefix is Home Assistant's default discovery prefix.
const haPrefix = control.HomeAssistantPrefix

// publishDiscovery publishes the configs that changed since the last call
// and clears those of sensors and commands that are gone.
func (b *bridge) publishDiscovery(ctx context.Context, cli *paho.Client, h wire.Hello) error {
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
			cfg["state_class"] = "measurement"
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
			add("select", c.ID, cfg)
		}
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
