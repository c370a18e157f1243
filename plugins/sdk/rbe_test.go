package sdk_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto"
)

// rbePlugin starts the tiny plugin with its report-by-exception sensors
// (see rbeSensors in testdata/tinyplugin), file_value reading value, and
// returns it and the directory of its files.
func rbePlugin(t *testing.T, value string) (proto.PluginClient, string) {
	t.Helper()
	dir := t.TempDir()
	writeValue(t, dir, value)
	c, _ := sdktest.Start(t, MustBuildTiny(t), "TINYPLUGIN_RBE_DIR="+dir)
	return c, dir
}

// writeValue replaces file_value's file by rename, so that it never reads
// half of it.
func writeValue(t *testing.T, dir, v string) {
	t.Helper()
	tmp := filepath.Join(dir, "value.tmp")
	if err := os.WriteFile(tmp, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "value")); err != nil {
		t.Fatal(err)
	}
}

// waitSeen waits until file_value has read v.
func waitSeen(t *testing.T, dir, v string) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(dir, "seen")); string(b) == v {
			return
		}
		if time.Now().After(end) { // hang guard only
			t.Fatalf("file_value did not read %s within 30s", v)
		}
	}
}

// stream opens a Stream with req and returns a func receiving its next
// reading of sensor id (readings of others fail the test).
func stream(t *testing.T, c proto.PluginClient, req *proto.StreamRequest, id string) func() *proto.Reading {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // hang guard only
	t.Cleanup(cancel)
	st, err := c.Stream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return func() *proto.Reading {
		t.Helper()
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if r.Sensor != id {
			t.Fatalf("got a reading of %s, want only %s", r.Sensor, id)
		}
		return r
	}
}

func demand(d ...*proto.SensorDemand) *proto.StreamRequest {
	return &proto.StreamRequest{Demand: d}
}

func ms(v int64) *int64      { return &v }
func num(v float64) *float64 { return &v }

func number(r *proto.Reading) float64 { return r.GetNumber() }

// TestRBEHeartbeatOnly: a sensor whose value does not change is sent
// once, then only when its heartbeat (declared, or overridden by the
// demand) is due: never two readings closer than it.
func TestRBEHeartbeatOnly(t *testing.T) {
	c, _ := rbePlugin(t, "1")
	for _, tt := range []struct {
		name      string
		d         *proto.SensorDemand
		heartbeat int64
	}{
		{"declared", &proto.SensorDemand{Id: "steady_count"}, 300},
		{"overridden", &proto.SensorDemand{Id: "steady_count", HeartbeatMs: ms(600)}, 600},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := stream(t, c, demand(tt.d), "steady_count")
			prev := next()
			for range 3 {
				r := next()
				if number(r) != 7 {
					t.Errorf("value %v, want 7", number(r))
				}
				// t_ms is in whole milliseconds: allow the one lost.
				if gap := r.TMs - prev.TMs; gap < tt.heartbeat-1 {
					t.Fatalf("readings %d ms apart, want a heartbeat of %d ms between unchanged ones", gap, tt.heartbeat)
				}
				prev = r
			}
		})
	}
}

// TestRBEChange: a reading that moved by more than the deadband from the
// last one sent arrives at once (the heartbeat is an hour), one within it
// never does, and errors are sent as they appear and clear.
func TestRBEChange(t *testing.T) {
	c, dir := rbePlugin(t, "10")
	next := stream(t, c, demand(&proto.SensorDemand{Id: "file_value"}), "file_value")
	want := func(v float64) {
		t.Helper()
		if r := next(); r.Error != "" || number(r) != v {
			t.Fatalf("got %v %q, want %v", number(r), r.Error, v)
		}
	}
	want(10)
	// 10.3 is within 0.5 of 10: read, not sent. 10.6 is 0.6 from the 10
	// sent (0.3 from the 10.3 read): sent.
	writeValue(t, dir, "10.3")
	waitSeen(t, dir, "10.3")
	writeValue(t, dir, "10.6")
	want(10.6)
	writeValue(t, dir, "10.9")
	waitSeen(t, dir, "10.9")
	writeValue(t, dir, "10")
	want(10)
	// An error is sent when it appears, not again, and so is its end.
	writeValue(t, dir, "x")
	waitSeen(t, dir, "x")
	if r := next(); r.Error != "not a number: x" || r.Value != nil {
		t.Fatalf("got %v, want the error", r)
	}
	writeValue(t, dir, "10")
	want(10)
}

// TestRBEInterval: a sensor read every 10 ms, demanded every 250 ms, is
// read (tick_count counts its reads) and sent only that often: each
// reading is the next read, the k-th after the first at least k intervals
// after the Stream opened. No other sensor is read.
func TestRBEInterval(t *testing.T) {
	c, _ := rbePlugin(t, "1")
	opened := time.Now().UnixMilli()
	next := stream(t, c, demand(&proto.SensorDemand{Id: "tick_count", IntervalMs: 250}), "tick_count")
	first := next()
	for k := int64(1); k <= 3; k++ {
		r := next()
		if number(r) != number(first)+float64(k) {
			t.Fatalf("reading %d is read %v, want %v: a read was not sent", k, number(r), number(first)+float64(k))
		}
		if after := r.TMs - opened; after < 250*k {
			t.Fatalf("reading %d came %d ms after the Stream opened, want at least %d", k, after, 250*k)
		}
	}
}

// TestRBEIntervalNotFaster: a demanded interval shorter than the
// sensor's own is its own: door_open, read every hour, demanded every
// 10 ms, is read once while tick_count (every 10 ms) is read 50 times.
func TestRBEIntervalNotFaster(t *testing.T) {
	c, _ := rbePlugin(t, "1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard only
	defer cancel()
	off := func(id string, every int64) *proto.SensorDemand {
		return &proto.SensorDemand{Id: id, IntervalMs: every, Deadband: num(0), HeartbeatMs: ms(0)}
	}
	st, err := c.Stream(ctx, demand(off("door_open", 10), off("tick_count", 0)))
	if err != nil {
		t.Fatal(err)
	}
	door, first := 0, 0.0
	for {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.Sensor == "door_open" {
			door++
		} else if first == 0 {
			first = number(r)
		} else if number(r) >= first+50 {
			break
		}
	}
	if door != 1 {
		t.Errorf("door_open read %d times, want once", door)
	}
}

// TestRBEOldRequest: a Stream request without demand gets every reading,
// as from an SDK without the rule: a sensor with a deadband and an hour's heartbeat whose value
// does not change still arrives every interval.
func TestRBEOldRequest(t *testing.T) {
	c, _ := rbePlugin(t, "10")
	for _, req := range []*proto.StreamRequest{{Sensors: []string{"file_value"}}, {}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard only
		defer cancel()
		st, err := c.Stream(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < 3; {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("%v: readings of file_value: %d, then %v", req, n, err)
			}
			if r.Sensor == "file_value" {
				n++
			} else if len(req.Sensors) > 0 {
				t.Fatalf("%v: got a reading of %s", req, r.Sensor)
			}
		}
		cancel()
	}
}

// TestRBEStreams: each Stream has its own rule state: a second Stream
// gets the current value at once, though the first sent it already, and
// both get a change.
func TestRBEStreams(t *testing.T) {
	c, dir := rbePlugin(t, "10")
	req := demand(&proto.SensorDemand{Id: "file_value"})
	a := stream(t, c, req, "file_value")
	if r := a(); number(r) != 10 {
		t.Fatalf("first stream: %v, want 10", number(r))
	}
	b := stream(t, c, req, "file_value")
	if r := b(); number(r) != 10 {
		t.Fatalf("second stream: %v, want 10", number(r))
	}
	writeValue(t, dir, "20")
	for i, next := range []func() *proto.Reading{a, b} {
		if r := next(); number(r) != 20 {
			t.Errorf("stream %d: %v, want 20", i, number(r))
		}
	}
}

// TestRBEAll: all reads every sensor, those not in demand by their
// declared rule, and demand overrides the rest.
func TestRBEAll(t *testing.T) {
	c, _ := rbePlugin(t, "10")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard only
	defer cancel()
	// file_value with the rule off: every reading. steady_count by its
	// declared 300 ms heartbeat.
	st, err := c.Stream(ctx, &proto.StreamRequest{All: true, Demand: []*proto.SensorDemand{{Id: "file_value", Deadband: num(0), HeartbeatMs: ms(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var steady []int64
	for seen["file_value"] < 5 || seen["steady_count"] < 2 || seen["greeting_text"] < 1 {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", seen, err)
		}
		seen[r.Sensor]++
		if r.Sensor == "steady_count" {
			steady = append(steady, r.TMs)
		}
	}
	for i := 1; i < len(steady); i++ {
		if gap := steady[i] - steady[i-1]; gap < 299 {
			t.Errorf("steady_count readings %d ms apart, want its 300 ms heartbeat", gap)
		}
	}
}

// TestRBEBadDemand: a demand for a sensor the plugin does not have, or an
// invalid one, is refused.
func TestRBEBadDemand(t *testing.T) {
	c, _ := rbePlugin(t, "1")
	for _, tt := range []struct {
		req  *proto.StreamRequest
		want string
	}{
		{demand(&proto.SensorDemand{Id: "nope"}), `unknown sensor "nope"`},
		{demand(&proto.SensorDemand{Id: "tick_count", Deadband: num(-1)}), "deadband -1"},
		{demand(&proto.SensorDemand{Id: "tick_count"}, &proto.SensorDemand{Id: "tick_count"}), "listed once"},
		// sensors is ignored with demand: its unknown id too.
		{&proto.StreamRequest{Sensors: []string{"nope"}, Demand: []*proto.SensorDemand{{Id: "nope2"}}}, `unknown sensor "nope2"`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := c.Stream(ctx, tt.req)
		if err == nil {
			_, err = st.Recv()
		}
		cancel()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want InvalidArgument with %q", tt.req, err, tt.want)
		}
	}
}
