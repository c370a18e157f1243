package ctlserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// Answer is a control request's answer: an HTTP status and a JSON body.
type Answer struct {
	Status int
	Body   []byte
}

// ErrorAnswer is status with {"error": code, "reason": reason}
// (control.ErrorJSON, as the stub's own errors).
func ErrorAnswer(status int, code, reason string) Answer {
	return Answer{Status: status, Body: control.ErrorJSON(code, reason)}
}

// Handler serves one request kind on the control socket. Serve gets the
// JSON after the kind and a reader of what follows the line; Timeout,
// asked at each request (the configuration may have changed), bounds the
// whole exchange.
type Handler struct {
	Kind    string
	Timeout func() time.Duration
	Serve   func(ctx context.Context, arg []byte, rest io.Reader) Answer
}

// serveHandler answers one request of h's kind on c.
func serveHandler(ctx context.Context, c net.Conn, br *bufio.Reader, h Handler, arg []byte) {
	c.SetDeadline(time.Now().Add(h.Timeout()))
	a := h.Serve(ctx, arg, br)
	c.Write(append(strconv.AppendInt(nil, int64(a.Status), 10), '\n'))
	c.Write(a.Body)
}

// DecodeRequest decodes the JSON of a poll or command request strictly.
func DecodeRequest(arg []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(arg))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("bad control request: %w", err)
	}
	return nil
}
