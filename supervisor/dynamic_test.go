package supervisor

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/wire"
)

// oldDynFile, in the plugins directory (the plugins' working directory),
// lists the sensors of helper_olddyn: ids separated by spaces. A dotfile:
// livecgid takes it for no plugin.
const oldDynFile = ".olddyn"

// oldDyn is a dynamic plugin as the SDK made them before Changes: it
// says that it changed only on an open Stream (a Reading with Changed),
// and answers Changes with Unimplemented. Its sensors are those listed
// in oldDynFile, which it reads every 20 ms.
type oldDyn struct {
	proto.UnimplementedPluginServer

	mu      sync.Mutex
	sensors []string
	changed chan struct{} // closed when sensors changes
}

func newOldDyn() *oldDyn {
	d := &oldDyn{changed: make(chan struct{})}
	d.sensors, _ = d.read()
	go func() {
		for range time.Tick(20 * time.Millisecond) {
			ids, ok := d.read()
			d.mu.Lock()
			if ok && !slices.Equal(ids, d.sensors) {
				d.sensors = ids
				close(d.changed)
				d.changed = make(chan struct{})
			}
			d.mu.Unlock()
		}
	}()
	return d
}

func (d *oldDyn) read() ([]string, bool) {
	b, err := os.ReadFile(oldDynFile)
	return strings.Fields(string(b)), err == nil
}

func (d *oldDyn) current() ([]string, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sensors, d.changed
}

func (d *oldDyn) Describe(context.Context, *proto.DescribeRequest) (*proto.Description, error) {
	ids, _ := d.current()
	desc := &proto.Description{Name: "olddyn", Dynamic: true}
	for _, id := range ids {
		desc.Sensors = append(desc.Sensors, &proto.SensorDesc{Id: id, Type: proto.ValueType_NUMBER, IntervalMs: 20})
	}
	return desc, nil
}

// Stream sends a reading of each sensor every 20 ms (none without
// sensors) and Changed when they change.
func (d *oldDyn) Stream(_ *proto.StreamRequest, st proto.Plugin_StreamServer) error {
	ids, changed := d.current()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for n := 1; ; n++ {
		for _, id := range ids {
			if err := st.Send(&proto.Reading{Sensor: id, TMs: time.Now().UnixMilli(), Value: &proto.Reading_Number{Number: float64(n)}}); err != nil {
				return err
			}
		}
		select {
		case <-st.Context().Done():
			return nil
		case <-changed:
			if err := st.Send(&proto.Reading{Changed: true}); err != nil {
				return err
			}
			ids, changed = d.current()
		case <-t.C:
		}
	}
}

// sensorIDs gives the sensors of plugin in a hello.
func sensorIDs(m map[string]any, plugin string) []string {
	var out []string
	for _, s := range m["sensors"].([]any) {
		if s := s.(map[string]any); s["plugin"] == plugin {
			out = append(out, fmt.Sprint(s["id"]))
		}
	}
	return out
}

// TestOldDynamicPlugin: a dynamic plugin that knows nothing of Changes
// still gets its first sensor to an open page (a Stream is opened for it
// while someone watches, though it has no sensor) and the sensors it
// gained while no one watched to the next page (it is described again
// when a Stream opens), with no reading dropped as undeclared.
func TestOldDynamicPlugin(t *testing.T) {
	ts := startSup(t, nil)
	sensors := func(ids string) {
		t.Helper()
		if err := os.WriteFile(ts.dir+"/"+oldDynFile, []byte(ids), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sensors("")
	installHelper(t, ts.dir, "olddyn")
	c := ts.dial(t)
	online(c, "helper_olddyn")

	sensors("a")
	c.next("hello with a", func(m map[string]any) bool {
		return m["type"] == wire.TypeHello && slices.Equal(sensorIDs(m, "helper_olddyn"), []string{"helper_olddyn.a"})
	})
	c.next("a reading of a", is("reading", "sensor", "helper_olddyn.a"))
	c.conn.CloseNow()
	waitFor(t, "no client", func() bool { return ts.Status().Clients == 0 })

	sensors("a b")
	c = ts.dial(t)
	c.next("hello with a and b", func(m map[string]any) bool {
		return m["type"] == wire.TypeHello && slices.Equal(sensorIDs(m, "helper_olddyn"), []string{"helper_olddyn.a", "helper_olddyn.b"})
	})
	c.next("a reading of b", is("reading", "sensor", "helper_olddyn.b"))
	if strings.Contains(ts.logs.String(), "undeclared") {
		t.Error("a reading of an undeclared sensor was dropped")
	}
}
