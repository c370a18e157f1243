package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	grpcstatus "google.golang.org/grpc/status"
	pb "google.golang.org/protobuf/proto"

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
	// The watchdog runs only while a Stream is open that must bring
	// something (see watchLimit): an idle plugin reads nothing, and one
	// quiet by exception sends nothing; neither is a hung one.
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
		if want := cur != nil && cur.watchLimit.Load() > 0; want != watching {
			watching = want
			if want {
				watchdog.Reset(time.Second)
			} else {
				watchdog.Stop()
			}
		}
		select {
		case <-sl.rewatch:
			continue

		case <-ctx.Done():
			return

		case <-sl.remove:
			sl.pub.Lock()
			in := sl.cur.Swap(nil)
			sl.pub.Unlock()
			if in != nil {
				in.stop(m.cmdTO)
			}
			sl.log.Info("plugin removed")
			m.hub.SetPlugin(sl.id, nil, nil, nil, &wire.Status{Plugin: sl.id, State: wire.StateRemoved, Reason: "binary removed"})
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
					m.hub.SetState(wire.Status{Plugin: sl.id, State: wire.StateRefused, Reason: err.Error()})
					sl.said()
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
						sl.log.Info("plugin has nothing to serve here", "reason", un.reason, "retry_in", m.timing.UnavailableRetry)
						// Sensors a former run declared are gone, not stale.
						m.hub.SetPlugin(sl.id, &wire.PluginInfo{ID: sl.id, State: wire.StateUnavailable, Reason: un.reason}, nil, nil,
							&wire.Status{Plugin: sl.id, State: wire.StateUnavailable, Reason: un.reason})
						sl.said()
					} else {
						sl.log.Debug("plugin still has nothing to serve here", "reason", un.reason)
					}
					retry.Reset(m.timing.UnavailableRetry)
					continue
				}
				unavailable = ""
				m.restarts.Add(1)
				backoff = m.timing.nextBackoff(backoff)
				sl.log.Error("plugin failed to start", "err", err, "retry_in", backoff)
				m.hub.SetState(wire.Status{Plugin: sl.id, State: wire.StateRestarting, Reason: err.Error()})
				sl.said()
				retry.Reset(backoff)
				continue
			}
			unavailable = ""
			sl.activate(in, wire.Status{Plugin: sl.id, State: wire.StateOnline, Version: in.desc.Version})
			sl.said()

		case <-done:
			reason := "plugin exited"
			if cur.err != nil {
				reason = "plugin exited: " + cur.err.Error()
			}
			sl.crashed(cur, reason, &backoff, retry)

		case <-watchdog.C:
			if cur == nil {
				continue
			}
			limit := time.Duration(cur.watchLimit.Load())
			if limit == 0 || !cur.streaming.Load() {
				continue
			}
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
				m.hub.SetState(wire.Status{Plugin: sl.id, State: wire.StateSwapFailed, Reason: err.Error(), Version: cur.desc.Version})
				continue
			}
			sl.log.Info("plugin swapped", "old_version", cur.desc.Version, "new_version", in.desc.Version)
			sl.activate(in, wire.Status{Plugin: sl.id, State: wire.StateSwapped, Version: in.desc.Version, PreviousVersion: cur.desc.Version})
			m.wg.Go(func() { cur.stop(m.cmdTO) }) // Wait waits for it: the publisher may stop after Wait
		}
	}
}

// said records that the slot has published a state (online with its
// descriptors, refused, unavailable, restarting), which its first start
// always does, and the first time wakes those waiting on Described.
func (sl *slot) said() {
	if !sl.spoke.Swap(true) {
		sl.m.start.changed()
	}
}

// crashed handles a plugin process that died or hung: offline now,
// restarting after the backoff.
func (sl *slot) crashed(cur *instance, reason string, backoff *time.Duration, retry *time.Timer) {
	m := sl.m
	sl.pub.Lock()
	sl.cur.CompareAndSwap(cur, nil)
	sl.pub.Unlock()
	m.wg.Go(func() { cur.stop(0) })
	m.restarts.Add(1)
	if time.Since(cur.started) > m.timing.BackoffReset {
		*backoff = 0
	}
	*backoff = m.timing.nextBackoff(*backoff)
	sl.log.Warn("plugin down, restarting", "reason", reason, "retry_in", *backoff)
	m.hub.SetState(wire.Status{Plugin: sl.id, State: wire.StateOffline, Reason: reason, Version: cur.desc.Version})
	m.hub.SetState(wire.Status{Plugin: sl.id, State: wire.StateRestarting, Reason: fmt.Sprintf("restart in %v", *backoff)})
	retry.Reset(*backoff)
}

func (t *Timing) nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		return t.BackoffMin
	}
	return min(2*b, t.BackoffMax)
}

// activate makes in the slot's current instance, publishes its
// descriptors and starts its run.
func (sl *slot) activate(in *instance, st wire.Status) {
	sensors, commands := describe(sl.id, in.desc)
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	sl.pub.Lock()
	sl.cur.Store(in)
	sl.m.hub.SetPlugin(sl.id, &wire.PluginInfo{ID: sl.id, State: st.State, Version: in.desc.Version, Title: in.desc.GetTitle()}, sensors, commands, &st)
	sl.pub.Unlock()
	go sl.run(ctx, in)
}

// run streams in's readings to the hub while something of it is wanted
// and leaves the plugin idle (no Stream open: its sensors are not read)
// while nothing is, until ctx ends or the plugin is gone. A dynamic
// plugin's Changes are followed all along (follow).
func (sl *slot) run(ctx context.Context, in *instance) {
	defer close(in.done)
	ctx, fail := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	if in.desc.Dynamic {
		wg.Go(func() {
			if err := sl.follow(ctx, in); err != nil {
				fail(err)
			}
		})
	}
	err := sl.serve(ctx, in)
	fail(err)
	wg.Wait()
	if err == nil {
		if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
			err = cause // from follow
		}
	}
	in.err = err
}

// serve is run's loop: a Stream while something of the plugin is
// wanted (see makePlan), idle while not, until ctx ends (nil) or the
// plugin fails. A change of what is wanted, or of the plugin's sensors,
// opens a new Stream only when the plan changed: one asking the same is
// kept.
func (sl *slot) serve(ctx context.Context, in *instance) error {
	for ctx.Err() == nil {
		w, changed := sl.m.demand.Want(sl.id)
		reshaped := in.reshapes()
		p := makePlan(in, w)
		sctx, cancel := context.WithCancel(ctx)
		go func() {
			for {
				select {
				case <-changed:
				case <-reshaped:
					reshaped = in.reshapes()
				case <-sctx.Done():
					return
				}
				var w Want
				w, changed = sl.m.demand.Want(sl.id)
				if !makePlan(in, w).same(p) {
					cancel()
					return
				}
			}
		}()
		var err error
		if p.req != nil {
			err = sl.stream(sctx, in, p)
		} else {
			err = idle(sctx, in.conn)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
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

// stream feeds in's readings to the hub, asking what p says and
// passing what livecgid's filter lets through (gates), until ctx ends
// (nil) or the stream fails.
func (sl *slot) stream(ctx context.Context, in *instance, p plan) error {
	in.lastRead.Store(time.Now().UnixNano())
	st, err := in.rpc.Stream(ctx, p.req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	sl.m.streams.Add(1)
	in.streaming.Store(true)
	in.watchLimit.Store(int64(p.limit))
	sl.rewatched()
	defer func() {
		in.watchLimit.Store(0)
		in.streaming.Store(false)
		sl.m.streams.Add(-1)
		sl.rewatched()
	}()
	filter := gates{want: p.want, honours: in.desc.Demand}
	empty := len(in.known.Load().types) == 0
	if in.desc.Dynamic && !in.follows.Load() {
		// It may have changed while nothing streamed, and it did not
		// say so: its Stream reads what it has now.
		if err := sl.redescribe(ctx, in); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	warned := map[string]bool{}
	asked := map[string]bool{}
	for {
		r, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) && empty && in.desc.Dynamic {
				// A plugin with no sensors that does not keep a Stream
				// open: nothing to hear on it, as before.
				return idle(ctx, in.conn)
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
		wr, err := toWire(sl.id, in.known.Load().types, r)
		if errors.Is(err, errUndeclared) && in.desc.Dynamic && !asked[r.Sensor] {
			// A Stream opened just after a change reads the new sensors
			// without saying changed, and its news on Changes may not be
			// in yet: ask once.
			asked[r.Sensor] = true
			if err := sl.redescribe(ctx, in); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			wr, err = toWire(sl.id, in.known.Load().types, r)
		}
		if err != nil && !warned[r.Sensor] {
			warned[r.Sensor] = true // once per sensor and process: a lying plugin must not flood the log
			sl.log.Warn("bad reading", "err", err)
		}
		if wr.Sensor != "" && filter.pass(in.known.Load(), r.Sensor, wr) {
			sl.m.hub.Publish(wr)
		}
	}
}

// follow keeps a dynamic plugin's Changes open and describes it again
// after each Change, streaming or not, until ctx ends. A plugin without
// Changes, or whose Changes ends, is left to its Stream (makePlan). It
// returns an error only for a description that fails the checks (the
// plugin is restarted); a broken connection is run's to see.
func (sl *slot) follow(ctx context.Context, in *instance) error {
	st, err := in.rpc.Changes(ctx, &proto.ChangesRequest{})
	if err == nil {
		for {
			if _, err = st.Recv(); err != nil {
				break
			}
			if !in.follows.Load() {
				in.follows.Store(true)
				in.reshape()
			}
			// The first Change comes at once: a change between the first
			// Describe and the opening of Changes is not lost.
			if err := sl.redescribe(ctx, in); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if grpcstatus.Code(err) == codes.Unimplemented {
		sl.log.Debug("plugin does not tell its changes; described again when a stream opens")
	} else {
		sl.log.Debug("plugin's changes ended", "err", err)
	}
	if in.follows.Load() {
		in.follows.Store(false)
		in.reshape()
	}
	return nil
}

// redescribe reads the description of a dynamic plugin again, after it
// said that it changed (on Changes or its Stream) or when a Stream
// opens, and publishes the new descriptors as a swap would: sensors that
// are gone disappear from the pages, new ones appear, and no client is
// dropped. A description that did not change publishes nothing. One
// that fails the checks is an error: the plugin is restarted.
func (sl *slot) redescribe(ctx context.Context, in *instance) error {
	in.descMu.Lock()
	defer in.descMu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, sl.m.timing.Describe)
	desc, err := in.rpc.Describe(dctx, &proto.DescribeRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("describe again: %w", err)
	}
	if !desc.Dynamic {
		return errors.New("describe again: plugin said it changed but is not dynamic")
	}
	k, err := index(desc)
	if err != nil {
		return fmt.Errorf("describe again: %w", err)
	}
	if pb.Equal(desc, in.known.Load().desc) {
		return nil
	}
	sensors, commands := describe(sl.id, desc)
	sl.pub.Lock()
	if sl.cur.Load() == in {
		// Its Version is the first description's: a redescription keeps it.
		sl.m.hub.SetPlugin(sl.id, &wire.PluginInfo{ID: sl.id, State: wire.StateOnline, Version: in.desc.Version, Title: desc.GetTitle()}, sensors, commands, nil)
		// Logged once published: a page that comes after the line gets
		// the new description.
		sl.log.Info("plugin description changed", "sensors", len(sensors), "commands", len(commands))
	}
	sl.pub.Unlock()
	// Then the instance: a reading of a new sensor that comes before
	// this (on a Stream opened after the change) waits in its own
	// redescription for this one to end, and the hub knows the sensors
	// a Stream opened after reshape reads.
	in.known.Store(k)
	in.reshape()
	return nil
}

// rewatched tells the loop that a Stream opened or closed: its watchdog
// runs only while one that must bring readings is open.
func (sl *slot) rewatched() {
	select {
	case sl.rewatch <- struct{}{}:
	default:
	}
}
