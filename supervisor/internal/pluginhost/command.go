package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/livecgi/livecgi/proto"
)

// ErrNoAnswer is Do's error when ctx ended first: the caller says within
// what time.
var ErrNoAnswer = errors.New("no answer in time")

// Do runs command cmd of plugin id with validated JSON args (ValidateArgs).
func (m *Host) Do(ctx context.Context, id, cmd, reqID string, args []byte) (json.RawMessage, error) {
	sl := m.slot(id)
	if sl == nil {
		return nil, ErrPluginOffline
	}
	for range 3 { // an instance being swapped out refuses new work; take the next
		inst := sl.cur.Load()
		if inst == nil {
			return nil, ErrPluginOffline
		}
		if !inst.acquire() {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		resp, err := inst.rpc.Do(ctx, &proto.CommandRequest{Id: reqID, Command: cmd, ArgsJson: args})
		inst.release()
		if err != nil {
			// The plugin's side of the deadline can fire a moment before
			// ours: its answer is then DeadlineExceeded with ctx still live.
			if ctx.Err() != nil || grpcstatus.Code(err) == codes.DeadlineExceeded {
				return nil, ErrNoAnswer
			}
			return nil, fmt.Errorf("plugin %s: %w", id, err)
		}
		if resp.Error != "" {
			return nil, errors.New(resp.Error)
		}
		if len(resp.ValueJson) > 0 && !json.Valid(resp.ValueJson) {
			return nil, fmt.Errorf("plugin %s returned a result that is not JSON", id)
		}
		return resp.ValueJson, nil
	}
	return nil, ErrPluginOffline
}

func (in *instance) acquire() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.draining {
		return false
	}
	in.inflight++
	return true
}

func (in *instance) release() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.inflight--
	if in.draining && in.inflight == 0 {
		close(in.idle)
	}
}
