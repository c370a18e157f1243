package cgi

import (
	"context"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// A history download (README.md, "History downloads"): GET
// live.cgi?history=SENSOR[&from=MS][&to=MS] answers the recorded
// sensor's history over [from, to] (Unix ms; to defaults to now, from to
// an hour before to) as a CSV file for a person: one line per stored
// point, "time,min,avg,max". The stub checks the request as a poll's
// (Host, Origin, allowed_hosts, no cross-site fetch), signs the person in
// as ?connect does, mints a token for them and asks the supervisor over
// the control socket (control.History); the supervisor checks the token
// and its role as a poll's and writes the CSV. The stub only passes it
// on.

// historyTimeout bounds the supervisor's answer to a history download.
const historyTimeout = 10 * time.Second

// history answers GET ?history=SENSOR.
func (s *Stub) history(ctx context.Context, r Request, p Params) Response {
	origin, st, refused := s.pollCheck(r)
	if refused != nil {
		return *refused
	}
	id, status, secret, refused := s.admit(ctx, r, st)
	if refused != nil {
		return *refused
	}
	to := p.To
	if to == 0 {
		to = s.Now().UnixMilli()
	}
	from := p.From
	if from == 0 {
		from = to - time.Hour.Milliseconds()
	}
	if from > to {
		return errorResponse(400, ErrBadRequest, "history: from is after to")
	}
	token, _ := control.MintToken(secret, origin, status.Epoch, s.Now(), s.Config.TokenTTL, id)
	req := control.HistoryRequest{Token: token, Origin: origin, Remote: r.RemoteAddr, Sensor: p.Sensor, From: from, To: to}
	code, body, err := control.History(st.stateDir, req, historyTimeout)
	if err != nil {
		st.log("control request: %v", err)
		return errorResponse(503, ErrSupervisor, "the supervisor did not answer: "+err.Error())
	}
	if code != 200 {
		return jsonResponse(code, body)
	}
	name := p.Sensor + "-" + time.UnixMilli(from).UTC().Format("20060102T150405Z") + ".csv"
	return Response{Status: 200, Header: []Field{
		{"Content-Type", "text/csv; charset=utf-8"},
		{"Content-Disposition", `attachment; filename="` + name + `"`}, // a sensor id needs no quoting
		{"Cache-Control", "no-store"},
	}, Body: body}
}
