package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/brokertest"
)

// The broker bridge against a real Mosquitto (supervisor/brokertest).

// mqttWait is how long a test waits for one message: generous, for a
// loaded machine; a passing run takes milliseconds.
const mqttWait = 30 * time.Second

// topicIs matches a message on topic.
func topicIs(topic string) func(brokertest.Message) bool {
	return func(m brokertest.Message) bool { return m.Topic == topic }
}

// withBridge points the supervisor's bridge at b as device dev.
func withBridge(b *brokertest.Broker, dev string, edit func(m *config.MQTT)) func(*config.Config) {
	return func(c *config.Config) {
		c.MQTT.URL, c.MQTT.DeviceID = b.URL, dev
		if edit != nil {
			edit(&c.MQTT)
		}
	}
}

// resultOf decodes a result or error frame.
func resultOf(t *testing.T, m brokertest.Message) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
		t.Fatalf("%s: %q is not JSON: %v", m.Topic, m.Payload, err)
	}
	return v
}

// TestMQTTDevice runs the real livecgid with the leds plugin on a fixture
// against a real broker: readings, $meta and $state reach a subscriber;
// commands published with mosquitto_pub reach leds and their results come
// back (to the response topic with the correlation data, or to result/);
// bad commands get error results; the audit trail has them; and after
// SIGKILL of livecgid the broker publishes the last will.
func TestMQTTDevice(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	root := t.TempDir()
	bin, plugins, state := filepath.Join(root, "bin"), filepath.Join(root, "plugins"), filepath.Join(root, "state")
	buildDaemon(t, bin)
	if err := os.Mkdir(plugins, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(bin, "livecgid"), filepath.Join(plugins, "leds")); err != nil {
		t.Fatal(err)
	}
	sysRoot := sdktest.CopyFixture(t, "../plugins/leds/testdata/sys")
	conf := filepath.Join(root, "livecgi.conf")
	err := os.WriteFile(conf, fmt.Appendf(nil, "listen = 127.0.0.1:0\nstate_dir = %s\nplugins_dir = %s\nsys_root = %s\n"+
		"mqtt_url = %s\ndevice_id = board1\nmqtt_role = operator\nmqtt_reply_prefix = reply\n", state, plugins, sysRoot, b.URL), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	sub := b.Subscribe(t, []string{"livecgi/board1/#", "reply/#"})
	d := startDaemon(t, filepath.Join(bin, "livecgid"), conf)

	_, at := sub.WaitFor(mqttWait, 0, "$state online", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/board1/$state" && m.Payload == "online"
	})
	sub.WaitFor(mqttWait, 0, "$meta with the leds commands", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/board1/$meta" && strings.Contains(m.Payload, `"id":"leds.set_brightness"`)
	})
	sub.WaitFor(mqttWait, at, "led0's brightness", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/board1/leds.led0_brightness" && m.Payload == "255"
	})

	// A command with MQTT 5 correlation data and response topic.
	b.Publish(t, "livecgi/board1/cmd/leds.set_brightness", []byte(`{"led": "led0", "value": 7}`),
		"-D", "publish", "correlation-data", "c-1", "-D", "publish", "response-topic", "reply/c")
	m, _ := sub.WaitFor(mqttWait, 0, "the result on the response topic", topicIs("reply/c"))
	if r := resultOf(t, m); r["type"] != "result" || r["ok"] != true || r["id"] != "c-1" || m.Correlation != "c-1" {
		t.Errorf("result %s (correlation %q), want ok for id c-1 with correlation c-1", m.Payload, m.Correlation)
	}
	if b, _ := os.ReadFile(filepath.Join(sysRoot, "class/leds/led0/brightness")); strings.TrimSpace(string(b)) != "7" {
		t.Errorf("led0 brightness file holds %q after the command, want 7", b)
	}
	sub.WaitFor(mqttWait, at, "led0's new brightness", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/board1/leds.led0_brightness" && m.Payload == "7"
	})

	// Without properties the result goes to result/<command id>; every
	// bad command gets an error result there, and the device carries on.
	for _, tc := range []struct {
		name, command, payload, code, message string
	}{
		{"plain", "leds.set_brightness", `{"led": "led0", "value": 9}`, "", ""},
		{"unknown command", "leds.nope", `{}`, "unknown_command", `unknown command "leds.nope"`},
		{"wrong type", "leds.set_brightness", `{"led": "led0", "value": "high"}`, "bad_args", "value"},
		{"out of range", "leds.set_brightness", `{"led": "led0", "value": 1000}`, "bad_args", "value"},
		{"unknown LED", "leds.set_brightness", `{"led": "led9", "value": 1}`, "bad_args", "led"},
		{"not JSON", "leds.set_brightness", `{"led": `, "bad_json", "not JSON"},
		{"not an object", "leds.set_brightness", `[1, 2]`, "bad_message", ""},
		{"oversized", "leds.set_brightness", `{"led": "` + strings.Repeat("x", 70<<10) + `"}`, "bad_message", "max_frame = 65536"},
		{"not UTF-8", "leds.set_brightness", "{\"led\": \"\xff\"}", "bad_message", "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "livecgi/board1/result/" + tc.command
			from := len(sub.Messages())
			b.Publish(t, "livecgi/board1/cmd/"+tc.command, []byte(tc.payload))
			m, _ := sub.WaitFor(mqttWait, from, "the result of "+tc.name, topicIs(topic))
			r := resultOf(t, m)
			if tc.code == "" {
				if r["type"] != "result" || r["ok"] != true {
					t.Errorf("got %s, want an ok result", m.Payload)
				}
				return
			}
			if r["type"] != "error" || r["code"] != tc.code || !strings.Contains(fmt.Sprint(r["message"]), tc.message) {
				t.Errorf("got %s, want error %s mentioning %q", m.Payload, tc.code, tc.message)
			}
		})
	}
	audit, _ := os.ReadFile(filepath.Join(state, AuditFile))
	if !strings.Contains(string(audit), `"user":"mqtt","role":"operator"`) || !strings.Contains(string(audit), `"command":"leds.set_brightness","id":"c-1"`) {
		t.Errorf("audit trail lacks the broker's commands:\n%s", audit)
	}

	// SIGKILL: no goodbye from livecgid; the broker sends the last will.
	from := len(sub.Messages())
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	sub.WaitFor(mqttWait, from, "the last will", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/board1/$state" && m.Payload == "offline"
	})
}

// TestMQTTTransports connects over TLS with a client certificate and a
// password, over WebSockets, and with a wrong password: the first two
// deliver readings; the last says why in the log and retries, while
// browsers are served all along.
func TestMQTTTransports(t *testing.T) {
	pwFile := func(t *testing.T, pw string) string {
		p := filepath.Join(t.TempDir(), "mqtt.pw")
		if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("TLS, client certificate, password", func(t *testing.T) {
		b := brokertest.Start(t, brokertest.Options{TLS: true, ClientCert: true, Users: map[string]string{"dev": "s3cret"}})
		pw := pwFile(t, "s3cret")
		startSup(t, withBridge(b, "tls1", func(m *config.MQTT) {
			m.CA, m.Cert, m.Key, m.Username, m.PasswordFile = b.CA, b.Cert, b.Key, "dev", pw
		}), "counter")
		sub := b.Subscribe(t, []string{"livecgi/tls1/#"}, "-u", "dev", "-P", "s3cret")
		sub.WaitFor(mqttWait, 0, "a reading over TLS", topicIs("livecgi/tls1/helper_counter.count"))
	})
	t.Run("WebSockets", func(t *testing.T) {
		b := brokertest.Start(t, brokertest.Options{WebSockets: true})
		startSup(t, withBridge(b, "ws1", nil), "counter")
		sub := b.Subscribe(t, []string{"livecgi/ws1/#"})
		sub.WaitFor(mqttWait, 0, "a reading over WebSockets", topicIs("livecgi/ws1/helper_counter.count"))
	})
	t.Run("QoS 1, not retained", func(t *testing.T) {
		b := brokertest.Start(t, brokertest.Options{})
		startSup(t, withBridge(b, "q1", func(m *config.MQTT) { m.QoS, m.Retain = 1, false }), "counter")
		early := b.Subscribe(t, []string{"livecgi/q1/helper_counter.count"}, "-q", "1")
		if m, _ := early.WaitFor(mqttWait, 0, "a reading at QoS 1", topicIs("livecgi/q1/helper_counter.count")); m.QoS != 1 {
			t.Errorf("reading delivered at QoS %d, want 1", m.QoS)
		}
		// A late subscriber's first reading is a live one: none is retained.
		late := b.Subscribe(t, []string{"livecgi/q1/#"})
		if m, _ := late.WaitFor(mqttWait, 0, "a reading", topicIs("livecgi/q1/helper_counter.count")); m.Retain {
			t.Errorf("a retained reading with mqtt_retain off: %+v", m)
		}
	})
	t.Run("password file missing at start", func(t *testing.T) {
		setTiming(t, func(tm *timing) { tm.mqttBackoffMin, tm.mqttBackoffMax = 100*time.Millisecond, 100*time.Millisecond })
		b := brokertest.Start(t, brokertest.Options{Users: map[string]string{"dev": "s3cret"}})
		pw := filepath.Join(t.TempDir(), "mqtt.pw")
		ts := startSup(t, withBridge(b, "late1", func(m *config.MQTT) { m.Username, m.PasswordFile = "dev", pw }), "counter")
		waitFor(t, "the missing file in the log", func() bool { return strings.Contains(ts.logs.String(), "mqtt_password_file: ") })
		ts.dial(t).next("a reading for a browser meanwhile", is("reading", "sensor", "helper_counter.count"))
		sub := b.Subscribe(t, []string{"livecgi/late1/#"}, "-u", "dev", "-P", "s3cret")
		if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		sub.WaitFor(mqttWait, 0, "a reading once the file is there", topicIs("livecgi/late1/helper_counter.count"))
	})
	t.Run("wrong password", func(t *testing.T) {
		b := brokertest.Start(t, brokertest.Options{Users: map[string]string{"dev": "s3cret"}})
		pw := pwFile(t, "guess")
		ts := startSup(t, withBridge(b, "pw1", func(m *config.MQTT) { m.Username, m.PasswordFile = "dev", pw }), "counter")
		waitFor(t, "the refusal in the log", func() bool {
			return strings.Contains(ts.logs.String(), "mqtt: not connected; retrying") &&
				strings.Contains(ts.logs.String(), "connect:")
		})
		c := ts.dial(t)
		c.next("a reading for a browser", is("reading", "sensor", "helper_counter.count"))
	})
}

// TestMQTTBrokerRestart kills the broker (no persistence: it forgets
// every retained message) and starts it again, five times: the bridge
// reconnects each time and publishes the current values again (retained),
// $state and $meta; a browser gets readings all along; and the
// supervisor's goroutines come back to what they were.
func TestMQTTBrokerRestart(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.mqttBackoffMin, tm.mqttBackoffMax = 100*time.Millisecond, time.Second })
	b := brokertest.Start(t, brokertest.Options{})
	ts := startSup(t, withBridge(b, "r1", nil), "counter")
	browser := ts.dial(t)
	count := "livecgi/r1/helper_counter.count"
	value := func(m brokertest.Message) float64 {
		v, err := strconv.ParseFloat(m.Payload, 64)
		if err != nil {
			t.Fatalf("%s: payload %q is not a number", m.Topic, m.Payload)
		}
		return v
	}
	sub := b.Subscribe(t, []string{count})
	m, _ := sub.WaitFor(mqttWait, 0, "a reading", topicIs(count))
	last := value(m)
	waitFor(t, "the bridge to be connected", func() bool { return strings.Count(ts.logs.String(), "mqtt: connected") == 1 })
	baseline := runtime.NumGoroutine()
	for round := 2; round <= 6; round++ {
		b.Kill()
		waitFor(t, "the bridge to notice", func() bool {
			return strings.Count(ts.logs.String(), "mqtt: not connected; retrying") == round-1
		})
		browser.next("a reading while the broker is down", is("reading", "sensor", "helper_counter.count"))
		if err := b.Restart(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the bridge to connect again", func() bool { return strings.Count(ts.logs.String(), "mqtt: connected") == round })
		// A subscriber that comes now gets the broker's retained
		// messages first: what the bridge published since it came back.
		// One that came before the bridge's first reading gets that live;
		// then a second one comes.
		fresh := b.Subscribe(t, []string{"livecgi/r1/#"})
		m, _ := fresh.WaitFor(mqttWait, 0, "the value after the restart", topicIs(count))
		if !m.Retain {
			fresh.Stop()
			fresh = b.Subscribe(t, []string{"livecgi/r1/#"})
			m, _ = fresh.WaitFor(mqttWait, 0, "the retained value after the restart", topicIs(count))
		}
		if v := value(m); !m.Retain || v < last {
			t.Fatalf("round %d: first value after the restart %v (retained %v), want a retained one no older than %v", round, v, m.Retain, last)
		}
		for _, topic := range []string{"livecgi/r1/$state", "livecgi/r1/$meta"} {
			if m, _ := fresh.WaitFor(mqttWait, 0, topic, topicIs(topic)); !m.Retain || topic == "livecgi/r1/$state" && m.Payload != "online" {
				t.Errorf("round %d: %s = %q (retained %v), want it retained (online)", round, topic, m.Payload, m.Retain)
			}
		}
		m, _ = fresh.WaitFor(mqttWait, 0, "a new reading", func(m brokertest.Message) bool { return m.Topic == count && !m.Retain })
		last = value(m)
		fresh.Stop()
		waitFor(t, "the goroutines to settle", func() bool { return runtime.NumGoroutine() <= baseline+2 })
	}
}

// TestHomeAssistantDiscovery publishes a config per sensor and per
// command Home Assistant has an entity for, pressing a button runs its
// command, and a plugin that goes away takes its configs and retained
// values with it.
func TestHomeAssistantDiscovery(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	ts := startSup(t, withBridge(b, "ha1", func(m *config.MQTT) { m.HomeAssistant, m.Role = true, auth.RoleOperator }), "counter")
	sub := b.Subscribe(t, []string{"homeassistant/#", "livecgi/ha1/#"})
	cfg := func(topic string) map[string]any {
		m, _ := sub.WaitFor(mqttWait, 0, topic, topicIs(topic))
		var v map[string]any
		if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		return v
	}
	count := cfg("homeassistant/sensor/ha1/helper_counter_count/config")
	want := map[string]any{
		"name": "Counter", "state_topic": "livecgi/ha1/helper_counter.count", "unit_of_measurement": "n",
		"availability_topic": "livecgi/ha1/$state", "unique_id": "livecgi_ha1_helper_counter_count", "state_class": "measurement",
	}
	for k, v := range want {
		if count[k] != v {
			t.Errorf("count config %s = %v, want %v", k, count[k], v)
		}
	}
	if dev, _ := count["device"].(map[string]any); fmt.Sprint(dev["identifiers"]) != "[livecgi_ha1]" || dev["name"] != "ha1" {
		t.Errorf("count config device = %v", count["device"])
	}
	// Device and state classes: Home Assistant converts B, keeps counters
	// as totals, and runs a number without a state optimistic.
	for topic, want := range map[string]map[string]any{
		"homeassistant/sensor/ha1/livecgid_rss_bytes/config": {
			"unit_of_measurement": "B", "device_class": "data_size", "state_class": "measurement"},
		"homeassistant/sensor/ha1/livecgid_plugin_restarts_total/config": {
			"unit_of_measurement": nil, "device_class": nil, "state_class": "total_increasing"},
		"homeassistant/sensor/ha1/livecgid_clients/config": {"device_class": nil, "state_class": "measurement"},
		"homeassistant/number/ha1/helper_counter_sleep/config": {
			"command_template": `{"ms": {{ value }}}`, "optimistic": true, "state_topic": nil},
	} {
		c := cfg(topic)
		for k, v := range want {
			if c[k] != v {
				t.Errorf("%s: %s = %v, want %v", topic, k, c[k], v)
			}
		}
	}
	fail := cfg("homeassistant/button/ha1/helper_counter_fail/config")
	// What Home Assistant sends when the button is pressed.
	b.Publish(t, fail["command_topic"].(string), []byte(fail["payload_press"].(string)))
	m, _ := sub.WaitFor(mqttWait, 0, "the button's result", topicIs("livecgi/ha1/result/helper_counter.fail"))
	if r := resultOf(t, m); r["ok"] != false || r["error"] != "it failed, as asked" {
		t.Errorf("button result %s", m.Payload)
	}
	for _, m := range sub.Messages() {
		if strings.Contains(m.Topic, "helper_counter_add") {
			t.Errorf("%s: add has four arguments, no entity fits it", m.Topic)
		}
	}

	from := len(sub.Messages())
	if err := os.Remove(filepath.Join(ts.dir, helperPrefix+"counter")); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"homeassistant/sensor/ha1/helper_counter_count/config", "homeassistant/button/ha1/helper_counter_fail/config", "livecgi/ha1/helper_counter.count"} {
		sub.WaitFor(mqttWait, from, topic+" cleared", func(m brokertest.Message) bool { return m.Topic == topic && m.Payload == "" })
	}
}

// TestMQTTMetaAfterDescribe: the first retained $meta, and Home
// Assistant's configs, come once the plugins livecgid started with have
// described themselves (one with nothing to serve has its state), not with
// livecgid's sensors alone; a new binary's descriptors are published
// again.
func TestMQTTMetaAfterDescribe(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	sub := b.Subscribe(t, []string{"livecgi/d1/#", "homeassistant/#"})
	// Subscribed before livecgid starts: it sees every $meta, not the
	// last retained one. (A retained mark reaches it once it has
	// subscribed, whichever of the two came first.)
	b.Publish(t, "livecgi/d1/mark", []byte("x"), "-r")
	sub.WaitFor(mqttWait, 0, "the subscription", topicIs("livecgi/d1/mark"))
	ts := startSup(t, withBridge(b, "d1", func(m *config.MQTT) { m.HomeAssistant = true }), "counter", "nothing")
	m, at := sub.WaitFor(mqttWait, 0, "the first $meta", topicIs("livecgi/d1/$meta"))
	var first struct { // $meta
		Sensors  []wire.Sensor     `json:"sensors"`
		Commands []wire.Command    `json:"commands"`
		Plugins  []wire.PluginInfo `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(m.Payload), &first); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(first.Commands, func(c wire.Command) bool { return c.ID == "helper_counter.add" }) ||
		!slices.ContainsFunc(first.Sensors, func(s wire.Sensor) bool { return s.ID == "helper_counter.count" }) ||
		!slices.ContainsFunc(first.Plugins, func(p wire.PluginInfo) bool { return p.ID == "helper_nothing" && p.State == wire.StateUnavailable }) {
		t.Errorf("first $meta %s, want the counter's sensors and commands, and the unavailable plugin's state", m.Payload)
	}
	for _, m := range sub.Messages()[:at] {
		if strings.HasPrefix(m.Topic, "homeassistant/") {
			t.Errorf("discovery config %s before the first $meta", m.Topic)
		}
	}
	sub.WaitFor(mqttWait, at, "the counter's discovery", topicIs("homeassistant/sensor/d1/helper_counter_count/config"))

	from := len(sub.Messages())
	deployMv(t, ts.dir, helperPrefix+"counter", 0o755, "counter", "2 extra=more")
	sub.WaitFor(mqttWait, from, "$meta with the new binary's sensor", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/d1/$meta" && strings.Contains(m.Payload, `"id":"helper_counter.more"`)
	})
	sub.WaitFor(mqttWait, from, "the new sensor's discovery", topicIs("homeassistant/sensor/d1/helper_counter_more/config"))
}

// TestMQTTSensorErrors: a failed read sets the sensor's retained $error
// and leaves its retained value alone; the next good reading clears it
// (an empty retained message). A sensor that only fails keeps its
// $error, and a late subscriber gets it.
func TestMQTTSensorErrors(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	startSup(t, withBridge(b, "e1", nil), "flaky", "wrongtype")
	sub := b.Subscribe(t, []string{"livecgi/e1/#"})
	const errTopic = "livecgi/e1/helper_flaky.count/$error"
	_, at := sub.WaitFor(mqttWait, 0, "the failed read", func(m brokertest.Message) bool {
		return m.Topic == errTopic && m.Payload == "sensor busy"
	})
	_, at = sub.WaitFor(mqttWait, at+1, "the error cleared", func(m brokertest.Message) bool {
		return m.Topic == errTopic && m.Payload == ""
	})
	sub.WaitFor(mqttWait, at+1, "the error again at the next failed read", func(m brokertest.Message) bool {
		return m.Topic == errTopic && m.Payload == "sensor busy"
	})
	// $error changes only when the state does: set, cleared, set, …
	want := "sensor busy"
	for _, m := range sub.Messages() {
		switch m.Topic {
		case errTopic:
			if m.Payload != want {
				t.Fatalf("$error %q, want %q: it is published only when it changes", m.Payload, want)
			}
			want = map[string]string{"": "sensor busy", "sensor busy": ""}[want]
		case "livecgi/e1/helper_flaky.count":
			if _, err := strconv.ParseFloat(m.Payload, 64); err != nil {
				t.Errorf("a failed read reached the value topic: %q", m.Payload)
			}
		}
	}
	late := b.Subscribe(t, []string{"livecgi/e1/helper_wrongtype.count/$error"})
	m, _ := late.WaitFor(mqttWait, 0, "the retained error of a sensor that only fails", topicIs("livecgi/e1/helper_wrongtype.count/$error"))
	if !m.Retain || !strings.Contains(m.Payload, "plugin sent a text for a number sensor") {
		t.Errorf("got %+v, want the type error, retained", m)
	}
	for _, m := range late.Messages() {
		if m.Payload == "" {
			t.Errorf("the error of a sensor that never reads well was cleared: %+v", m)
		}
	}
}

// TestMQTTResponseTopics: a command's response topic is used only under
// mqtt_reply_prefix or the device's own result/; any other (another
// fleet's, another device's, Home Assistant's) gets the result on
// result/<command id> instead, with the correlation data, and nothing is
// written there.
func TestMQTTResponseTopics(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	ts := startSup(t, withBridge(b, "rt1", func(m *config.MQTT) { m.Role, m.ReplyPrefix = auth.RoleOperator, "replies" }), "counter")
	sub := b.Subscribe(t, []string{"#"})
	sub.WaitFor(mqttWait, 0, "$meta with the commands", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/rt1/$meta" && strings.Contains(m.Payload, "helper_counter.fail")
	})
	const fallback = "livecgi/rt1/result/helper_counter.fail"
	for i, tc := range []struct{ topic, want string }{
		{"otherfleet/dev2/$state", fallback},
		{"livecgi/dev2/$state", fallback},
		{"livecgi/rt1/$state", fallback},
		{"livecgi/rt1/helper_counter.count", fallback},
		{"homeassistant/sensor/rt1/x/config", fallback},
		{"replies-not/me", fallback},
		{"replies/me", "replies/me"},
		{"livecgi/rt1/result/mine", "livecgi/rt1/result/mine"},
	} {
		corr := "c-" + strconv.Itoa(i)
		from := len(sub.Messages())
		b.Publish(t, "livecgi/rt1/cmd/helper_counter.fail", []byte("{}"), "-D", "publish", "response-topic", tc.topic, "-D", "publish", "correlation-data", corr)
		m, _ := sub.WaitFor(mqttWait, from, "the result for response topic "+tc.topic, func(m brokertest.Message) bool {
			return m.Correlation == corr && !strings.Contains(m.Topic, "/cmd/") // the command carries it too
		})
		if m.Topic != tc.want {
			t.Errorf("response topic %s: result published on %s, want %s", tc.topic, m.Topic, tc.want)
		}
		if r := resultOf(t, m); r["id"] != corr || r["error"] != "it failed, as asked" {
			t.Errorf("response topic %s: result %s", tc.topic, m.Payload)
		}
	}
	for _, m := range sub.Messages() {
		if m.Topic == "otherfleet/dev2/$state" || m.Topic == "livecgi/dev2/$state" || strings.HasPrefix(m.Topic, "homeassistant/") ||
			m.Topic == "livecgi/rt1/$state" && m.Payload != "online" || m.Topic == "livecgi/rt1/helper_counter.count" && strings.Contains(m.Payload, "{") {
			t.Errorf("the bridge wrote %q on %s", m.Payload, m.Topic)
		}
	}
	if !strings.Contains(ts.logs.String(), "response topic not used") {
		t.Errorf("no log line for the refused response topics")
	}
}

// TestMQTTNumbers: a number reaches the broker as a browser's frame
// writes it (wire.AppendNumber, whose test compares it with the frames):
// livecgid's resident memory, megabytes, as an integer, no exponent.
func TestMQTTNumbers(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	startSup(t, withBridge(b, "n1", nil))
	const topic = "livecgi/n1/livecgid.rss_bytes"
	sub := b.Subscribe(t, []string{topic})
	m, _ := sub.WaitFor(mqttWait, 0, "livecgid's memory", topicIs(topic))
	if n, err := strconv.ParseInt(m.Payload, 10, 64); err != nil || n < 1<<20 {
		t.Errorf("%s = %q, want an integer number of bytes", topic, m.Payload)
	}
}

// TestMQTTRole refuses the broker's commands with the default role
// (viewer) with a forbidden result.
func TestMQTTRole(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	startSup(t, withBridge(b, "v1", nil), "counter")
	sub := b.Subscribe(t, []string{"livecgi/v1/#"})
	sub.WaitFor(mqttWait, 0, "$meta with the commands", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/v1/$meta" && strings.Contains(m.Payload, "helper_counter.add")
	})
	b.Publish(t, "livecgi/v1/cmd/helper_counter.add", []byte(`{"a": 1}`))
	m, _ := sub.WaitFor(mqttWait, 0, "the refusal", topicIs("livecgi/v1/result/helper_counter.add"))
	if r := resultOf(t, m); r["code"] != "forbidden" || !strings.Contains(fmt.Sprint(r["message"]), `"mqtt" is viewer`) {
		t.Errorf("got %s, want forbidden for the viewer mqtt", m.Payload)
	}
}

// TestMQTTSameDeviceID: two supervisors with one device_id take the
// broker connection from each other; the log says what to look at.
func TestMQTTSameDeviceID(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.mqttBackoffMin, tm.mqttBackoffMax = 100*time.Millisecond, 200*time.Millisecond })
	b := brokertest.Start(t, brokertest.Options{})
	one := startSup(t, withBridge(b, "twin", nil))
	two := startSup(t, withBridge(b, "twin", nil))
	waitFor(t, "the hint to set device_id", func() bool {
		for _, ts := range []*testSup{one, two} {
			if strings.Contains(ts.logs.String(), "does another device use device_id twin?") {
				return true
			}
		}
		return false
	})
}

// TestMQTTKeepsRunning: with the broker gone and no browser, nobody
// consumes readings, yet idle_timeout does not stop livecgid: the bridge
// must be there when the broker comes back.
func TestMQTTKeepsRunning(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.mqttBackoffMin, tm.mqttBackoffMax = 100*time.Millisecond, 100*time.Millisecond })
	b := brokertest.Start(t, brokertest.Options{})
	ts := startSup(t, func(c *config.Config) {
		withBridge(b, "k1", nil)(c)
		c.IdleTimeout = 50 * time.Millisecond
	}, "counter")
	waitFor(t, "the bridge to connect", func() bool { return strings.Contains(ts.logs.String(), "mqtt: connected") })
	b.Kill()
	// Ten retries take a second at least: twenty idle timeouts.
	waitFor(t, "ten retries", func() bool { return strings.Count(ts.logs.String(), "mqtt: not connected; retrying") >= 10 })
	select {
	case err := <-ts.done:
		ts.done <- err
		t.Fatalf("livecgid stopped with the bridge configured: %v\n%s", err, ts.logs.String())
	default:
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	sub := b.Subscribe(t, []string{"livecgi/k1/helper_counter.count"})
	sub.WaitFor(mqttWait, 0, "a reading after the broker came back", topicIs("livecgi/k1/helper_counter.count"))
}

// TestMQTTBrokerStalls stops the broker (SIGSTOP: the connection stays
// open, nothing answers, as behind a dead NAT entry): the bridge's
// keep-alive notices and it retries, a browser gets readings all along,
// and once the broker runs again the bridge is back.
func TestMQTTBrokerStalls(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.mqttBackoffMin, tm.mqttBackoffMax = 100*time.Millisecond, 500*time.Millisecond })
	b := brokertest.Start(t, brokertest.Options{})
	ts := startSup(t, withBridge(b, "st1", func(m *config.MQTT) { m.KeepAlive = time.Second }), "counter")
	browser := ts.dial(t)
	waitFor(t, "the bridge to connect", func() bool { return strings.Contains(ts.logs.String(), "mqtt: connected") })
	pid := b.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	var last float64
	for !strings.Contains(ts.logs.String(), "mqtt: not connected; retrying") {
		m := browser.next("a reading while the broker is stopped", is("reading", "sensor", "helper_counter.count"))
		if v := m["value"].(float64); v <= last {
			t.Fatalf("browser got count %v after %v", v, last)
		} else {
			last = v
		}
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	sub := b.Subscribe(t, []string{"livecgi/st1/helper_counter.count"})
	sub.WaitFor(mqttWait, 0, "a reading after the broker woke", func(m brokertest.Message) bool { return !m.Retain })
}
