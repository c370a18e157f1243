package supervisor

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"

	"github.com/coder/websocket"
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
