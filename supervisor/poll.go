package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/control/ctlserver"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// Long polling through the stub (live.cgi?poll, proto/README.md,
// "Transports"): for a browser that cannot reach the WebSocket port, each
// poll is one CGI run that asks the supervisor over the control socket
// and answers the frames a WebSocket would have carried.
//
// A poll session is a client of the hub like a WebSocket one, except that
// it has no socket: its control frames (hello, status, ...) collect in a
// pollQueue (fanout.ClientOptions.Control), and its readings are taken
// from the hub when a poll comes, newest per sensor after the poll's since
// (fanout.Hub.Collect). Its
// commands take the frame path (frames.go, ask), as a WebSocket client's
// do: rate, decoding, role, schema, run, audit.

// pollSession is one page polling. Its id, unguessable, is the session's
// only secret; it is bound to the origin and identity of the token that
// opened it.
type pollSession struct {
	id     string
	origin string
	c      *fanout.Client // attached to the hub; its control frames go to q
	q      *pollQueue

	mu         sync.Mutex // guards the fields below
	lastAnswer time.Time
	lastUse    time.Time
	polled     bool          // a poll came after the one that opened it
	waiter     chan struct{} // the waiting poll's; closed when another poll takes over

	gate gate // the rate limit of its commands
}

// pollQueue collects the control frames of a poll client until a poll
// takes them.
type pollQueue struct {
	mu       sync.Mutex
	frames   [][]byte
	overflow bool          // more than maxPollQueue frames were never taken
	notify   chan struct{} // capacity 1: something was queued
}

// maxPollQueue bounds the control frames waiting for a poll; past it the
// session ends.
const maxPollQueue = 512

func newPollQueue() *pollQueue { return &pollQueue{notify: make(chan struct{}, 1)} }

func (q *pollQueue) push(b []byte) {
	q.mu.Lock()
	if len(q.frames) >= maxPollQueue {
		q.overflow = true
	} else {
		q.frames = append(q.frames, b)
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *pollQueue) take() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.frames
	q.frames = nil
	return f
}

// polls holds the poll sessions by id.
type polls struct {
	mu       sync.Mutex
	sessions map[string]*pollSession
}

// pollIdle is how long a session lives without a poll: a page that is
// polling is never longer than one poll_timeout without one.
func (s *Supervisor) pollIdle() time.Duration {
	return max(time.Minute, 2*s.config().PollTimeout)
}

// pollUnused is how long a session lives after the poll that opened it
// when no other poll comes: a page polls again as soon as that answer is
// in, so a session that was opened and never polled is no page's; it
// ends long before pollIdle, and gives its place back.
const pollUnused = 10 * time.Second

// ControlHandlers are the control socket's request kinds besides status:
// long polls and their commands, and CSV downloads of the history.
// cmd/livecgid passes them to ctlserver.Serve.
func (s *Supervisor) ControlHandlers() []ctlserver.Handler {
	return []ctlserver.Handler{
		{Kind: control.KindPoll, Serve: s.servePoll, Timeout: func() time.Duration {
			cfg := s.config()
			return cfg.PollTimeout + cfg.PollInterval + 5*time.Second
		}},
		{Kind: control.KindCommand, Serve: s.servePollCommand, Timeout: func() time.Duration {
			return s.config().CommandTimeout + 5*time.Second
		}},
		{Kind: control.KindHistory, Serve: s.serveHistoryCSV, Timeout: func() time.Duration { return 10 * time.Second }}, // records.go
	}
}

// servePoll answers one long poll: at once with hello and snapshot for a
// new session, else when there is news after since (readings, status,
// hellos), or with no frames after poll_timeout; never sooner than
// poll_interval after the session's previous answer.
func (s *Supervisor) servePoll(ctx context.Context, arg []byte, _ io.Reader) ctlserver.Answer {
	var req control.PollRequest
	if err := ctlserver.DecodeRequest(arg, &req); err != nil {
		return ctlserver.ErrorAnswer(400, control.ErrCodeBad, err.Error())
	}
	var ps *pollSession
	opened := false
	if req.Session != "" {
		var ans *ctlserver.Answer
		if ps, ans = s.pollSession(req.Session, req.Origin); ans != nil {
			return *ans
		}
	} else {
		var ans ctlserver.Answer
		if ps, ans = s.openPoll(req); ps == nil {
			return ans
		}
		opened = true
	}
	return s.answerPoll(ctx, ps, req.Since, opened)
}

// pollSession finds session id for a request from origin.
func (s *Supervisor) pollSession(id, origin string) (*pollSession, *ctlserver.Answer) {
	s.polls.mu.Lock()
	ps := s.polls.sessions[id]
	s.polls.mu.Unlock()
	if ps == nil {
		a := ctlserver.ErrorAnswer(410, control.ErrCodeSession, "poll session unknown or expired: fetch ?connect again")
		return nil, &a
	}
	if ps.origin != origin {
		ps.c.Log().Info("poll refused: session of another origin", "origin", origin)
		a := ctlserver.ErrorAnswer(403, control.ErrCodeForbidden, "poll session belongs to another origin")
		return nil, &a
	}
	return ps, nil
}

// openPoll lets a first poll in through admission (check: token, origin,
// role; the stub checked Host; enter: the client caps) and opens a
// session.
func (s *Supervisor) openPoll(req control.PollRequest) (*pollSession, ctlserver.Answer) {
	cfg := s.config()
	e, err := s.check(cfg, ticket{via: viaPoll, stub: true, token: req.Token, origin: req.Origin, remote: req.Remote})
	if err != nil {
		return nil, ctlserver.ErrorAnswer(403, control.ErrCodeForbidden, err.Error())
	}
	var b [16]byte
	rand.Read(b[:])
	ps := &pollSession{id: base64.RawURLEncoding.EncodeToString(b[:]), origin: req.Origin, q: newPollQueue(), lastUse: time.Now()}
	ps.c = s.hub.NewClient(fanout.ClientOptions{
		Who: e.who, Setup: e.setup, Remote: req.Remote, Key: e.key, Control: ps.q.push, Log: e.log,
	})
	switch err := s.enter(cfg, ps.c); err {
	case nil:
	case fanout.ErrTooMany:
		return nil, ctlserver.ErrorAnswer(503, control.ErrCodeTooMany, "too many clients")
	case fanout.ErrTooManyPerKey:
		return nil, ctlserver.ErrorAnswer(503, control.ErrCodeTooMany, "too many clients from your address")
	default:
		return nil, ctlserver.ErrorAnswer(503, control.ErrCodeStopping, "supervisor stopping")
	}
	s.polls.mu.Lock()
	if s.polls.sessions == nil {
		s.polls.sessions = map[string]*pollSession{}
	}
	s.polls.sessions[ps.id] = ps
	s.polls.mu.Unlock()
	ps.c.Log().Debug("poll session opened")
	return ps, ctlserver.Answer{}
}

func (s *Supervisor) answerPoll(ctx context.Context, ps *pollSession, since *uint64, opened bool) ctlserver.Answer {
	cfg := s.config()
	mine := make(chan struct{})
	ps.mu.Lock()
	if ps.waiter != nil {
		close(ps.waiter) // the page gave up on it: this poll takes over
	}
	ps.waiter = mine
	now := time.Now()
	ps.lastUse = now
	ps.polled = ps.polled || !opened
	hold := ps.lastAnswer.Add(cfg.PollInterval).Sub(now)
	ps.mu.Unlock()
	defer func() {
		ps.mu.Lock()
		if ps.waiter == mine {
			ps.waiter = nil
		}
		ps.lastAnswer = time.Now()
		ps.lastUse = ps.lastAnswer
		ps.mu.Unlock()
	}()
	var cur uint64
	if since != nil {
		cur = *since
	}
	empty := func() ctlserver.Answer { return pollAnswer(ps.id, cur, nil) }
	if opened {
		cur = ps.c.Cursor() // attach's snapshot covers up to here
		since = &cur
	} else if hold > 0 {
		// Batching: a page polling in a tight loop gets at most one
		// answer per poll_interval.
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-mine:
			t.Stop()
			return empty()
		case <-ctx.Done():
			t.Stop()
			return ctlserver.ErrorAnswer(503, control.ErrCodeStopping, "supervisor stopping")
		}
	}
	timeout := time.NewTimer(cfg.PollTimeout)
	defer timeout.Stop()
	for {
		published := s.hub.Published()
		if frames, seq, ok := s.collect(ps, since); ok {
			s.hub.Counters().Delivered.Add(uint64(len(frames)))
			return pollAnswer(ps.id, seq, frames)
		}
		select {
		case <-published:
		case <-ps.q.notify:
		case <-mine:
			return empty()
		case <-timeout.C:
			return empty()
		case <-ctx.Done():
			return ctlserver.ErrorAnswer(503, control.ErrCodeStopping, "supervisor stopping")
		}
	}
}

// collect gathers what a poll after since answers: the queued control
// frames, then what the hub has for the session after since (hello and
// snapshot, a snapshot, or the readings, newest per sensor: see
// fanout.Hub.Collect). ok is false when there is nothing to answer yet.
func (s *Supervisor) collect(ps *pollSession, since *uint64) (frames [][]byte, seq uint64, ok bool) {
	frames = ps.q.take()
	more, seq := s.hub.Collect(ps.c, since)
	frames = append(frames, more...)
	return frames, seq, len(frames) > 0
}

// pollAnswer is the document a poll answers:
// {"session": ID, "seq": SEQ, "frames": [FRAME, ...]}.
func pollAnswer(id string, seq uint64, frames [][]byte) ctlserver.Answer {
	n := 64
	for _, f := range frames {
		n += len(f) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"session":"`...)
	b = append(b, id...) // base64url: nothing to escape
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"frames":[`...)
	for i, f := range frames {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f...)
	}
	return ctlserver.Answer{Status: 200, Body: append(b, "]}\n"...)}
}

// servePollCommand takes a session's command frame through the frame
// path (ask: rate, size, UTF-8, decoding, role, schema, run, audit), as
// a WebSocket's, and answers its result or error frame.
func (s *Supervisor) servePollCommand(ctx context.Context, arg []byte, rest io.Reader) ctlserver.Answer {
	cfg := s.config()
	var req control.CommandRequest
	if err := ctlserver.DecodeRequest(arg, &req); err != nil {
		return ctlserver.ErrorAnswer(400, control.ErrCodeBad, err.Error())
	}
	if req.Len < 0 || int64(req.Len) > cfg.MaxFrame {
		return ctlserver.ErrorAnswer(413, control.ErrCodeBad, fmt.Sprintf("command frame of %d bytes: the limit is max_frame = %d", req.Len, cfg.MaxFrame))
	}
	data := make([]byte, req.Len)
	if _, err := io.ReadFull(rest, data); err != nil {
		return ctlserver.ErrorAnswer(400, control.ErrCodeBad, "command frame cut short")
	}
	ps, ans := s.pollSession(req.Session, req.Origin)
	if ans != nil {
		return *ans
	}
	ps.mu.Lock()
	ps.lastUse = time.Now()
	ps.mu.Unlock()
	b := s.ask(ctx, sender{who: ps.c.Who(), setup: ps.c.Setup(), remote: req.Remote, log: ps.c.Log()}, &ps.gate, data)
	return ctlserver.Answer{Status: 200, Body: append(b, '\n')}
}

// sweepPolls ends the poll sessions nobody polled for pollIdle, those
// opened and not polled again for pollUnused, and those whose queue
// overflowed, until ctx ends; then every session.
func (s *Supervisor) sweepPolls(ctx context.Context) {
	t := time.NewTicker(min(5*time.Second, s.pollUnused/2))
	defer t.Stop()
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			now = time.Now().Add(100 * 365 * 24 * time.Hour)
		case now = <-t.C:
		}
		var ended []*pollSession
		idleFor := s.pollIdle()
		s.polls.mu.Lock()
		for id, ps := range s.polls.sessions {
			ps.mu.Lock()
			unused := now.Sub(ps.lastUse)
			end := ps.waiter == nil && (unused > idleFor || !ps.polled && unused > s.pollUnused)
			ps.mu.Unlock()
			ps.q.mu.Lock()
			end = end || ps.q.overflow
			ps.q.mu.Unlock()
			if end {
				delete(s.polls.sessions, id)
				ended = append(ended, ps)
			}
		}
		s.polls.mu.Unlock()
		for _, ps := range ended {
			s.hub.Detach(ps.c)
			ps.c.Log().Debug("poll session ended")
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// endPoll ends the poll session of client c: its waiting poll answers
// at once, and the next one is told to fetch a new connect document.
func (s *Supervisor) endPoll(c *fanout.Client) {
	var ended *pollSession
	s.polls.mu.Lock()
	for id, ps := range s.polls.sessions {
		if ps.c == c {
			delete(s.polls.sessions, id)
			ended = ps
			break
		}
	}
	s.polls.mu.Unlock()
	if ended == nil {
		return
	}
	s.hub.Detach(c)
	ended.mu.Lock()
	if ended.waiter != nil {
		close(ended.waiter)
		ended.waiter = nil
	}
	ended.mu.Unlock()
}
