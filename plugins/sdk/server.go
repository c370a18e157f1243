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
type server struct {
	proto.UnimplementedPluginServer
	p Plugin
}

var _ proto.PluginServer = (*server)(nil)

func (s *server) Describe(context.Context, *proto.DescribeRequest) (*proto.Description, error) {
	return s.p.describe(), nil
}

// describe returns p's self-description, types defaulting to Number.
func (p Plugin) describe() *proto.Description {
	d := &proto.Description{Name: p.Name, Version: p.Version}
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

func (s *server) Stream(req *proto.StreamRequest, stream proto.Plugin_StreamServer) error {
	known := map[string]bool{}
	for _, x := range s.p.Sensors {
		known[x.ID] = true
	}
	want := map[string]bool{}
	for _, id := range req.Sensors {
		if !known[id] {
			return status.Errorf(codes.InvalidArgument, "unknown sensor %q", id)
		}
		want[id] = true
	}
	out := make(chan *proto.Reading, len(s.p.Sensors)+1)
	var wg sync.WaitGroup
	// Pollers stop when ctx ends: the caller cancelled, or Send failed.
	// cancel runs before wg.Wait (defers run last first).
	defer wg.Wait()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	for _, x := range s.p.Sensors {
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
			return nil
		case r := <-out:
			if err := stream.Send(r); err != nil {
				return err
			}
		}
	}
}

// poll reads x at once and then every Interval until ctx ends.
func poll(ctx context.Context, x Sensor, out chan<- *proto.Reading) {
	t := time.NewTicker(x.Interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, x.Interval)
		r := read(rctx, x)
		cancel()
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
	r = &proto.Reading{Sensor: x.ID, TMs: time.Now().UnixMilli()}
	if err != nil {
		r.Error = err.Error()
		return r
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
	for i := range s.p.Commands {
		if s.p.Commands[i].ID == req.Command {
			c = &s.p.Commands[i]
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
