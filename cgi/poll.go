package cgi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// Long polling (proto/README.md, "Transports"): for a browser that cannot
// reach the supervisor's WebSocket port. The stub checks the request as
// ?connect does (Host, allowed_hosts, Origin on the Host's host) and asks
// the supervisor over the control socket, passing its JSON answer
// through undecoded; it never reads a sensor.
//
// Why a poll without an Origin header is safe: Chrome sends none on a
// same-origin GET, so the origin is then built from Host as for a token,
// and must be the one the session was opened from. A page on another
// site cannot read the answer (no CORS header is given to a success),
// does not know the session id (it lives only in the page's memory,
// never in a cookie) and cannot forge a token for its own origin.
// Sec-Fetch-Site "cross-site" is refused outright. A command is a POST,
// which every browser sends with Origin: one without is refused, and its
// origin must be the session's.

// poll answers GET ?poll.
func (s *Stub) poll(ctx context.Context, r Request, p Params) Response {
	origin, st, refused := s.pollCheck(r)
	if refused != nil {
		return *refused
	}
	req := control.PollRequest{Token: p.Token, Session: p.Session, Origin: origin, Remote: r.RemoteAddr}
	if p.HasSince {
		req.Since = &p.Since
	}
	status, body, err := control.Poll(st.stateDir, req, s.Config.PollTimeout+s.Config.PollInterval+5*time.Second)
	return s.answer(ctx, st, status, body, err)
}

// command answers POST ?command: the body is one command frame, at most
// max_frame bytes.
func (s *Stub) command(ctx context.Context, r Request, p Params) Response {
	if r.Origin == "" {
		return errorResponse(403, ErrCrossSite, "a command needs an Origin header (every browser sends one with a POST)")
	}
	origin, st, refused := s.pollCheck(r)
	if refused != nil {
		return *refused
	}
	n, err := strconv.ParseInt(r.ContentLength, 10, 64)
	if err != nil || n < 0 {
		return errorResponse(400, ErrBadRequest, "a command needs a Content-Length")
	}
	if n > s.Config.MaxFrame {
		return errorResponse(413, ErrBadRequest, fmt.Sprintf("command of %d bytes: the limit is max_frame = %d", n, s.Config.MaxFrame))
	}
	frame := make([]byte, n)
	if r.Body == nil {
		r.Body = eofReader{}
	}
	if _, err := io.ReadFull(r.Body, frame); err != nil {
		return errorResponse(400, ErrBadRequest, fmt.Sprintf("command body shorter than its Content-Length (%d bytes)", n))
	}
	req := control.CommandRequest{Session: p.Session, Origin: origin, Remote: r.RemoteAddr, Len: int(n)}
	status, body, err := control.Command(st.stateDir, req, frame, s.Config.CommandTimeout+5*time.Second)
	return s.answer(ctx, st, status, body, err)
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// pollCheck applies ?connect's rules to a poll or a command and returns
// the page's origin.
func (s *Stub) pollCheck(r Request) (string, *starter, *Response) {
	fail := func(resp Response) (string, *starter, *Response) { return "", nil, &resp }
	if r.SecFetchSite == "cross-site" {
		return fail(errorResponse(403, ErrCrossSite, "cross-site request (Sec-Fetch-Site)"))
	}
	origin, _, st, refused := s.site(r)
	if refused != nil {
		return "", nil, refused
	}
	return origin, st, nil
}

// answer answers what the supervisor said to a poll or a command. A
// supervisor that is not running is started again, and the client told
// to fetch ?connect again: its session or token died with the old one.
func (s *Stub) answer(ctx context.Context, st *starter, status int, body []byte, err error) Response {
	if err == nil {
		return jsonResponse(status, body)
	}
	if errors.Is(err, control.ErrNotRunning) {
		if _, err := st.ensure(ctx); err != nil {
			var se *StartError
			if errors.As(err, &se) {
				return errorResponse(se.Status, ErrSupervisor, se.Reason)
			}
			return errorResponse(500, ErrSupervisor, err.Error())
		}
		return errorResponse(410, control.ErrCodeSession, "the supervisor was not running and has been started again: fetch ?connect again")
	}
	st.log("control request: %v", err)
	return errorResponse(503, ErrSupervisor, "the supervisor did not answer: "+err.Error())
}
