package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// The test binary doubles as a plugin: linked into a plugins directory
// as "solo", it serves one sensor and one command through the SDK
// instead of running tests.

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "solo" {
		serveSolo()
		os.Exit(0)
	}
	// Race-enabled plugins sleep a second at exit by default.
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
	os.Exit(m.Run())
}

func serveSolo() {
	var n atomic.Int64
	sdk.Serve(sdk.Plugin{
		Name: "solo", Version: "1",
		Sensors: []sdk.Sensor{{ID: "count", Type: proto.ValueType_NUMBER, Interval: 20 * time.Millisecond,
			Read: func(context.Context) (sdk.Reading, error) { return sdk.Gauge(float64(n.Add(1))), nil }}},
		Commands: []sdk.Command{{ID: "echo", Args: []sdk.Arg{{Name: "v", Type: proto.ValueType_NUMBER, Required: true}},
			Do: func(_ context.Context, args map[string]any) (any, error) { return args["v"], nil }}},
	})
}

// waitUntil polls cond until it holds; the limit only bounds a failing
// test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestHostAlone runs a host on what its Options give and nothing else: a
// real fanout hub as its Publisher and Demand, and a plugins directory
// holding the test binary as plugin solo and under the reserved name.
// Described turns true once solo is online with its descriptors in the
// hub; solo streams only while a client is attached; Do runs its
// command; removing its file stops it and takes its descriptors away.
func TestHostAlone(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"solo", "livecgid"} {
		if err := os.Symlink(exe, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	hub := fanout.New(fanout.Options{Epoch: "e1", Version: "test", MaxClients: 4})
	hub.Start()
	tm := DefaultTiming()
	tm.Settle = 50 * time.Millisecond
	h := New(Options{
		Dir: dir, SocketDir: filepath.Join(t.TempDir(), "sockets"), Env: os.Environ(), Reserved: "livecgid",
		CommandTimeout: time.Second, Hub: hub, Demand: AllWhile(hub), Log: slog.New(slog.DiscardHandler), Timing: &tm,
	})
	pctx, stopPlugins := context.WithCancel(context.Background())
	if err := h.Start(pctx); err != nil {
		t.Fatal(err)
	}
	wctx, unwatch := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- h.Watch(wctx) }()
	t.Cleanup(func() {
		unwatch()
		if err := <-watched; err != nil {
			t.Errorf("Watch: %v", err)
		}
		stopPlugins()
		h.Wait()
		hub.Stop()
	})

	waitUntil(t, "the plugins described", func() bool { ok, _ := h.Described(); return ok })
	if p := hub.Plugin("solo"); p.State != wire.StateOnline || p.Version != "1" {
		t.Fatalf("solo in the hub: %+v, want online version 1", p)
	}
	if p := hub.Plugin("livecgid"); p.State != wire.StateRefused {
		t.Errorf("a file under the reserved name: %+v, want refused", p)
	}
	cmd, ok := hub.Command("solo.echo")
	if !ok {
		t.Fatal("solo.echo not in the hub")
	}
	if n := h.Streams(); n != 0 {
		t.Fatalf("%d streams open with nobody attached", n)
	}

	// A consumer: solo streams, and its readings reach the hub.
	c := hub.NewClient(fanout.ClientOptions{Control: func([]byte) {}})
	if err := hub.Attach(c); err != nil {
		t.Fatal(err)
	}
	var rs []wire.Reading
	for cur := uint64(0); len(rs) == 0; {
		published := hub.Published()
		if rs, cur = hub.Readings(c, cur, rs); len(rs) > 0 {
			break
		}
		select {
		case <-published:
		case <-time.After(30 * time.Second):
			t.Fatal("no reading with a client attached")
		}
	}
	if rs[0].Sensor != "solo.count" || h.Streams() != 1 {
		t.Fatalf("got %+v with %d streams, want solo.count with one", rs[0], h.Streams())
	}
	hub.Detach(c)
	waitUntil(t, "the stream closed", func() bool { return h.Streams() == 0 })

	args, err := ValidateArgs(cmd.Args, map[string]any{"v": json.Number("7")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if v, err := h.Do(ctx, "solo", "echo", "r1", args); err != nil || string(v) != "7" {
		t.Fatalf("Do: %s, %v; want 7", v, err)
	}
	if _, err := h.Do(ctx, "other", "echo", "r2", args); !errors.Is(err, ErrPluginOffline) {
		t.Fatalf("Do on no plugin: %v, want ErrPluginOffline", err)
	}

	if err := os.Remove(filepath.Join(dir, "solo")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "solo removed", func() bool {
		loaded, _, _ := h.Slot("solo")
		_, cmd := hub.Command("solo.echo")
		return !loaded && !cmd && hub.Plugin("solo").State == ""
	})
}

// testDemand is a Demand a test sets.
type testDemand struct {
	mu      sync.Mutex
	want    Want
	changed chan struct{}
}

func (d *testDemand) Want(string) (Want, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.want, d.changed
}

func (d *testDemand) set(w Want) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want = w
	if d.changed != nil {
		close(d.changed)
	}
	d.changed = make(chan struct{})
}

// TestHostDemandPerSensor runs the SDK plugin solo under a demand for
// its sensor at 300 ms (and for one it does not have, which its request
// leaves out: a static plugin refuses an id it has not): it streams, and
// its readings come at that interval, not its own 20 ms; with nothing
// wanted its stream closes.
func TestHostDemandPerSensor(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(dir, "solo")); err != nil {
		t.Fatal(err)
	}
	hub := fanout.New(fanout.Options{Epoch: "e1", Version: "test", MaxClients: 4})
	hub.Start()
	demand := &testDemand{}
	tm := DefaultTiming()
	tm.Settle = 50 * time.Millisecond
	h := New(Options{
		Dir: dir, SocketDir: filepath.Join(t.TempDir(), "sockets"), Env: os.Environ(),
		CommandTimeout: time.Second, Hub: hub, Demand: demand, Log: slog.New(slog.DiscardHandler), Timing: &tm,
	})
	ctx, stop := context.WithCancel(context.Background())
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	watched := make(chan error, 1)
	go func() { watched <- h.Watch(ctx) }()
	t.Cleanup(func() {
		stop()
		<-watched
		h.Wait()
		hub.Stop()
	})
	waitUntil(t, "solo described", func() bool { ok, _ := h.Described(); return ok })
	if h.Streams() != 0 {
		t.Fatal("a stream with nothing wanted")
	}
	demand.set(Want{Sensors: []*proto.SensorDemand{{Id: "count", IntervalMs: 300}, {Id: "nope", IntervalMs: 300}}})
	var ts []int64
	waitUntil(t, "three readings", func() bool {
		if r, ok := hub.Last("solo.count"); ok && (len(ts) == 0 || r.T != ts[len(ts)-1]) {
			ts = append(ts, r.T)
		}
		return len(ts) >= 3
	})
	for i := 1; i < len(ts); i++ {
		if gap := ts[i] - ts[i-1]; gap < 250 {
			t.Errorf("readings %d ms apart, want about 300 (the demanded interval)", gap)
		}
	}
	demand.set(Want{})
	waitUntil(t, "the stream closed", func() bool { return h.Streams() == 0 })
}
