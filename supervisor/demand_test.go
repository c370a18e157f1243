package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	pb "google.golang.org/protobuf/proto"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
)

// helperStreams is what the helper's streams command reports.
type helperStreams struct {
	Opened, Open, Sent int64
	PID                int
}

// streams asks plugin (a helper) for its stream counts; it is a command,
// so it needs no consumer.
func (ts *testSup) streams(t *testing.T, plugin string) helperStreams {
	t.Helper()
	v, err := ts.plugins.Do(context.Background(), plugin, "streams", "s", nil)
	if err != nil {
		t.Fatalf("streams: %v", err)
	}
	var s helperStreams
	if err := json.Unmarshal(v, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// span lets a helper plugin pass ms milliseconds (its sleep command): a
// streaming helper sends a reading every 20 ms meanwhile.
func (ts *testSup) span(t *testing.T, plugin string, ms int) {
	t.Helper()
	args, _ := json.Marshal(map[string]any{"ms": ms})
	if _, err := ts.plugins.Do(context.Background(), plugin, "sleep", "s", args); err != nil {
		t.Fatal(err)
	}
}

func (ts *testSup) up(t *testing.T, plugin string) {
	t.Helper()
	waitFor(t, plugin+" running", func() bool {
		_, running, _ := ts.plugins.Slot(plugin)
		return running
	})
}

// TestDemandDrivenSampling: with no client no Stream RPC is open, the
// plugin sends nothing and the supervisor publishes nothing, not even its
// own figures, and the health check leaves the idle plugin alone; the
// first client opens the streams and gets a fresh reading of every
// sensor; the last one leaving closes them.
func TestDemandDrivenSampling(t *testing.T) {
	const p = "helper_counter"
	ts := startSup(t, nil, "counter")
	ts.up(t, p)
	head := ts.hub.Hello().Seq
	first := ts.streams(t, p)
	// Longer than the health check's limit (no reading for max(3
	// intervals, 5 s)): an idle plugin is not taken for a hung one.
	ts.span(t, p, 5500)
	idle := ts.streams(t, p)
	if idle.Opened != 0 || idle.Sent != 0 || ts.plugins.Streams() != 0 {
		t.Fatalf("no client: plugin opened %d streams and sent %d readings, supervisor has %d open; want none", idle.Opened, idle.Sent, ts.plugins.Streams())
	}
	if h := ts.hub.Hello().Seq; h != head {
		t.Errorf("no client: %d readings published, want none", h-head)
	}
	if idle.PID != first.PID || ts.plugins.Restarts() != 0 {
		t.Errorf("idle plugin restarted (pid %d → %d, %d restarts)", first.PID, idle.PID, ts.plugins.Restarts())
	}

	c := ts.dial(t)
	c.next("the hello", func(m map[string]any) bool { return m["type"] == "hello" })
	fresh := map[string]bool{}
	c.next("a reading of every sensor", func(m map[string]any) bool {
		if m["type"] == "reading" && m["error"] == nil {
			fresh[m["sensor"].(string)] = true
		}
		return fresh[p+".count"] && fresh[p+".label"] && fresh[builtinPlugin+".clients"]
	})
	if s := ts.streams(t, p); s.Opened != 1 || s.Open != 1 {
		t.Errorf("one client: %d streams opened, %d open; want 1, 1", s.Opened, s.Open)
	}

	// A second client shares the stream; the first leaving keeps it.
	c2 := ts.dial(t)
	c2.next("a reading", func(m map[string]any) bool { return m["type"] == "reading" && m["sensor"] == p+".count" })
	c.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "one client left", func() bool { return ts.hub.ClientCount() == 1 })
	c2.next("a reading", func(m map[string]any) bool { return m["type"] == "reading" && m["sensor"] == p+".count" })
	if s := ts.streams(t, p); s.Opened != 1 || s.Open != 1 {
		t.Errorf("after one of two left: %d streams opened, %d open; want 1, 1", s.Opened, s.Open)
	}

	// The last one leaving closes it.
	c2.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the stream closed", func() bool { return ts.streams(t, p).Open == 0 && ts.plugins.Streams() == 0 })
	before, head := ts.streams(t, p), ts.hub.Hello().Seq
	ts.span(t, p, 300)
	if after := ts.streams(t, p); after.Sent != before.Sent || after.Opened != 1 {
		t.Errorf("after the last client left: %d more readings sent, %d streams opened in all; want none more, 1", after.Sent-before.Sent, after.Opened)
	}
	if h := ts.hub.Hello().Seq; h != head {
		t.Errorf("after the last client left: %d readings published, want none", h-head)
	}

	// And the next client opens it again.
	c3 := ts.dial(t)
	c3.next("a reading", func(m map[string]any) bool { return m["type"] == "reading" && m["sensor"] == p+".count" })
	if s := ts.streams(t, p); s.Opened != 2 || s.Open != 1 {
		t.Errorf("a new client: %d streams opened, %d open; want 2, 1", s.Opened, s.Open)
	}
}

// TestIdlePluginKilledRestarts: a plugin that dies while no one watches
// (no stream open to fail) is seen dead by its connection and restarted.
func TestIdlePluginKilledRestarts(t *testing.T) {
	const p = "helper_counter"
	ts := startSup(t, nil, "counter")
	ts.up(t, p)
	old := ts.streams(t, p).PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a restart", func() bool { return ts.plugins.Restarts() == 1 })
	waitFor(t, "the new process", func() bool {
		_, running, _ := ts.plugins.Slot(p)
		return running && ts.streams(t, p).PID != old
	})
}

// requests returns the Stream requests a demand helper got, in order.
func (ts *testSup) requests(t *testing.T, plugin string) []*proto.StreamRequest {
	t.Helper()
	v, err := ts.plugins.Do(context.Background(), plugin, "requests", "r", nil)
	if err != nil {
		t.Fatalf("requests: %v", err)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		t.Fatal(err)
	}
	out := make([]*proto.StreamRequest, len(raw))
	for i, b := range raw {
		out[i] = streamRequest(t, string(b))
	}
	return out
}

// streamRequest reads a StreamRequest in protojson.
func streamRequest(t *testing.T, s string) *proto.StreamRequest {
	t.Helper()
	r := &proto.StreamRequest{}
	if err := protojson.Unmarshal([]byte(s), r); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return r
}

// waitRequests waits until plugin got n Stream requests and checks the
// last against want (protojson).
func (ts *testSup) waitRequests(t *testing.T, plugin string, n int, want string) {
	t.Helper()
	var got []*proto.StreamRequest
	waitFor(t, fmt.Sprintf("%d stream requests", n), func() bool { got = ts.requests(t, plugin); return len(got) >= n })
	if len(got) != n || !pb.Equal(got[n-1], streamRequest(t, want)) {
		t.Fatalf("stream requests %v; want %d, the last %s", got, n, want)
	}
}

// sensorOf returns sensor id from a hello.
func sensorOf(t *testing.T, hello map[string]any, id string) map[string]any {
	t.Helper()
	ss, _ := hello["sensors"].([]any)
	for _, s := range ss {
		if s := s.(map[string]any); s["id"] == id {
			return s
		}
	}
	t.Fatalf("no sensor %s in the hello", id)
	return nil
}

// TestDemandPerSensor: a plugin that honours demand is asked for what is
// wanted of it, and no more. With nobody watching, only its recorded
// sensor, at the record's interval; with a browser, all, with the
// configuration's overrides; when the browser leaves, the recorded one
// again; a reload that adds an alarm on another sensor adds it (at its
// own interval), one that changes an override asks with it, and one that
// changes nothing of this plugin opens no new Stream; with nothing
// configured, no Stream at all. The descriptors carry the effective
// deadband, heartbeat and record interval, and a reload that changes
// them sends a fresh hello.
func TestDemandPerSensor(t *testing.T) {
	const p = "helper_demand"
	const conf = "record.helper_demand.count = 1s\ndeadband.helper_demand.slow = 0.25\n"
	cs := startConf(t, conf, "demand")
	cs.up(t, p)

	const recorded = `{"demand":[{"id":"count","intervalMs":"1000"}]}`
	cs.waitRequests(t, p, 1, recorded)
	waitFor(t, "a reading of the recorded sensor", func() bool { _, ok := cs.hub.Last(p + ".count"); return ok })
	if r, ok := cs.hub.Last(p + ".slow"); ok {
		t.Errorf("a reading of a sensor nobody wants: %+v", r)
	}

	c := cs.dial(t)
	hello := c.next("the hello", is("hello"))
	if s := sensorOf(t, hello, p+".count"); s["record_ms"] != 1000.0 || s["deadband"] != nil || s["heartbeat_ms"] != nil {
		t.Errorf("count's descriptor %v: want record_ms 1000, no deadband, no heartbeat", s)
	}
	if s := sensorOf(t, hello, p+".slow"); s["record_ms"] != nil || s["deadband"] != 0.25 || s["heartbeat_ms"] != 60000.0 {
		t.Errorf("slow's descriptor %v: want deadband 0.25 (the configuration's), heartbeat_ms 60000 (its own)", s)
	}
	cs.waitRequests(t, p, 2, `{"all":true,"demand":[{"id":"count"},{"id":"slow","deadband":0.25}]}`)
	c.next("a reading of slow", is("reading", "sensor", p+".slow"))
	// A reload that changes an override: a fresh hello, a new request.
	cs.write(strings.Replace(conf, "0.25", "0.75", 1))
	if err := cs.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.next("a fresh hello with slow's new deadband", func(m map[string]any) bool {
		return m["type"] == "hello" && sensorOf(t, m, p+".slow")["deadband"] == 0.75
	})
	cs.waitRequests(t, p, 3, `{"all":true,"demand":[{"id":"count"},{"id":"slow","deadband":0.75}]}`)
	cs.write(conf)
	if err := cs.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	cs.waitRequests(t, p, 4, `{"all":true,"demand":[{"id":"count"},{"id":"slow","deadband":0.25}]}`)
	c.conn.Close(websocket.StatusNormalClosure, "")
	cs.waitRequests(t, p, 5, recorded)

	// A change for another plugin (livecgid's own figures): not this
	// one's Stream.
	clients, _ := cs.hub.Last(builtinPlugin + ".clients")
	cs.write(conf + "record.livecgid.goroutines = 1s\n")
	if err := cs.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "livecgid's recorded figure", func() bool { _, ok := cs.hub.Last(builtinPlugin + ".goroutines"); return ok })
	if r, _ := cs.hub.Last(builtinPlugin + ".clients"); r.Seq != clients.Seq {
		t.Errorf("a figure nobody wants published: %+v", r)
	}
	// An alarm on slow: slow too, at its own interval.
	cs.write(conf + "record.livecgid.goroutines = 1s\nalarm.hot = helper_demand.slow above 5\n")
	if err := cs.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	cs.waitRequests(t, p, 6, `{"demand":[{"id":"count","intervalMs":"1000"},{"id":"slow","deadband":0.25}]}`)
	waitFor(t, "a reading of the alarmed sensor", func() bool { _, ok := cs.hub.Last(p + ".slow"); return ok })

	// Nothing configured: no Stream.
	cs.write("")
	if err := cs.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no stream", func() bool { return cs.plugins.Streams() == 0 && cs.streams(t, p).Open == 0 })
	if n := len(cs.requests(t, p)); n != 6 {
		t.Errorf("%d stream requests, want no more than 6", n)
	}
}

// TestLivecgidFiltersOldPlugin: a plugin that predates demand sends every
// reading of every sensor; livecgid applies what is wanted itself. With
// nobody watching, only the recorded sensor is published, at most once
// an interval (by the readings' own time); with a browser, every sensor,
// each by its rule: the configuration's deadband holds back a counter's
// steps smaller than it.
func TestLivecgidFiltersOldPlugin(t *testing.T) {
	const p = "helper_counter"
	ts := startSup(t, func(c *config.Config) {
		c.Sensors.Record = map[string]time.Duration{p + ".count": time.Second}
		c.Sensors.Deadband = map[string]float64{p + ".count": 10}
	}, "counter")
	var ts3 []int64
	waitFor(t, "three readings of the recorded sensor", func() bool {
		if r, ok := ts.hub.Last(p + ".count"); ok && (len(ts3) == 0 || r.T != ts3[len(ts3)-1]) {
			ts3 = append(ts3, r.T)
		}
		return len(ts3) >= 3
	})
	for i := 1; i < len(ts3); i++ {
		if gap := ts3[i] - ts3[i-1]; gap < 990 { // the record's interval, less half the sensor's own (20 ms)
			t.Errorf("recorded readings %d ms apart, want about 1000", gap)
		}
	}
	if r, ok := ts.hub.Last(p + ".label"); ok {
		t.Errorf("a reading of a sensor nobody wants: %+v", r)
	}

	c := ts.dial(t)
	var vs []float64
	for len(vs) < 5 {
		m := c.next("a reading of count", is("reading", "sensor", p+".count"))
		vs = append(vs, m["value"].(float64))
	}
	for i := 1; i < len(vs); i++ {
		if d := vs[i] - vs[i-1]; d <= 10 {
			t.Errorf("count went %v → %v: a step of %v, not past the deadband 10", vs[i-1], vs[i], d)
		}
	}
	c.next("a reading of label", is("reading", "sensor", p+".label"))
}

// TestQuietByExceptionNotHung: a plugin whose wanted sensors may all stay
// silent by exception (a deadband, no heartbeat) sends nothing once
// their values are known; it is not taken for a hung one (the watchdog's
// old limit, three intervals or 5 s, passes).
func TestQuietByExceptionNotHung(t *testing.T) {
	const p = "helper_quiet"
	ts := startSup(t, nil, "quiet")
	c := ts.dial(t)
	c.next("the first reading", is("reading", "sensor", p+".count"))
	pid := ts.streams(t, p).PID
	ts.span(t, p, 7000)
	if s := ts.streams(t, p); s.PID != pid || ts.plugins.Restarts() != 0 || s.Opened != 1 {
		t.Errorf("quiet plugin: pid %d → %d, %d restarts, %d streams opened; want it left alone", pid, s.PID, ts.plugins.Restarts(), s.Opened)
	}
}

// TestHungByExceptionRestarts: a plugin that sends by exception but
// stops sending its heartbeats is hung, and restarted.
func TestHungByExceptionRestarts(t *testing.T) {
	ts := startSup(t, nil, "hush")
	c := ts.dial(t)
	c.next("hung", func(m map[string]any) bool {
		return m["type"] == "status" && m["state"] == wire.StateOffline && strings.Contains(fmt.Sprint(m["reason"]), "plugin hung")
	})
	online(c, "helper_hush")
}

// TestIdleKeptByRecords: with a recorded sensor nobody watches, livecgid
// does not exit on idle_timeout: it is sampled (livecgid's own figure,
// at its interval) well past it.
func TestIdleKeptByRecords(t *testing.T) {
	for _, key := range []string{"record", "alarm"} {
		t.Run(key, func(t *testing.T) {
			const id = builtinPlugin + ".clients"
			ts := startSup(t, func(c *config.Config) {
				c.IdleTimeout = 100 * time.Millisecond
				if key == "record" {
					c.Sensors.Record = map[string]time.Duration{id: time.Second}
				} else {
					c.Sensors.Alarms = map[string]string{"crowd": id + " above 50"}
				}
				c.Sensors.Heartbeat = map[string]time.Duration{id: time.Second} // a reading each second, changed or not
			})
			var seen []int64
			waitFor(t, "three readings of "+id, func() bool {
				if r, ok := ts.hub.Last(id); ok && (len(seen) == 0 || r.T != seen[len(seen)-1]) {
					seen = append(seen, r.T)
				}
				return len(seen) >= 3
			})
			select {
			case err := <-ts.done:
				ts.done <- err
				t.Fatalf("livecgid stopped on idle_timeout with a %s configured: %v", key, err)
			default:
			}
			if r, ok := ts.hub.Last(builtinPlugin + ".goroutines"); ok {
				t.Errorf("a figure nobody wants published: %+v", r)
			}
		})
	}
}
