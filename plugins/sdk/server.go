package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/rbe"
)

// server implements the Plugin gRPC service over a Plugin definition.
// A dynamic plugin's definition changes: the goroutine reading its
// Changes replaces p and closes changed (then makes a new one) under mu.
type server struct {
	proto.UnimplementedPluginServer

	mu      sync.Mutex
	p       Plugin
	changed chan struct{} // closed when p changes; nil for a static plugin
}

var _ proto.PluginServer = (*server)(nil)

// newServer serves p and follows its Changes.
func newServer(p Plugin) *server {
	s := &server{p: p}
	if p.Changes != nil {
		s.changed = make(chan struct{})
		go s.follow(p.Changes)
	}
	return s
}

// follow applies each new definition; an invalid one is logged and
// ignored.
func (s *server) follow(changes <-chan Plugin) {
	for next := range changes {
		s.mu.Lock()
		next.Name, next.Version, next.Title, next.Changes, next.Close = s.p.Name, s.p.Version, s.p.Title, s.p.Changes, s.p.Close
		if err := next.validate(); err != nil {
			s.mu.Unlock()
			Logger().Error("invalid plugin definition ignored", "err", err)
			continue
		}
		s.p = next
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// current returns the definition now and a channel closed when it changes.
func (s *server) current() (Plugin, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p, s.changed
}

func (s *server) Describe(context.Context, *proto.DescribeRequest) (*proto.Description, error) {
	p, _ := s.current()
	return p.describe(), nil
}

// describe returns p's self-description, types defaulting to Number; a
// plugin with Changes is dynamic; every SDK plugin honours demand.
func (p Plugin) describe() *proto.Description {
	d := &proto.Description{Name: p.Name, Version: p.Version, Title: p.Title, Dynamic: p.Changes != nil, Demand: true}
	for _, x := range p.Sensors {
		d.Sensors = append(d.Sensors, x.describe())
	}
	for _, c := range p.Commands {
		cd := &proto.CommandDesc{Id: c.ID, Title: c.Title}
		for _, a := range c.Args {
			t := a.Type
			if t == proto.ValueType_VALUE_TYPE_UNSPECIFIED {
				t = Number
			}
			cd.Args = append(cd.Args, &proto.Arg{
				Name: a.Name, Title: a.Title, Type: t, Required: a.Required, Min: a.Min, Max: a.Max, Enum: a.Enum,
			})
		}
		d.Commands = append(d.Commands, cd)
	}
	return d
}

// describe returns x's self-description, its type defaulting to Number.
// Its interval and heartbeat are whole milliseconds: the SDK reads and
// filters by what it declared.
func (x Sensor) describe() *proto.SensorDesc {
	t := x.Type
	if t == proto.ValueType_VALUE_TYPE_UNSPECIFIED {
		t = Number
	}
	return &proto.SensorDesc{
		Id: x.ID, Title: x.Title, Unit: x.Unit, Type: t, IntervalMs: x.Interval.Milliseconds(),
		Deadband: x.Deadband, HeartbeatMs: x.Heartbeat.Milliseconds(),
	}
}

// Changes sends a Change at once and then one whenever a dynamic
// plugin's definition changed, until the caller cancels: livecgid keeps
// it open for the plugin's life and describes the plugin again after
// each, whether or not a Stream is open. Changes that come faster than
// they are sent make one Change. A static plugin answers Unimplemented.
func (s *server) Changes(_ *proto.ChangesRequest, stream proto.Plugin_ChangesServer) error {
	_, changed := s.current()
	if changed == nil {
		return status.Error(codes.Unimplemented, "the plugin is not dynamic")
	}
	for {
		if err := stream.Send(&proto.Change{}); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
		_, changed = s.current()
	}
}

// Stream runs a reader per sensor the request asks for (see
// proto.StreamRequest) and sends their readings. When a dynamic plugin
// changes, it stops the readers, sends what they read, then a Reading with
// Changed set, and starts the readers of the new sensors, asked for by the
// same request. Each Stream has readers and rule state of its own: two
// open Streams read every sensor they ask for twice.
func (s *server) Stream(req *proto.StreamRequest, stream proto.Plugin_StreamServer) error {
	if err := proto.CheckStreamRequest(req); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	p, changed := s.current()
	known := map[string]bool{}
	for _, x := range p.Sensors {
		known[x.ID] = true
	}
	asked := req.Sensors
	if req.ByException() {
		asked = nil
		for _, d := range req.Demand {
			asked = append(asked, d.Id)
		}
	}
	for _, id := range asked {
		if !known[id] && changed == nil {
			return status.Errorf(codes.InvalidArgument, "unknown sensor %q", id)
		}
	}
	out := make(chan *proto.Reading, 16)
	for {
		more, err := s.streamGen(stream, readers(req, p.Sensors), changed, out)
		if !more {
			return err
		}
		if err := stream.Send(&proto.Reading{Changed: true, TMs: time.Now().UnixMilli()}); err != nil {
			return err
		}
		p, changed = s.current()
	}
}

// reader is one sensor as a Stream reads it: how often, and which of its
// readings it sends.
type reader struct {
	x     Sensor
	every time.Duration // Read's interval; a Watch sensor sends as it reads
	rule  rbe.Filter    // off for a request without demand
}

// readers returns the readers of the sensors req asks for: without
// demand, those named in req.Sensors (all when empty), each at its own
// interval with every reading sent; with demand or all, those demanded
// (every one with all), each at its demanded interval (never faster than
// its own) and by its rule, the demand's overrides over the declared one.
func readers(req *proto.StreamRequest, sensors []Sensor) []reader {
	var rs []reader
	if !req.ByException() {
		want := map[string]bool{}
		for _, id := range req.Sensors {
			want[id] = true
		}
		for _, x := range sensors {
			if len(want) == 0 || want[x.ID] {
				rs = append(rs, reader{x: x, every: x.Interval})
			}
		}
		return rs
	}
	demand := map[string]*proto.SensorDemand{}
	for _, d := range req.Demand {
		demand[d.Id] = d
	}
	for _, x := range sensors {
		d, ok := demand[x.ID]
		if !ok && !req.All {
			continue
		}
		desc := x.describe()
		rs = append(rs, reader{x: x, every: d.Every(time.Duration(desc.IntervalMs) * time.Millisecond), rule: d.Filter(desc.Filter())})
	}
	return rs
}

// streamGen sends the readings of rs until the stream ends (false) or
// changed is closed (true, once the readers have stopped and what they
// read is sent).
func (s *server) streamGen(stream proto.Plugin_StreamServer, rs []reader, changed <-chan struct{}, out chan *proto.Reading) (bool, error) {
	var wg sync.WaitGroup
	// Pollers stop when ctx ends: the caller cancelled, Send failed or the
	// plugin changed. cancel runs before wg.Wait (defers run last first).
	defer wg.Wait()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	t0 := time.Now()
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			poll(ctx, r, t0, out)
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-changed:
			cancel()
			wg.Wait()
			for {
				select {
				case r := <-out:
					if err := stream.Send(r); err != nil {
						return false, err
					}
				default:
					return true, nil
				}
			}
		case r := <-out:
			if err := stream.Send(r); err != nil {
				return false, err
			}
		}
	}
}

// poll reads r's sensor at once and then at t0 + k·r.every (k = 1, 2, …;
// one skipped when a read overran it) until ctx ends, and hands on the
// readings r.rule passes; a Watch sensor sends its readings itself,
// through the rule. The rule's state lives here, with the one reader of
// its sensor on this Stream.
//
// Every reader of a Stream counts from the same t0, so readers whose
// intervals are multiples of one another (the system plugin's 1 s and
// 5 s) wake the process together, once per tick, rather than each at
// its own phase: an idle plugin's CPU goes mostly to waking up, not to
// reading (BenchmarkStreamRBE, plugin-runs/s).
func poll(ctx context.Context, r reader, t0 time.Time, out chan<- *proto.Reading) {
	rule := r.rule
	emit := func(p *proto.Reading, now time.Time) bool {
		if !rule.Pass(value(p), p.Error, now) {
			return true
		}
		select {
		case out <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	x := r.x
	if x.Watch != nil {
		var mu sync.Mutex // guards rule: send may be called from several goroutines
		x.Watch(ctx, func(v Reading, err error) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			emit(toProto(x.ID, v, err, now), now)
		})
		return
	}
	var t *time.Timer
	for {
		rctx, cancel := context.WithTimeout(ctx, x.Interval)
		p, now := read(rctx, x)
		cancel()
		if ctx.Err() != nil {
			return // stopped while reading: the reading would only say so
		}
		if !emit(p, now) {
			return
		}
		// The next tick after now: monotonic, the same instant for every
		// reader that shares it.
		next := t0.Add((time.Since(t0)/r.every + 1) * r.every)
		if t == nil {
			t = time.NewTimer(time.Until(next))
			defer t.Stop()
		} else {
			t.Reset(time.Until(next))
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// value returns a reading's value as rbe.Filter.Pass takes it.
func value(r *proto.Reading) any {
	switch v := r.Value.(type) {
	case *proto.Reading_Number:
		return v.Number
	case *proto.Reading_Text:
		return v.Text
	case *proto.Reading_Flag:
		return v.Flag
	}
	return nil
}

// read reads x once and returns the reading and when Read returned (the
// reading's t_ms).
func read(ctx context.Context, x Sensor) (r *proto.Reading, now time.Time) {
	defer func() {
		if p := recover(); p != nil {
			now = time.Now()
			r = &proto.Reading{Sensor: x.ID, TMs: now.UnixMilli(), Error: fmt.Sprintf("read panicked: %v", p)}
		}
	}()
	v, err := x.Read(ctx)
	now = time.Now()
	return toProto(x.ID, v, err, now), now
}

// toProto makes the reading of sensor id, read at now, from what Read
// returned.
func toProto(id string, v Reading, err error, now time.Time) *proto.Reading {
	r := &proto.Reading{Sensor: id, TMs: now.UnixMilli()}
	if err != nil {
		r.Error = err.Error()
		if !v.last {
			return r
		}
	}
	switch v.typ {
	case Text:
		r.Value = &proto.Reading_Text{Text: v.text}
	case Bool:
		r.Value = &proto.Reading_Flag{Flag: v.flag}
	default:
		r.Value = &proto.Reading_Number{Number: v.number}
	}
	return r
}

func (s *server) Do(ctx context.Context, req *proto.CommandRequest) (resp *proto.CommandResponse, err error) {
	var c *Command
	p, _ := s.current()
	for i := range p.Commands {
		if p.Commands[i].ID == req.Command {
			c = &p.Commands[i]
		}
	}
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "unknown command %q", req.Command)
	}
	args := map[string]any{}
	if len(req.ArgsJson) > 0 {
		if err := json.Unmarshal(req.ArgsJson, &args); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "args: %v", err)
		}
	}
	defer func() {
		if p := recover(); p != nil {
			resp, err = &proto.CommandResponse{Error: fmt.Sprintf("command panicked: %v", p)}, nil
		}
	}()
	v, err := c.Do(ctx, args)
	if err != nil {
		return &proto.CommandResponse{Error: err.Error()}, nil
	}
	b, err := marshalResult(v)
	if err != nil {
		return &proto.CommandResponse{Error: "result: " + err.Error()}, nil
	}
	return &proto.CommandResponse{ValueJson: b}, nil
}
