package sdk

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/livecgi/livecgi/proto"
)

// chanStream is a server stream (Stream, Changes) that hands every
// message to a channel.
type chanStream[T any] struct {
	grpc.ServerStream
	ctx context.Context
	out chan *T
}

func (c *chanStream[T]) Context() context.Context { return c.ctx }

func (c *chanStream[T]) Send(r *T) error {
	select {
	case c.out <- r:
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
}

// serve runs call (a server-streaming RPC of the plugin) on a
// chanStream until stop, which returns the RPC's error; next returns its
// next message, failing the test if the RPC ends first.
func serve[T any](t *testing.T, call func(*chanStream[T]) error) (next func(what string) *T, stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	st := &chanStream[T]{ctx: ctx, out: make(chan *T)}
	done := make(chan error, 1)
	go func() { done <- call(st) }()
	t.Cleanup(cancel)
	next = func(what string) *T {
		t.Helper()
		select {
		case m := <-st.out:
			return m
		case err := <-done:
			t.Fatalf("the stream ended before %s: %v", what, err)
		case <-time.After(30 * time.Second): // hang guard only
			t.Fatalf("no %s within 30s", what)
		}
		return nil
	}
	return next, func() error { cancel(); return <-done }
}

// TestChanges: a dynamic plugin's new definition stops the old readers,
// sends Changed, and then only the new sensors' readings; Describe shows
// the new sensors and says the plugin is dynamic.
func TestChanges(t *testing.T) {
	changes := make(chan Plugin)
	s := newServer(Plugin{Name: "d", Changes: changes, Sensors: []Sensor{{ID: "a", Interval: MinInterval, Read: readConst(Gauge(1))}}})
	d, err := s.Describe(context.Background(), nil)
	if err != nil || !d.Dynamic || len(d.Sensors) != 1 {
		t.Fatalf("Describe = %v, %v; want dynamic with sensor a", d, err)
	}
	next, stop := serve(t, func(st *chanStream[proto.Reading]) error { return s.Stream(&proto.StreamRequest{}, st) })
	recv := func() *proto.Reading { t.Helper(); return next("a reading") }
	if r := recv(); r.Sensor != "a" {
		t.Fatalf("got %v, want a reading of a", r)
	}
	last := errors.New("garbage")
	changes <- Plugin{Sensors: []Sensor{{ID: "b", Interval: time.Hour, Watch: func(ctx context.Context, send func(Reading, error)) {
		send(Last(Gauge(7)), last)
		<-ctx.Done()
	}}}}
	for r := recv(); !r.Changed; r = recv() {
		if r.Sensor != "a" {
			t.Fatalf("before Changed: %v", r)
		}
	}
	r := recv()
	if r.Sensor != "b" || r.GetNumber() != 7 || r.Error != "garbage" {
		t.Errorf("got %v, want b's last value 7 with its error", r)
	}
	if d, _ := s.Describe(context.Background(), nil); len(d.Sensors) != 1 || d.Sensors[0].Id != "b" {
		t.Errorf("Describe after the change = %v", d)
	}
	if err := stop(); err != nil {
		t.Errorf("Stream: %v", err)
	}
}

// TestChangesRPC: Changes says at once that it is open, then once per
// change, with no Stream open (a plugin with nothing to stream, as the
// exec plugin over an empty directory); a static plugin has none.
func TestChangesRPC(t *testing.T) {
	changes := make(chan Plugin)
	s := newServer(Plugin{Name: "d", Changes: changes})
	recv, stop := serve(t, func(st *chanStream[proto.Change]) error { return s.Changes(&proto.ChangesRequest{}, st) })
	recv("the first Change")
	changes <- Plugin{Commands: []Command{{ID: "go", Do: func(context.Context, map[string]any) (any, error) { return nil, nil }}}}
	recv("the Change after a new command")
	if d, _ := s.Describe(context.Background(), nil); len(d.Commands) != 1 || d.Commands[0].Id != "go" {
		t.Errorf("Describe after the change = %v", d)
	}
	changes <- Plugin{}
	recv("the Change after removing it")
	if err := stop(); err != nil {
		t.Errorf("Changes: %v", err)
	}

	static := newServer(Plugin{Name: "s", Sensors: []Sensor{{ID: "a", Interval: MinInterval, Read: readConst(Gauge(1))}}})
	err := static.Changes(&proto.ChangesRequest{}, &chanStream[proto.Change]{ctx: context.Background(), out: make(chan *proto.Change)})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Changes of a static plugin = %v, want Unimplemented", err)
	}
}

// TestChangesDemand: a Stream with all and demand reads the sensors a
// dynamic plugin adds later, each by its rule, and a demanded sensor it
// did not have yet once it comes; readers start afresh after a change (the
// first reading of each is sent), and a Watch sensor's readings pass the
// rule too.
func TestChangesDemand(t *testing.T) {
	changes := make(chan Plugin)
	steady := func(id string, v float64) Sensor {
		return Sensor{ID: id, Interval: MinInterval, Heartbeat: time.Hour, Read: readConst(Gauge(v))}
	}
	s := newServer(Plugin{Name: "d", Changes: changes, Sensors: []Sensor{steady("a", 1)}})
	// c is demanded with its rule off; it does not exist yet.
	req := &proto.StreamRequest{All: true, Demand: []*proto.SensorDemand{{Id: "c", Deadband: new(0.0)}}}
	next, stop := serve(t, func(st *chanStream[proto.Reading]) error { return s.Stream(req, st) })
	recv := func() *proto.Reading { t.Helper(); return next("a reading") }
	if r := recv(); r.Sensor != "a" {
		t.Fatalf("got %v, want a", r)
	}
	c := Sensor{ID: "c", Interval: time.Hour, Heartbeat: time.Hour, Deadband: 5, Watch: func(ctx context.Context, send func(Reading, error)) {
		for _, v := range []float64{3, 3, 4, 4, 3} {
			send(Gauge(v), nil)
		}
		<-ctx.Done()
	}}
	changes <- Plugin{Sensors: []Sensor{steady("a", 1), steady("b", 2), c}}
	if r := recv(); !r.Changed {
		t.Fatalf("before Changed: %v (a is sent once an hour)", r)
	}
	got := map[string][]float64{}
	for len(got["a"]) < 1 || len(got["b"]) < 1 || len(got["c"]) < 3 {
		r := recv()
		got[r.Sensor] = append(got[r.Sensor], r.GetNumber())
	}
	// c: deadband 0 demanded (over its own 5): every change, no repeat.
	if fmt.Sprint(got) != "map[a:[1] b:[2] c:[3 4 3]]" {
		t.Errorf("after the change: %v, want a and b once each, c 3 4 3", got)
	}
	if err := stop(); err != nil {
		t.Errorf("Stream: %v", err)
	}
}
