package mqttbridge

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/brokertest"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// TestBridgeAlarms: each alarm's state is retained on $alarm/<name> as
// JSON at connect and at each change, with a Home Assistant
// binary_sensor of class problem; an alarm removed from the hub is
// cleared from the broker with its config, and so is one the broker
// holds from before (removed while the bridge was away).
func TestBridgeAlarms(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	// What a run before left: an alarm since removed, and its config.
	b.Publish(t, "livecgi/al/$alarm/old", []byte(`{"name":"old","state":"critical"}`), "-r")
	b.Publish(t, "homeassistant/binary_sensor/al/alarm-old/config", []byte(`{"name":"Alarm old"}`), "-r")
	sub := b.Subscribe(t, []string{"livecgi/al/#", "homeassistant/#"})
	sub.WaitFor(wait, 0, "the old alarm", topicIs("livecgi/al/$alarm/old"))

	hub := fanout.New(fanout.Options{Epoch: "e1", Version: "test", MaxClients: 4})
	hub.Start()
	hub.SetPlugin("p", &wire.PluginInfo{ID: "p", State: wire.StateOnline},
		[]wire.Sensor{{ID: "p.t", Plugin: "p", Unit: "°C", ValueType: wire.ValueNumber}}, nil, nil)
	hot := wire.Alarm{Name: "hot", Sensor: "p.t", State: wire.AlarmOK, Severity: wire.AlarmCritical, Since: 1000}
	cold := wire.Alarm{Name: "cold", Sensor: "p.t", State: wire.AlarmOK, Severity: wire.AlarmWarning, Since: 1000}
	hub.SetAlarms([]wire.Alarm{hot, cold})

	m := config.Default().MQTT
	m.URL, m.DeviceID, m.HomeAssistant = b.URL, "al", true
	br, err := New(Options{MQTT: m, Hub: hub, Log: slog.New(slog.DiscardHandler), Limits: func() Limits { return Limits{MaxFrame: 64 << 10} }})
	if err != nil {
		t.Fatal(err)
	}
	runBridge(t, br, hub)

	state := func(from int, name, st string) int {
		t.Helper()
		msg, at := sub.WaitFor(wait, from, name+" "+st, func(msg brokertest.Message) bool {
			if msg.Topic != "livecgi/al/$alarm/"+name {
				return false
			}
			var a wire.Alarm
			return json.Unmarshal([]byte(msg.Payload), &a) == nil && a.State == st
		})
		var a map[string]any
		json.Unmarshal([]byte(msg.Payload), &a)
		if _, ok := a["type"]; ok || a["name"] != name || a["sensor"] != "p.t" || a["since"] == nil {
			t.Errorf("%s: %s", msg.Topic, msg.Payload)
		}
		return at
	}
	cleared := func(from int, topic string) int {
		t.Helper()
		_, at := sub.WaitFor(wait, from, topic+" cleared", func(msg brokertest.Message) bool { return msg.Topic == topic && msg.Payload == "" })
		return at
	}
	state(0, "hot", wire.AlarmOK)
	state(0, "cold", wire.AlarmOK)
	cleared(0, "livecgi/al/$alarm/old")
	cleared(0, "homeassistant/binary_sensor/al/alarm-old/config")
	cfg, _ := sub.WaitFor(wait, 0, "hot's discovery", topicIs("homeassistant/binary_sensor/al/alarm-hot/config"))
	var c map[string]any
	if err := json.Unmarshal([]byte(cfg.Payload), &c); err != nil {
		t.Fatal(err)
	}
	if c["device_class"] != "problem" || c["state_topic"] != "livecgi/al/$alarm/hot" || c["json_attributes_topic"] != "livecgi/al/$alarm/hot" ||
		c["value_template"] != "{{ 'OFF' if value_json.state == 'ok' else 'ON' }}" || c["unique_id"] != "livecgi_al_alarm-hot" ||
		c["availability_topic"] != "livecgi/al/$state" {
		t.Errorf("hot's config: %s", cfg.Payload)
	}

	from := len(sub.Messages())
	v := 72.5
	hot.State, hot.Value, hot.Since, hot.Message = wire.AlarmCritical, &v, 2000, "p.t 72.5 °C above 70"
	hub.SetAlarm(hot)
	at := state(from, "hot", wire.AlarmCritical)
	if msg := sub.Messages()[at]; !strings.Contains(msg.Payload, `"value":72.5`) || !strings.Contains(msg.Payload, `"severity":"critical"`) {
		t.Errorf("hot: %s", msg.Payload)
	}
	// Retained: a subscriber that comes later gets it.
	late := b.Subscribe(t, []string{"livecgi/al/$alarm/+"})
	if msg, _ := late.WaitFor(wait, 0, "hot, retained", topicIs("livecgi/al/$alarm/hot")); !msg.Retain || !strings.Contains(msg.Payload, `"state":"critical"`) {
		t.Errorf("late subscriber got %+v", msg)
	}

	// cold removed: its state and its config cleared.
	from = len(sub.Messages())
	hub.SetAlarms([]wire.Alarm{hot})
	cleared(from, "livecgi/al/$alarm/cold")
	cleared(from, "homeassistant/binary_sensor/al/alarm-cold/config")
}
