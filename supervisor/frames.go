package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// The frame path: every client frame, whichever transport carried it.

// decodeError is the answer to a frame DecodeClient refused: with the
// command's id when it could be read. Every transport answers with it.
func decodeError(err error) wire.Error {
	var de *wire.DecodeError
	if errors.As(err, &de) {
		return de.Frame()
	}
	return wire.Error{Type: wire.TypeError, Code: wire.ErrBadMessage, Message: err.Error()}
}

// command validates m against the command's schema and runs it on its
// plugin; the result goes to c only. c's identity is held to the
// configuration in force (see hold), which also gives the timeout.
func (s *Supervisor) command(ctx context.Context, c *fanout.Client, m *wire.CommandMsg) {
	if !s.cmds.enter() {
		c.Log().Info("command not run: livecgid is stopping", "command", m.Name, "id", m.ID)
		c.QueueJSON(wire.Result{Type: wire.TypeResult, ID: m.ID, Error: "livecgid is stopping: command not run"})
		return
	}
	defer s.cmds.wg.Done()
	cfg := s.config()
	who, ok := s.authorize(cfg, c, m)
	if !ok {
		return
	}
	cmd, ok := s.hub.Command(m.Name)
	if !ok {
		c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrUnknownCommand, ID: m.ID, Message: fmt.Sprintf("unknown command %q", m.Name)})
		s.auditCommand(who, c.Remote(), m, wire.ErrUnknownCommand)
		return
	}
	args, err := validateArgs(cmd.Args, m.Args)
	if err != nil {
		c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrBadArgs, ID: m.ID, Message: fmt.Sprintf("%s: %v", m.Name, err)})
		s.auditCommand(who, c.Remote(), m, wire.ErrBadArgs+": "+err.Error())
		return
	}
	s.cmds.wg.Add(1) // this call's count is still held
	go func() {
		defer s.cmds.wg.Done()
		cctx, cancel := context.WithTimeout(context.Background(), cfg.CommandTimeout)
		defer cancel()
		local := m.Name[len(cmd.Plugin)+1:]
		v, err := s.plugins.do(cctx, cmd.Plugin, local, m.ID, args)
		if errors.Is(err, errNoAnswer) {
			err = fmt.Errorf("plugin %s did not answer within %v", cmd.Plugin, cfg.CommandTimeout)
		}
		res := wire.Result{Type: wire.TypeResult, ID: m.ID, OK: err == nil}
		if err != nil {
			res.Error = err.Error()
			c.Log().Info("command failed", "command", m.Name, "id", m.ID, "err", err)
			s.auditCommand(who, c.Remote(), m, "failed: "+err.Error())
		} else {
			if len(v) > 0 {
				res.Value = json.RawMessage(v)
			}
			s.auditCommand(who, c.Remote(), m, "ok")
		}
		c.QueueJSON(res)
	}()
}

// floodGrace is how long a client may keep sending over its rate limit
// (frames dropped with no pause of a second) before it is closed with
// wire.CloseRateLimits. A burst that calms down is only dropped from.
const floodGrace = 3 * time.Second

// frameCost is the frame size that costs one more message in the limiter:
// the rate limits bytes too (rate × frameCost per second), so large frames
// cannot flood at the message rate.
const frameCost = 4 << 10

// limiter is a token bucket for one client's messages; used by the
// client's reader only.
type limiter struct {
	rate, burst, tokens float64
	last                time.Time
	overSince, lastDrop time.Time // the current run of dropped frames
	lastWarn            time.Time
}

// set makes the bucket rate messages a second with bursts of burst (the
// configuration's rate and burst, which a reload may change).
func (l *limiter) set(rate float64, burst int) {
	l.rate, l.burst = rate, float64(burst)
}

// allow reports whether a frame arriving now may be read; charge then
// takes its cost.
func (l *limiter) allow(now time.Time) bool {
	if l.last.IsZero() {
		l.tokens = l.burst
	} else {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	return l.tokens >= 1
}

// charge takes the cost of a frame of n bytes: one message, and one more
// per frameCost bytes (the bucket may go below zero).
func (l *limiter) charge(n int) {
	l.tokens -= 1 + float64(n/frameCost)
}

// drop counts a frame dropped now and reports whether the client has been
// over its rate for floodGrace.
func (l *limiter) drop(now time.Time) (flooding bool) {
	if now.Sub(l.lastDrop) > time.Second {
		l.overSince = now
	}
	l.lastDrop = now
	return now.Sub(l.overSince) >= floodGrace
}

// authorize checks c's role under cfg, the configuration in force, for
// command m before anything else is done with it, and returns who c is
// held to (see hold); a refused command is answered with a "forbidden"
// error and audited. Every transport's commands go through it and
// control.Config.Authorize.
func (s *Supervisor) authorize(cfg *control.Config, c *fanout.Client, m *wire.CommandMsg) (control.Identity, bool) {
	who, err := s.hold(cfg, c)
	if err == nil {
		err = cfg.Authorize(who, m.Name)
	}
	if err == nil {
		return who, true
	}
	if !errors.Is(err, control.ErrForbidden) {
		err = fmt.Errorf("%w: %v", control.ErrForbidden, err)
	}
	c.Log().Info("command refused", "command", m.Name, "id", m.ID, "err", err)
	c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrForbidden, ID: m.ID, Message: err.Error()})
	s.auditCommand(who, c.Remote(), m, err.Error())
	return who, false
}
