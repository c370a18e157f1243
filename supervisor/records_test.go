package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/brokertest"
	"github.com/livecgi/livecgi/supervisor/internal/history"
)

// counterSensor is the counter helper's number sensor: a reading every
// 20 ms, counting up, while someone watches.
const counterSensor = "helper_counter.count"

// recordCounter is a config edit recording the counter every second.
func recordCounter(more func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Sensors.Record = map[string]time.Duration{counterSensor: time.Second}
		if more != nil {
			more(c)
		}
	}
}

// stored returns every point the store holds for sensor.
func (ts *testSup) stored(sensor string) []wire.Point {
	pts, _ := ts.records.store.Query(sensor, time.UnixMilli(0), time.Now().Add(time.Minute), 0)
	return pts
}

// waitStored waits until the store holds at least n points of sensor.
func (ts *testSup) waitStored(t *testing.T, sensor string, n int) []wire.Point {
	t.Helper()
	var pts []wire.Point
	waitFor(t, fmt.Sprintf("%d recorded points of %s", n, sensor), func() bool { pts = ts.stored(sensor); return len(pts) >= n })
	return pts
}

// historyFrame decodes a history frame m.
func historyFrame(t *testing.T, m map[string]any) wire.History {
	t.Helper()
	b, _ := json.Marshal(m)
	var h wire.History
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("history frame %s: %v", b, err)
	}
	return h
}

// checkCounting: the counter's points count up, as it does.
func checkCounting(t *testing.T, pts []wire.Point) {
	t.Helper()
	for i := 1; i < len(pts); i++ {
		if pts[i].T <= pts[i-1].T || pts[i].Min < pts[i-1].Max {
			t.Fatalf("points %d and %d out of order: %v %v", i-1, i, pts[i-1], pts[i])
		}
	}
}

// TestHistoryWebSocket: a viewer's WebSocket asks for a recorded
// sensor's history: the answer is a history frame with its id, the last
// hour by default and at most the points asked; a known sensor not
// recorded, an unknown one and bad requests are errors with the id.
func TestHistoryWebSocket(t *testing.T) {
	ts := startSup(t, recordCounter(nil), "counter")
	u := ts.urlFor(ts.origin(), auth.Identity{User: "v", Role: auth.RoleViewer})
	c, err := ts.tryDial(u, ts.origin())
	if err != nil {
		t.Fatal(err)
	}
	c.next("hello", is("hello"))
	ts.waitStored(t, counterSensor, 20)

	before := time.Now().UnixMilli()
	c.send(map[string]any{"type": "history", "id": "h1", "sensor": counterSensor})
	h := historyFrame(t, c.next("the history h1", is("history", "id", "h1")))
	if h.Sensor != counterSensor || h.To < before || h.To > time.Now().UnixMilli() || h.From != h.To-3600_000 {
		t.Errorf("history h1: sensor %s, from %d, to %d (asked at %d)", h.Sensor, h.From, h.To, before)
	}
	if len(h.Points) == 0 || len(h.Points) > wire.DefaultHistoryPoints {
		t.Errorf("history h1: %d points", len(h.Points))
	}
	checkCounting(t, h.Points)

	all := ts.stored(counterSensor)
	from, to := all[0].T, all[len(all)-1].T
	c.send(map[string]any{"type": "history", "id": "h2", "sensor": counterSensor, "from": from, "to": to, "points": 3})
	h = historyFrame(t, c.next("the history h2", is("history", "id", "h2")))
	if h.From != from || h.To != to || len(h.Points) == 0 || len(h.Points) > 3 {
		t.Errorf("history h2 of [%d, %d] in 3 points: %+v", from, to, h)
	}
	checkCounting(t, h.Points)

	for _, tt := range []struct {
		frame, id, code, msg string
	}{
		{`{"type":"history","id":"e1","sensor":"helper_counter.label"}`, "e1", wire.ErrNotRecorded, "record.helper_counter.label"},
		{`{"type":"history","id":"e2","sensor":"nope.nothing"}`, "e2", wire.ErrUnknownSensor, "nope.nothing"},
		{`{"type":"history","id":"e3","sensor":"helper_counter.count","points":2001}`, "e3", wire.ErrBadMessage, "points"},
		{`{"type":"history","id":"e4","sensor":"helper_counter.count","bogus":1}`, "e4", wire.ErrBadMessage, "bogus"},
		{`{"type":"history","id":"e5","sensor":"Counter"}`, "e5", wire.ErrBadMessage, "sensor"},
		{`{"type":"history","id":"e6","sensor":"helper_counter.count","from":5,"to":2}`, "e6", wire.ErrBadMessage, "from"},
		{`{"type":"history","id":"e7","sensor":"helper_counter.count","from":99999999999999}`, "e7", wire.ErrBadMessage, "after"},
	} {
		c.sendRaw(websocket.MessageText, []byte(tt.frame))
		m := c.next("the error "+tt.id, is("error", "id", tt.id))
		if m["code"] != tt.code || !strings.Contains(fmt.Sprint(m["message"]), tt.msg) {
			t.Errorf("%s: %v, want %s mentioning %q", tt.frame, m, tt.code, tt.msg)
		}
	}
}

// TestHistoryPoll: a poll session asks for the history by POSTing the
// history frame as it would a command; the answer is the history frame,
// or the error, with the id.
func TestHistoryPoll(t *testing.T) {
	ts := startSup(t, recordCounter(func(c *config.Config) { c.PollInterval = 0 }), "counter")
	o := ts.origin()
	a := ts.poll(context.Background(), control.PollRequest{Token: ts.token(o, auth.Identity{}), Origin: o})
	if a.status != 200 {
		t.Fatalf("open: %+v", a)
	}
	ts.waitStored(t, counterSensor, 20) // the session is a consumer: the counter runs
	ask := func(frame string) map[string]any {
		t.Helper()
		arg, _ := json.Marshal(control.CommandRequest{Session: a.Session, Origin: o, Remote: "192.0.2.7", Len: len(frame)})
		ans := ts.servePollCommand(context.Background(), arg, strings.NewReader(frame))
		var m map[string]any
		if err := json.Unmarshal(ans.Body, &m); err != nil || ans.Status != 200 {
			t.Fatalf("%s: %d %s", frame, ans.Status, ans.Body)
		}
		return m
	}
	m := ask(`{"type":"history","id":"p1","sensor":"helper_counter.count","points":10}`)
	h := historyFrame(t, m)
	if h.Type != wire.TypeHistory || h.ID != "p1" || h.Sensor != counterSensor || len(h.Points) == 0 || len(h.Points) > 10 {
		t.Errorf("poll history: %v", m)
	}
	checkCounting(t, h.Points)
	if m := ask(`{"type":"history","id":"p2","sensor":"helper_counter.label"}`); m["type"] != "error" || m["code"] != wire.ErrNotRecorded || m["id"] != "p2" {
		t.Errorf("poll history of a sensor not recorded: %v", m)
	}
	if m := ask(`{"type":"history","id":"p3","sensor":"nope.nothing"}`); m["code"] != wire.ErrUnknownSensor || m["id"] != "p3" {
		t.Errorf("poll history of an unknown sensor: %v", m)
	}
	if m := ask(`{"type":"history","id":"p4","sensor":"helper_counter.count","points":-1}`); m["code"] != wire.ErrBadMessage || m["id"] != "p4" {
		t.Errorf("poll history with bad points: %v", m)
	}
}

// TestHistoryPersists: with history_dir, a clean stop saves the history
// and the next start reads it back before anything is recorded; a
// corrupt file is set aside and livecgid starts with empty history.
func TestHistoryPersists(t *testing.T) {
	hdir := filepath.Join(t.TempDir(), "history") // made by the first save
	withDir := recordCounter(func(c *config.Config) { c.Sensors.HistoryDir = hdir })
	ts := startSup(t, withDir, "counter")
	ts.dial(t).next("hello", is("hello"))
	ts.waitStored(t, counterSensor, 20)
	ts.stop()
	saved := ts.stored(counterSensor)
	if _, err := os.Stat(filepath.Join(hdir, history.FileName)); err != nil || !strings.Contains(ts.logs.String(), "history: saved") {
		t.Fatalf("no history saved at a clean stop (%v):\n%s", err, ts.logs.String())
	}

	// Started again without the plugin: nothing new is recorded.
	ts2 := startSup(t, withDir)
	waitFor(t, "the history loaded", func() bool { return strings.Contains(ts2.logs.String(), "history: loaded") })
	if got := ts2.stored(counterSensor); len(got) != len(saved) || got[0] != saved[0] || got[len(got)-1] != saved[len(saved)-1] {
		t.Fatalf("after a restart the store holds %d points %v…, want the %d saved %v…", len(got), got[:min(len(got), 1)], len(saved), saved[0])
	}
	if want := fmt.Sprintf("history: loaded 1 sensors from %s", filepath.Join(hdir, history.FileName)); !strings.Contains(ts2.logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, ts2.logs.String())
	}
	c := ts2.dial(t)
	c.send(map[string]any{"type": "history", "id": "old", "sensor": counterSensor, "from": saved[0].T, "points": 2000})
	if h := historyFrame(t, c.next("the history", is("history", "id", "old"))); len(h.Points) == 0 || h.Points[0].T > saved[0].T {
		t.Errorf("history request after a restart: %+v, want the saved points from %d", h, saved[0].T)
	}
	ts2.stop()

	if err := os.WriteFile(filepath.Join(hdir, history.FileName), []byte("not a history file"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts3 := startSup(t, withDir)
	waitFor(t, "the history file refused", func() bool { return strings.Contains(ts3.logs.String(), "history: not loaded") })
	if n := len(ts3.stored(counterSensor)); n != 0 {
		t.Errorf("a corrupt file gave %d points", n)
	}
	if b, err := os.ReadFile(filepath.Join(hdir, history.FileName+".corrupt")); err != nil || string(b) != "not a history file" {
		t.Errorf("corrupt file not set aside: %q %v", b, err)
	}
	if !strings.Contains(ts3.logs.String(), "history: not loaded, set aside as") {
		t.Errorf("log does not report the corrupt file:\n%s", ts3.logs.String())
	}
	ts3.dial(t).next("hello from a supervisor that started anyway", is("hello"))
}

// TestHistorySync: while running, the history is saved at most every
// history_sync when it changed.
func TestHistorySync(t *testing.T) {
	hdir := t.TempDir()
	ts := startSup(t, recordCounter(func(c *config.Config) { c.Sensors.HistoryDir = hdir }), "counter")
	file := filepath.Join(hdir, history.FileName)
	ts.dial(t).next("hello", is("hello"))
	ts.waitStored(t, counterSensor, 5)
	if _, err := os.Stat(file); err == nil {
		t.Fatal("history saved before history_sync (15m)")
	}
	// A history_sync shorter than the configuration allows, as a reload
	// would apply it.
	cfg := *ts.config()
	cfg.Sensors.HistorySync = 200 * time.Millisecond
	ts.cfg.Store(&cfg)
	ts.rl.mu.Lock()
	close(ts.rl.changed)
	ts.rl.changed = make(chan struct{})
	ts.rl.mu.Unlock()
	waitFor(t, "the history saved by history_sync", func() bool { return strings.Contains(ts.logs.String(), "by=history_sync") })
	if _, err := os.Stat(file); err != nil {
		t.Errorf("history_sync logged a save, but: %v", err)
	}
}

// TestHistoryMemoryBound: with many record.<id> keys, the store holds
// history_memory_kb: the first sensors in id order are recorded, each of
// the others is named in the log with the bound, and a history request
// for one says why it is not recorded.
func TestHistoryMemoryBound(t *testing.T) {
	ts := startSup(t, func(c *config.Config) {
		c.Sensors.HistoryMemoryKB = 1024
		c.Sensors.Record = map[string]time.Duration{counterSensor: time.Second}
		for i := range 100 {
			c.Sensors.Record[fmt.Sprintf("helper_counter.s%03d", i)] = time.Second
		}
	}, "counter")
	used, limit := ts.records.store.Memory()
	if used > limit || limit != 1024<<10 {
		t.Fatalf("store uses %d bytes of %d", used, limit)
	}
	per := history.SensorBytes("helper_counter.s000", time.Second)
	fit := limit / per // 11 at 1 s
	rec := ts.records.recorded()
	if len(rec) != fit || rec[counterSensor] == 0 || rec["helper_counter.s000"] == 0 || rec[fmt.Sprintf("helper_counter.s%03d", fit-1)] != 0 {
		t.Errorf("%d sensors recorded, want the first %d: %v", len(rec), fit, rec)
	}
	logs := ts.logs.String()
	for _, id := range []string{fmt.Sprintf("helper_counter.s%03d", fit-1), "helper_counter.s099"} {
		if want := "record." + id + " = 1s is not recorded"; !strings.Contains(logs, want) || !strings.Contains(logs, "history_memory_kb=1024") {
			t.Errorf("log lacks %q with the bound", want)
		}
	}
	c := ts.dial(t)
	c.send(map[string]any{"type": "history", "id": "m1", "sensor": "helper_counter.s099"})
	if m := c.next("the error", is("error", "id", "m1")); m["code"] != wire.ErrNotRecorded || !strings.Contains(fmt.Sprint(m["message"]), "history_memory_kb") {
		t.Errorf("history of a sensor over the bound: %v", m)
	}
	ts.waitStored(t, counterSensor, 20) // the first one is recorded
	if used, _ := ts.records.store.Memory(); used > limit {
		t.Errorf("store uses %d bytes of %d while recording", used, limit)
	}
}

// TestHistoryReload: a record.<id> added to the file starts recording,
// one whose interval changed keeps its history, one removed stops (its
// history dropped: not_recorded); history_memory_kb waits for a
// restart.
func TestHistoryReload(t *testing.T) {
	cs := startConf(t, "record.helper_counter.count = 1s\n", "counter")
	c := cs.dial(t)
	c.next("hello", is("hello"))
	before := cs.waitStored(t, counterSensor, 20)

	cs.write("record.helper_counter.count = 2s\nrecord.livecgid.clients = 1s\n")
	waitFor(t, "livecgid.clients recorded", func() bool { return cs.records.recorded()["livecgid.clients"] == time.Second })
	if got := cs.records.recorded()[counterSensor]; got != 2*time.Second {
		t.Errorf("counter recorded every %v, want 2s", got)
	}
	cs.waitStored(t, "livecgid.clients", 1)
	if after := cs.stored(counterSensor); len(after) == 0 || after[0].T > before[0].T {
		t.Errorf("the history before the new interval is gone: first point %v, was %v", after[:min(len(after), 1)], before[0])
	}

	cs.write("record.livecgid.clients = 1s\nhistory_memory_kb = 2048\n")
	waitFor(t, "the counter no longer recorded", func() bool { _, ok := cs.records.recorded()[counterSensor]; return !ok })
	c.send(map[string]any{"type": "history", "id": "r1", "sensor": counterSensor})
	if m := c.next("the error", is("error", "id", "r1")); m["code"] != wire.ErrNotRecorded {
		t.Errorf("history of a sensor removed: %v", m)
	}
	waitFor(t, "history_memory_kb in the restart note", func() bool { return cs.Status().Restart == "history_memory_kb" })
	if _, limit := cs.records.store.Memory(); limit != 1024<<10 || cs.config().Sensors.HistoryMemoryKB != 1024 {
		t.Errorf("history_memory_kb applied while running: limit %d", limit)
	}
}

// TestRecordsObserve: numbers are recorded, booleans as 0 and 1; text,
// readings with an error and sensors not recorded are not.
func TestRecordsObserve(t *testing.T) {
	var h records
	h.init(config.Sensors{HistoryMemoryKB: 1024, Record: map[string]time.Duration{"p.n": time.Second, "p.b": time.Second, "p.t": time.Second}}, slog.New(slog.DiscardHandler))
	t0 := time.Now().Add(-time.Minute).UnixMilli()
	h.observe(wire.Reading{Sensor: "p.n", Value: 2.5, T: t0})
	h.observe(wire.Reading{Sensor: "p.n", Value: 9.0, T: t0 + 1000, Error: "sensor busy"})
	h.observe(wire.Reading{Sensor: "p.b", Value: true, T: t0})
	h.observe(wire.Reading{Sensor: "p.b", Value: false, T: t0 + 1000})
	h.observe(wire.Reading{Sensor: "p.t", Value: "text", T: t0})
	h.observe(wire.Reading{Sensor: "p.other", Value: 1.0, T: t0})
	q := func(id string) []wire.Point {
		pts, err := h.store.Query(id, time.UnixMilli(0), time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		return pts
	}
	if got := q("p.n"); len(got) != 1 || got[0] != (wire.Point{T: t0, Min: 2.5, Avg: 2.5, Max: 2.5}) {
		t.Errorf("number: %v", got)
	}
	if got := q("p.b"); len(got) != 2 || got[0].Avg != 1 || got[1].Avg != 0 {
		t.Errorf("bool: %v", got)
	}
	if got := q("p.t"); len(got) != 0 {
		t.Errorf("text: %v", got)
	}
}

// TestHistoryMQTT: a history request published on history/<sensor id>
// is answered on history/<sensor id>/result, with the correlation data
// as its id; a bad payload and a sensor not recorded are error frames
// there, and a response topic under mqtt_reply_prefix is honoured.
func TestHistoryMQTT(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	ts := startSup(t, recordCounter(withBridge(b, "h1", func(m *config.MQTT) { m.ReplyPrefix = "reply" })), "counter")
	sub := b.Subscribe(t, []string{"livecgi/h1/history/#", "reply/#"})
	ts.waitStored(t, counterSensor, 5)
	all := ts.stored(counterSensor)

	const result = "livecgi/h1/history/" + counterSensor + "/result"
	b.Publish(t, "livecgi/h1/history/"+counterSensor, fmt.Appendf(nil, `{"from": %d, "to": %d, "points": 2}`, all[0].T, all[len(all)-1].T),
		"-D", "publish", "correlation-data", "night")
	m, _ := sub.WaitFor(mqttWait, 0, "the history", topicIs(result))
	var h wire.History
	if err := json.Unmarshal([]byte(m.Payload), &h); err != nil || h.Type != wire.TypeHistory || h.ID != "night" || h.Sensor != counterSensor ||
		len(h.Points) == 0 || len(h.Points) > 2 || m.Correlation != "night" {
		t.Fatalf("history answer %s (correlation %q, %v): want up to 2 points for id night", m.Payload, m.Correlation, err)
	}
	checkCounting(t, h.Points)

	// An empty payload asks for the last hour.
	from := len(sub.Messages())
	b.Publish(t, "livecgi/h1/history/"+counterSensor, nil)
	m, _ = sub.WaitFor(mqttWait, from, "the last hour", topicIs(result))
	if r := resultOf(t, m); r["type"] != "history" || r["to"].(float64)-r["from"].(float64) != 3600_000 {
		t.Errorf("history of an empty payload: %s", m.Payload)
	}

	for _, tc := range []struct{ name, sensor, payload, code string }{
		{"unknown field", counterSensor, `{"sensor": "other.x"}`, wire.ErrBadMessage},
		{"not JSON", counterSensor, `{"from": `, wire.ErrBadMessage},
		{"too many points", counterSensor, `{"points": 1000000}`, wire.ErrBadMessage},
		{"not recorded", "helper_counter.label", ``, wire.ErrNotRecorded},
		{"unknown sensor", "nope.nothing", ``, wire.ErrUnknownSensor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := len(sub.Messages())
			b.Publish(t, "livecgi/h1/history/"+tc.sensor, []byte(tc.payload))
			m, _ := sub.WaitFor(mqttWait, from, "the refusal", topicIs("livecgi/h1/history/"+tc.sensor+"/result"))
			if r := resultOf(t, m); r["type"] != "error" || r["code"] != tc.code {
				t.Errorf("got %s, want error %s", m.Payload, tc.code)
			}
		})
	}

	from = len(sub.Messages())
	b.Publish(t, "livecgi/h1/history/"+counterSensor, nil, "-D", "publish", "response-topic", "reply/h")
	m, _ = sub.WaitFor(mqttWait, from, "the answer on the response topic", topicIs("reply/h"))
	if r := resultOf(t, m); r["type"] != "history" {
		t.Errorf("response topic got %s", m.Payload)
	}
}
