package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
	"github.com/livecgi/livecgi/supervisor/internal/pluginhost"
	"github.com/livecgi/livecgi/supervisor/internal/ratelimit"
)

// The frame path: every client frame, whichever transport carried it (a
// WebSocket's reader, a poll session's command, the broker bridge), goes
// through the same steps, in this order: the rate limit (rate, burst:
// gate, or the WebSocket reader's limiter before it reads the frame),
// the size (max_frame), UTF-8, decoding (wire.DecodeClient, which bounds
// ids and command names), then a subscribe, a resume or a history
// request (any role; records.go), and for a command: the role (authorize), the
// command's existence and argument schema, the run on its plugin, the
// audit trail, the answer. A transport only carries bytes: it reads a
// frame and delivers the answers (sender.answer).

// sender is where a frame came from, as the frame path needs it.
type sender struct {
	who    auth.Identity // as admitted (see hold)
	setup  string        // the auth setup who was admitted under; "" for the bridge (no token)
	remote string        // for the audit trail
	log    *slog.Logger
	// answer takes each answer frame (JSON); it must not block.
	answer func(b []byte)
	// ws is the WebSocket client the frames come from: subscribe and
	// resume are its. nil: only commands are taken.
	ws *fanout.Client
	// wait: the transport waits for the answer (ask): a command runs in
	// the caller's goroutine.
	wait bool
}

// send answers v, encoded.
func (snd *sender) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		snd.log.Error("encode frame", "err", err)
		return
	}
	snd.answer(b)
}

// wsSender is the sender of a WebSocket client's frames.
func wsSender(c *fanout.Client) *sender {
	return &sender{who: c.Who(), setup: c.Setup(), remote: c.Remote(), log: c.Log(), answer: c.QueueControl, ws: c}
}

// errNotUTF8 is frame's error for a text frame that is not UTF-8: a
// WebSocket fails its connection (RFC 6455, 8.1); ask answers
// bad_message.
var errNotUTF8 = errors.New("frame is not UTF-8")

// frame takes one client frame from snd under cfg, once the transport
// let it past the rate limit: size, UTF-8, decoding, then a command
// (see command), a subscribe, a resume or a history request. Every refusal is answered
// through snd, but a frame that is not UTF-8: frame returns errNotUTF8.
func (s *Supervisor) frame(ctx context.Context, cfg *config.Config, snd *sender, data []byte) error {
	if int64(len(data)) > cfg.MaxFrame {
		snd.send(wire.Error{Type: wire.TypeError, Code: wire.ErrBadMessage, Message: fmt.Sprintf("frame of %d bytes: the limit is max_frame = %d", len(data), cfg.MaxFrame)})
		return nil
	}
	if !utf8.Valid(data) {
		return errNotUTF8
	}
	msg, err := wire.DecodeClient(data)
	if err != nil {
		snd.send(decodeError(err))
		return nil
	}
	switch m := msg.(type) {
	case *wire.CommandMsg:
		s.command(ctx, cfg, snd, m)
	case *wire.Subscribe:
		if snd.ws == nil {
			snd.send(commandsOnly)
			return nil
		}
		snap, unknown := s.hub.Subscribe(snd.ws, m.Sensors)
		if len(unknown) > 0 {
			snd.send(wire.Error{Type: wire.TypeError, Code: wire.ErrUnknownSensor, Message: fmt.Sprintf("unknown sensors: %q", unknown)})
		}
		snd.answer(snap)
	case *wire.Resume:
		if snd.ws == nil {
			snd.send(commandsOnly)
			return nil
		}
		snd.answer(s.hub.Resume(snd.ws, m.Epoch, m.Seq))
	case *wire.HistoryRequest:
		s.history(cfg, snd, m) // records.go
	}
	return nil
}

// commandsOnly answers a subscribe or resume from a transport without a
// connection of its own.
var commandsOnly = wire.Error{Type: wire.TypeError, Code: wire.ErrBadMessage, Message: "only command and history frames are taken here; a poll gets every sensor"}

// decodeError is the answer to a frame DecodeClient refused: with the
// command's id when it could be read.
func decodeError(err error) wire.Error {
	var de *wire.DecodeError
	if errors.As(err, &de) {
		return de.Frame()
	}
	return wire.Error{Type: wire.TypeError, Code: wire.ErrBadMessage, Message: err.Error()}
}

// ask takes one frame from a transport that waits for its answer (a poll
// session's command, the broker bridge's) and returns that answer: the
// rate limit (g: the sender's), then frame; a command runs in the
// caller's goroutine, bounded by command_timeout, so that its result is
// in when frame returns.
func (s *Supervisor) ask(ctx context.Context, snd sender, g *gate, data []byte) []byte {
	cfg := s.config()
	if !g.pass(cfg, time.Now(), len(data)) {
		b, _ := json.Marshal(overRate(cfg.Rate))
		return b
	}
	var r reply
	snd.answer, snd.wait = r.put, true
	if err := s.frame(ctx, cfg, &snd, data); err != nil {
		snd.send(wire.Error{Type: wire.TypeError, Code: wire.ErrBadMessage, Message: err.Error()})
	}
	return r.frame
}

// reply is the answer to one frame that ask handles: the first frame
// put, the only one (every frame gets exactly one answer). Only ask's
// goroutine uses it.
type reply struct{ frame []byte }

func (r *reply) put(b []byte) {
	if r.frame == nil {
		r.frame = b
	}
}

// overRate is the answer to a frame the rate limit dropped.
func overRate(rate float64) wire.Error {
	return wire.Error{Type: wire.TypeError, Code: wire.ErrRateLimited, Message: fmt.Sprintf("more than %g messages per second: messages dropped", rate)}
}

// command checks m from snd, holding snd's identity to cfg (see hold):
// the role first (authorize), then that the command exists and its
// arguments fit its schema; runs it on its plugin within
// command_timeout, in a goroutine of its own unless snd waits; audits
// it, whatever became of it; and answers snd only.
func (s *Supervisor) command(ctx context.Context, cfg *config.Config, snd *sender, m *wire.CommandMsg) {
	if !s.cmds.enter() {
		snd.log.Info("command not run: livecgid is stopping", "command", m.Name, "id", m.ID)
		snd.send(wire.Result{Type: wire.TypeResult, ID: m.ID, Error: "livecgid is stopping: command not run"})
		return
	}
	defer s.cmds.wg.Done()
	who, ok := s.authorize(cfg, snd, m)
	if !ok {
		return
	}
	cmd, ok := s.hub.Command(m.Name)
	if !ok {
		snd.send(wire.Error{Type: wire.TypeError, Code: wire.ErrUnknownCommand, ID: m.ID, Message: fmt.Sprintf("unknown command %q", m.Name)})
		s.audit.record(who, snd.remote, m, wire.ErrUnknownCommand, true)
		return
	}
	args, err := pluginhost.ValidateArgs(cmd.Args, m.Args)
	if err != nil {
		snd.send(wire.Error{Type: wire.TypeError, Code: wire.ErrBadArgs, ID: m.ID, Message: fmt.Sprintf("%s: %v", m.Name, err)})
		s.audit.record(who, snd.remote, m, wire.ErrBadArgs+": "+err.Error(), true)
		return
	}
	run := func() {
		cctx, cancel := context.WithTimeout(context.Background(), cfg.CommandTimeout)
		defer cancel()
		local := m.Name[len(cmd.Plugin)+1:]
		v, err := s.plugins.Do(cctx, cmd.Plugin, local, m.ID, args)
		if errors.Is(err, pluginhost.ErrNoAnswer) {
			err = fmt.Errorf("plugin %s did not answer within %v", cmd.Plugin, cfg.CommandTimeout)
		}
		res := wire.Result{Type: wire.TypeResult, ID: m.ID, OK: err == nil}
		if err != nil {
			res.Error = err.Error()
			snd.log.Info("command failed", "command", m.Name, "id", m.ID, "err", err)
			s.audit.record(who, snd.remote, m, "failed: "+err.Error(), false)
		} else {
			if len(v) > 0 {
				res.Value = json.RawMessage(v)
			}
			s.audit.record(who, snd.remote, m, "ok", false)
		}
		snd.send(res)
	}
	if snd.wait {
		run()
		return
	}
	s.cmds.wg.Add(1) // this call's count is still held
	go func() {
		defer s.cmds.wg.Done()
		run()
	}()
}

// authorize checks snd's role under cfg, the configuration in force, for
// command m before anything else is done with it, and returns who snd is
// held to (see hold); a refused command is answered with a "forbidden"
// error and audited. Every transport's commands go through it and
// config.Config.Authorize.
func (s *Supervisor) authorize(cfg *config.Config, snd *sender, m *wire.CommandMsg) (auth.Identity, bool) {
	who, err := s.hold(cfg, snd.who, snd.setup)
	if err == nil {
		err = cfg.Authorize(who, m.Name)
	}
	if err == nil {
		return who, true
	}
	if !errors.Is(err, config.ErrForbidden) {
		err = fmt.Errorf("%w: %v", config.ErrForbidden, err)
	}
	snd.log.Info("command refused", "command", m.Name, "id", m.ID, "err", err)
	snd.send(wire.Error{Type: wire.TypeError, Code: wire.ErrForbidden, ID: m.ID, Message: err.Error()})
	s.audit.record(who, snd.remote, m, err.Error(), true)
	return who, false
}

// gate is the rate limit (rate, burst) of a sender whose frames come
// in concurrent requests (a poll session, the bridge): its limiter,
// locked.
type gate struct {
	mu  sync.Mutex
	lim ratelimit.Limiter
}

// pass reports whether a frame of n bytes arriving now is within the
// rate limit under cfg, and if so takes its cost.
func (g *gate) pass(cfg *config.Config, now time.Time, n int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lim.Set(cfg.Rate, cfg.Burst)
	if !g.lim.Allow(now) {
		return false
	}
	g.lim.Charge(n)
	return true
}
