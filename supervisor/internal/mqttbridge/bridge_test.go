package mqttbridge

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/brokertest"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// wait is how long a test waits for one message: generous, for a loaded
// machine; a passing run takes milliseconds.
const wait = 30 * time.Second

func topicIs(topic string) func(brokertest.Message) bool {
	return func(m brokertest.Message) bool { return m.Topic == topic }
}

// TestBridgeAlone runs a bridge with what its Options give and nothing
// else (a bare hub, a command function, a Described the test controls)
// against a real Mosquitto: readings flow at once, $meta waits for
// Described; a command from the broker reaches Frames as a client frame
// with the bridge's identity (mqtt_role) and its answer comes back on
// result/; a payload that is not one JSON value never reaches Frames (it
// cannot add members to the frame);
// Check connects under a client id of its own.
func TestBridgeAlone(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	sub := b.Subscribe(t, []string{"livecgi/solo/#"})
	// A retained mark reaches the subscriber once it has subscribed.
	b.Publish(t, "livecgi/solo/mark", []byte("x"), "-r")
	sub.WaitFor(wait, 0, "the subscription", topicIs("livecgi/solo/mark"))

	hub := fanout.New(fanout.Options{Epoch: "e1", Version: "test", MaxClients: 4})
	hub.Start()
	hub.SetPlugin("p", &wire.PluginInfo{ID: "p", State: wire.StateOnline},
		[]wire.Sensor{{ID: "p.temp_celsius", Plugin: "p", Unit: "°C", ValueType: wire.ValueNumber}},
		[]wire.Command{{ID: "p.set", Plugin: "p", Args: []wire.Arg{}}}, nil)

	var mu sync.Mutex
	described, wake := false, make(chan struct{})
	type call struct {
		who    auth.Identity
		remote string
		m      *wire.CommandMsg
	}
	calls := make(chan call, 1)
	m := config.Default().MQTT
	m.URL, m.DeviceID, m.Role = b.URL, "solo", auth.RoleOperator
	br, err := New(Options{
		MQTT: m, Hub: hub, Log: slog.New(slog.DiscardHandler),
		Limits: func() Limits { return Limits{MaxFrame: 64 << 10} },
		Described: func() (bool, <-chan struct{}) {
			mu.Lock()
			defer mu.Unlock()
			return described, wake
		},
		Frames: func(ctx context.Context, who auth.Identity, remote string, log *slog.Logger, frame []byte) []byte {
			msg, err := wire.DecodeClient(frame)
			if err != nil {
				t.Errorf("Frames got %q: %v", frame, err)
				return nil
			}
			m := msg.(*wire.CommandMsg)
			calls <- call{who, remote, m}
			b, _ := json.Marshal(wire.Result{Type: wire.TypeResult, ID: m.ID, OK: true, Value: json.RawMessage("7")})
			return b
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runBridge(t, br, hub)

	sub.WaitFor(wait, 0, "online", func(m brokertest.Message) bool { return m.Topic == "livecgi/solo/$state" && m.Payload == "online" })
	hub.Publish(wire.Reading{Sensor: "p.temp_celsius", Value: 21.5, T: 1})
	r, at := sub.WaitFor(wait, 0, "the reading", topicIs("livecgi/solo/p.temp_celsius"))
	if r.Payload != "21.5" {
		t.Errorf("reading %q, want 21.5", r.Payload)
	}
	for _, m := range sub.Messages()[:at+1] {
		if m.Topic == "livecgi/solo/$meta" {
			t.Fatalf("$meta before Described: %s", m.Payload)
		}
	}
	mu.Lock()
	described = true
	close(wake)
	mu.Unlock()
	sub.WaitFor(wait, at, "$meta", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/solo/$meta" && strings.Contains(m.Payload, `"id":"p.set"`) && strings.Contains(m.Payload, `"id":"p.temp_celsius"`)
	})

	b.Publish(t, "livecgi/solo/cmd/p.set", []byte(`{}`))
	select {
	case c := <-calls:
		if c.who != (auth.Identity{User: "mqtt", Role: auth.RoleOperator}) || c.m.Name != "p.set" || !strings.HasPrefix(c.m.ID, "mqtt-") ||
			!strings.Contains(b.URL, c.remote) {
			t.Errorf("Commands got %+v from %q for %+v", c.who, c.remote, *c.m)
		}
	case <-time.After(wait):
		t.Fatal("the command did not reach Frames")
	}
	res, at := sub.WaitFor(wait, 0, "the result", topicIs("livecgi/solo/result/p.set"))
	if !strings.Contains(res.Payload, `"ok":true`) || !strings.Contains(res.Payload, `"value":7`) {
		t.Errorf("result %s, want ok with value 7", res.Payload)
	}
	b.Publish(t, "livecgi/solo/cmd/p.set", []byte(`{}, "name": "p.other"`))
	res, _ = sub.WaitFor(wait, at+1, "the refusal", topicIs("livecgi/solo/result/p.set"))
	if !strings.Contains(res.Payload, `"code":"bad_json"`) {
		t.Errorf("a payload with members of its own: %s, want bad_json", res.Payload)
	}
	select {
	case c := <-calls:
		t.Errorf("Frames got %+v", *c.m)
	default:
	}

	msg, err := Check(context.Background(), m, 64<<10)
	if err != nil || !strings.Contains(msg, `"livecgi-solo"`) {
		t.Errorf("Check: %q, %v", msg, err)
	}
}

// runBridge runs br until the test ends, then stops it and hub.
func runBridge(t *testing.T, br *Bridge, hub *fanout.Hub) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		br.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		hub.Stop()
	})
}
