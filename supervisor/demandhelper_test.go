package supervisor

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/rbe"
)

// demandHelper is a helper plugin that honours demand (Description.demand),
// as an SDK plugin does, in raw proto so that it can tell the requests it
// got (its requests command) and misbehave on purpose. Its sensors:
//
//	count  a number read every 20 ms
//	slow   a number read every 100 ms, always 1: deadband 0.5, heartbeat
//	       1 min
//
// Modes:
//
//	demand  count counts up (every reading moves); no rule of its own
//	quiet   count stays at 7, with deadband 1 and no heartbeat, and slow
//	        has none either: after their first readings both may stay
//	        silent for ever
//	hush    count stays at 7, deadband 1, heartbeat 300 ms; it sends three
//	        readings, then hangs
//
// quiet and hush report by exception whatever they are asked (as if
// asked for it), so that a test of the watchdog tests only the watchdog.
type demandHelper struct {
	*helper

	mu       sync.Mutex
	requests []json.RawMessage
}

func newDemandHelper(mode string) *demandHelper {
	return &demandHelper{helper: &helper{mode: mode}}
}

func (h *demandHelper) Describe(ctx context.Context, req *proto.DescribeRequest) (*proto.Description, error) {
	d, err := h.helper.Describe(ctx, req)
	if err != nil {
		return nil, err
	}
	d.Demand = true
	count := &proto.SensorDesc{Id: "count", Title: "Counter", Type: proto.ValueType_NUMBER, IntervalMs: 20}
	switch h.mode {
	case "quiet":
		count.Deadband = 1
	case "hush":
		count.Deadband, count.HeartbeatMs = 1, 300
	}
	slow := &proto.SensorDesc{Id: "slow", Title: "Slow", Type: proto.ValueType_NUMBER, IntervalMs: 100, Deadband: 0.5, HeartbeatMs: 60000}
	if h.mode == "quiet" {
		slow.HeartbeatMs = 0
	}
	d.Sensors = []*proto.SensorDesc{count, slow}
	return d, nil
}

func (h *demandHelper) Stream(req *proto.StreamRequest, st proto.Plugin_StreamServer) error {
	if err := proto.CheckStreamRequest(req); err != nil {
		return grpcstatus.Error(codes.InvalidArgument, err.Error())
	}
	b, _ := protojson.Marshal(req)
	h.mu.Lock()
	h.requests = append(h.requests, b)
	h.mu.Unlock()
	streamsOpened.Add(1)
	streamsOpen.Add(1)
	defer streamsOpen.Add(-1)
	desc, _ := h.Describe(st.Context(), nil)
	demand := map[string]*proto.SensorDemand{}
	for _, d := range req.Demand {
		demand[d.Id] = d
	}
	var send sync.Mutex
	sent := 0
	var wg sync.WaitGroup
	for _, s := range desc.Sensors {
		d, ok := demand[s.Id]
		if !ok && !req.All && req.ByException() {
			continue
		}
		own := time.Duration(s.IntervalMs) * time.Millisecond
		every, rule := d.Every(own), d.Filter(s.Filter())
		if !req.ByException() && h.mode == "demand" {
			every, rule = own, rbe.Filter{}
		}
		wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for n := 1; ; n++ {
				v := 1.0
				if s.Id == "count" {
					v = 7
					if h.mode == "demand" {
						v = float64(n)
					}
				}
				now := time.Now()
				if rule.Pass(v, "", now) {
					send.Lock()
					if h.mode == "hush" && sent >= 3 {
						send.Unlock()
						<-st.Context().Done() // hung
						return
					}
					sent++
					err := st.Send(&proto.Reading{Sensor: s.Id, TMs: now.UnixMilli(), Value: &proto.Reading_Number{Number: v}})
					send.Unlock()
					if err != nil {
						return
					}
					readingsSent.Add(1)
				}
				select {
				case <-st.Context().Done():
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
	return nil
}

func (h *demandHelper) Do(ctx context.Context, req *proto.CommandRequest) (*proto.CommandResponse, error) {
	if req.Command == "requests" {
		h.mu.Lock()
		b, _ := json.Marshal(h.requests)
		h.mu.Unlock()
		return &proto.CommandResponse{ValueJson: b}, nil
	}
	return h.helper.Do(ctx, req)
}
