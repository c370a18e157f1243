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
// plugin with Changes is dynamic.
func (p Plugin) describe() *proto.Description {
	d := &proto.Description{Name: p.Name, Version: p.Version, Title: p.Title, Dynamic: p.Changes != nil}
	for _, x := range p.Sensors {
		t := x.Type
		if t == proto.ValueType_VALUE_TYPE_UNSPECIFIED {
			t = Number
		}
		d.Sensors = append(d.Sensors, &proto.SensorDesc{
			Id: x.ID, Title: x.Title, Unit: x.Unit, Type: t, IntervalMs: x.Interval.Milliseconds(),
		})
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

// Stream runs a reader per sensor (of those asked for; all by default)
// and sends their readings. When a dynamic plugin changes, it stops the
// readers, sends what they read, then a Reading with Changed set, and
// starts the readers of the new sensors.
func (s *server) Stream(req *proto.StreamRequest, stream proto.Plugin_StreamServer) error {
	p, changed := s.current()
	known := map[string]bool{}
	for _, x := range p.Sensors {
		known[x.ID] = true
	}
	want := map[string]bool{}
	for _, id := range req.Sensors {
		if !known[id] && changed == nil {
			return status.Errorf(codes.InvalidArgument, "unknown sensor %q", id)
		}
		want[id] = true
	}
	out := make(chan *proto.Reading, 16)
	for {
		more, err := s.streamGen(stream, p.Sensors, want, changed, out)
		if !more {
			return err
		}
		if err := stream.Send(&proto.Reading{Changed: true, TMs: time.Now().UnixMilli()}); err != nil {
			return err
		}
		p, changed = s.current()
	}
}

// streamGen sends the readings of sensors until the stream ends (false)
// or changed is closed (true, once the readers have stopped and what they
// read is sent).
func (s *server) streamGen(stream proto.Plugin_StreamServer, sensors []Sensor, want map[string]bool, changed <-chan struct{}, out chan *proto.Reading) (bool, error) {
	var wg sync.WaitGroup
	// Pollers stop when ctx ends: the caller cancelled, Send failed or the
	// plugin changed. cancel runs before wg.Wait (defers run last first).
	defer wg.Wait()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	for _, x := range sensors {
		if len(want) > 0 && !want[x.ID] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			poll(ctx, x, out)
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

// poll reads x at once and then every Interval until ctx ends; a Watch
// sensor sends its readings itself.
func poll(ctx context.Context, x Sensor, out chan<- *proto.Reading) {
	if x.Watch != nil {
		x.Watch(ctx, func(v Reading, err error) {
			select {
			case out <- toProto(x.ID, v, err):
			case <-ctx.Done():
			}
		})
		return
	}
	t := time.NewTicker(x.Interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, x.Interval)
		r := read(rctx, x)
		cancel()
		if ctx.Err() != nil {
			return // stopped while reading: the reading would only say so
		}
		select {
		case out <- r:
		case <-ctx.Done():
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func read(ctx context.Context, x Sensor) (r *proto.Reading) {
	defer func() {
		if p := recover(); p != nil {
			r = &proto.Reading{Sensor: x.ID, TMs: time.Now().UnixMilli(), Error: fmt.Sprintf("read panicked: %v", p)}
		}
	}()
	v, err := x.Read(ctx)
	return toProto(x.ID, v, err)
}

// toProto makes the reading of sensor id from what Read returned.
func toProto(id string, v Reading, err error) *proto.Reading {
	r := &proto.Reading{Sensor: id, TMs: time.Now().UnixMilli()}
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
