package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/wire"
)

// loop owns the slot's process: start, watch, restart with backoff, swap.
func (sl *slot) loop(ctx context.Context) {
	m := sl.m
	backoff := time.Duration(0)
	unavailable := "" // the reason shown, while the plugin says it has nothing to serve
	retry := time.NewTimer(0)
	defer retry.Stop()
	// The watchdog runs only while someone consumes readings: an idle
	// plugin reads nothing and must not be taken for a hung one.
	watchdog := time.NewTicker(time.Second)
	watchdog.Stop()
	defer watchdog.Stop()
	watching := false
	defer func() {
		if in := sl.cur.Swap(nil); in != nil {
			in.stop(m.cmdTO)
		}
	}()
	for {
		cur := sl.cur.Load()
		var done <-chan struct{}
		if cur != nil {
			done = cur.done
		}
		active, changed := m.demand.state()
		if want := active && cur != nil && cur.minEvery.Load() > 0; want != watching {
			watching = want
			if want {
				watchdog.Reset(time.Second)
			} else {
				watchdog.Stop()
			}
		}
		select {
		case <-changed:
			continue

		case <-ctx.Done():
			return

		case <-sl.remove:
			if in := sl.cur.Swap(nil); in != nil {
				in.stop(m.cmdTO)
			}
			sl.log.Info("plugin removed")
			m.hub.setPlugin(sl.id, nil, nil, nil, &wire.Status{Plugin: sl.id, State: wire.StateRemoved, Reason: "binary removed"})
			return

		case <-retry.C:
			if cur != nil {
				continue
			}
			in, err := sl.start(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, ErrRefused) {
					// No point retrying the same file: a change to it
					// (chmod, chown, a new binary) or to the directory
					// starts it again.
					sl.log.Error("plugin refused", "reason", err)
					m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateRefused, Reason: err.Error()})
					unavailable = ""
					continue
				}
				var un *unavailableError
				if errors.As(err, &un) {
					// Its own word: no restart loop. A new binary (swap),
					// the directory (kick) or, rarely, the timer tries again.
					backoff = 0
					if un.reason != unavailable {
						unavailable = un.reason
						sl.log.Info("plugin has nothing to serve here", "reason", un.reason, "retry_in", m.timing.unavailableRetry)
						// Sensors a former run declared are gone, not stale.
						m.hub.setPlugin(sl.id, &wire.PluginInfo{ID: sl.id, State: wire.StateUnavailable, Reason: un.reason}, nil, nil,
							&wire.Status{Plugin: sl.id, State: wire.StateUnavailable, Reason: un.reason})
					} else {
						sl.log.Debug("plugin still has nothing to serve here", "reason", un.reason)
					}
					retry.Reset(m.timing.unavailableRetry)
					continue
				}
				unavailable = ""
				m.restarts.Add(1)
				backoff = m.timing.nextBackoff(backoff)
				sl.log.Error("plugin failed to start", "err", err, "retry_in", backoff)
				m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateRestarting, Reason: err.Error()})
				retry.Reset(backoff)
				continue
			}
			unavailable = ""
			sl.activate(in, wire.Status{Plugin: sl.id, State: wire.StateOnline, Version: in.desc.Version})

		case <-done:
			reason := "plugin exited"
			if cur.err != nil {
				reason = "plugin exited: " + cur.err.Error()
			}
			sl.crashed(cur, reason, &backoff, retry)

		case <-watchdog.C:
			if cur == nil || cur.minEvery.Load() == 0 || !cur.streaming.Load() {
				continue
			}
			limit := max(3*time.Duration(cur.minEvery.Load()), 5*time.Second)
			if quiet := time.Since(time.Unix(0, cur.lastRead.Load())); quiet > limit {
				sl.crashed(cur, fmt.Sprintf("plugin hung: no reading for %v", quiet.Round(time.Second)), &backoff, retry)
			}

		case <-sl.kick:
			if cur == nil {
				backoff = 0
				retry.Reset(0)
			}

		case <-sl.swap:
			if cur == nil {
				backoff = 0
				retry.Reset(0)
				continue
			}
			in, err := sl.start(ctx)
			if err != nil {
				sl.log.Error("new binary refused, old one keeps serving", "err", err)
				m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateSwapFailed, Reason: err.Error(), Version: cur.desc.Version})
				continue
			}
			sl.log.Info("plugin swapped", "old_version", cur.desc.Version, "new_version", in.desc.Version)
			sl.activate(in, wire.Status{Plugin: sl.id, State: wire.StateSwapped, Version: in.desc.Version, PreviousVersion: cur.desc.Version})
			m.wg.Go(func() { cur.stop(m.cmdTO) }) // Run waits for it before stopping the hub
		}
	}
}

// crashed handles a plugin process that died or hung: offline now,
// restarting after the backoff.
func (sl *slot) crashed(cur *instance, reason string, backoff *time.Duration, retry *time.Timer) {
	m := sl.m
	sl.cur.CompareAndSwap(cur, nil)
	m.wg.Go(func() { cur.stop(0) })
	m.restarts.Add(1)
	if time.Since(cur.started) > m.timing.backoffReset {
		*backoff = 0
	}
	*backoff = m.timing.nextBackoff(*backoff)
	sl.log.Warn("plugin down, restarting", "reason", reason, "retry_in", *backoff)
	m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateOffline, Reason: reason, Version: cur.desc.Version})
	m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateRestarting, Reason: fmt.Sprintf("restart in %v", *backoff)})
	retry.Reset(*backoff)
}

func (t *timing) nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		return t.backoffMin
	}
	return min(2*b, t.backoffMax)
}

// activate makes in the slot's current instance, publishes its
// descriptors and starts its run.
func (sl *slot) activate(in *instance, st wire.Status) {
	sensors, commands := describe(sl.id, in.desc)
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	sl.cur.Store(in)
	sl.m.hub.setPlugin(sl.id, &wire.PluginInfo{ID: sl.id, State: st.State, Version: in.desc.Version, Title: in.desc.GetTitle()}, sensors, commands, &st)
	go sl.run(ctx, in)
}

// run streams in's readings to the hub while someone consumes them and
// leaves the plugin idle (no Stream open: its sensors are not read)
// while no one does, until ctx ends or the plugin is gone.
func (sl *slot) run(ctx context.Context, in *instance) {
	defer close(in.done)
	for ctx.Err() == nil {
		active, changed := sl.m.demand.state()
		sctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed:
				cancel()
			case <-sctx.Done():
			}
		}()
		var err error
		if active && len(in.types) > 0 {
			err = sl.stream(sctx, in)
		} else {
			err = idle(sctx, in.conn)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			in.err = err
			return
		}
	}
}

// idle waits, with no Stream open, until ctx ends (nil) or conn breaks: the
// plugin process is gone.
func idle(ctx context.Context, conn *grpc.ClientConn) error {
	for {
		st := conn.GetState()
		if st != connectivity.Ready {
			return errors.New("its connection closed")
		}
		if !conn.WaitForStateChange(ctx, st) {
			return nil
		}
	}
}

// stream feeds in's readings to the hub until ctx ends (nil) or the
// stream fails.
func (sl *slot) stream(ctx context.Context, in *instance) error {
	in.lastRead.Store(time.Now().UnixNano())
	st, err := in.rpc.Stream(ctx, &proto.StreamRequest{})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	sl.m.streams.Add(1)
	in.streaming.Store(true)
	defer func() {
		in.streaming.Store(false)
		sl.m.streams.Add(-1)
	}()
	warned := map[string]bool{}
	for {
		r, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		in.lastRead.Store(time.Now().UnixNano())
		if r.Changed {
			// Describe before reading on: the readings that follow may be
			// of the new sensors.
			if err := sl.redescribe(ctx, in); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			continue
		}
		if sl.cur.Load() != in {
			continue // swapped out: the new instance feeds the sensors now
		}
		wr, err := toWire(sl.id, in, r)
		if err != nil && !warned[r.Sensor] {
			warned[r.Sensor] = true // once per sensor and process: a lying plugin must not flood the log
			sl.log.Warn("bad reading", "err", err)
		}
		if wr.Sensor != "" {
			sl.m.hub.publish(wr)
		}
	}
}

// redescribe reads the description of a dynamic plugin again after it
// said on its stream that it changed, and publishes the new descriptors
// as a swap would: sensors that are gone disappear from the pages, new
// ones appear, and no client is dropped. A description that fails the
// checks ends the stream (the plugin is restarted).
func (sl *slot) redescribe(ctx context.Context, in *instance) error {
	dctx, cancel := context.WithTimeout(ctx, sl.m.timing.describe)
	desc, err := in.rpc.Describe(dctx, &proto.DescribeRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("describe again: %w", err)
	}
	next := &instance{desc: desc, types: map[string]proto.ValueType{}, cmds: map[string]bool{}}
	if !desc.Dynamic {
		return errors.New("describe again: plugin said it changed but is not dynamic")
	}
	if err := next.check(); err != nil {
		return fmt.Errorf("describe again: %w", err)
	}
	// types is read only by this goroutine; desc by the slot's loop for
	// its Version, which a redescription keeps.
	in.types, in.cmds = next.types, next.cmds
	in.minEvery.Store(next.minEvery.Load())
	if sl.cur.Load() != in {
		return nil
	}
	sensors, commands := describe(sl.id, desc)
	sl.log.Info("plugin description changed", "sensors", len(sensors), "commands", len(commands))
	sl.m.hub.setPlugin(sl.id, &wire.PluginInfo{ID: sl.id, State: wire.StateOnline, Version: in.desc.Version, Title: in.desc.GetTitle()}, sensors, commands, nil)
	return nil
}
