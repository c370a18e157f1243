package ctlserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// Serve answers "status" requests on ln until ctx ends, and the
// requests of the kinds in more (see Handler), as Control{Status: status,
// Handlers: more}.Serve does.
func Serve(ctx context.Context, ln net.Listener, status func() control.Status, more ...Handler) error {
	return Control{Status: status, Handlers: more}.Serve(ctx, ln)
}

// Control is what the supervisor serves on its control socket.
type Control struct {
	Status func() control.Status // answers "status"
	// HandOver takes a browser's connection passed by a stub (see
	// control.HandOverVerb) with its upgrade request. It returns at once, the
	// connection served elsewhere, or with an error and conn untouched.
	// Nil refuses hand-overs.
	HandOver func(conn net.Conn, request []byte) error
	// Handlers serve the other request kinds (see Handler).
	Handlers []Handler
}

// Serve answers requests on ln until ctx ends. The caller owns ln's
// creation (and the removal of a stale socket file before it). It returns
// an error only when ln fails for good (see Accept); the supervisor must
// then exit, so that the stub starts a fresh one. A passing shortage is
// retried quietly: the WebSocket listener, which meets it too, logs it.
func (ctl Control) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := Accept(ln, nil)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go ctl.serveOne(ctx, c)
	}
}

func (ctl Control) serveOne(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	var r io.Reader = c
	if uc, ok := c.(*net.UnixConn); ok {
		head, conn, request, err := receiveHandOver(uc)
		switch {
		case err != nil:
			c.Write([]byte("error " + oneLine(err.Error()) + "\n"))
			return
		case conn != nil && ctl.HandOver == nil:
			conn.Close()
			c.Write([]byte("error this supervisor takes no hand-overs\n"))
			return
		case conn != nil:
			if err := ctl.HandOver(conn, request); err != nil {
				conn.Close()
				c.Write([]byte("error " + oneLine(err.Error()) + "\n"))
				return
			}
			c.Write([]byte("ok\n"))
			return
		}
		r = io.MultiReader(bytes.NewReader(head), c)
	}
	br := bufio.NewReader(r)
	line, err := br.ReadSlice('\n')
	kind, arg, _ := strings.Cut(strings.TrimSuffix(string(line), "\n"), " ")
	for _, h := range ctl.Handlers {
		if err == nil && kind == h.Kind {
			serveHandler(ctx, c, br, h, []byte(arg))
			return
		}
	}
	if err != nil || string(line) != "status\n" || ctl.Status == nil {
		c.Write([]byte(`{"error":"unknown request"}` + "\n"))
		return
	}
	b, _ := json.Marshal(ctl.Status())
	c.Write(append(b, '\n'))
}

// oneLine makes s fit on one line of the control protocol.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

// Accept waits for ln's next connection. A passing shortage (out of
// descriptors or buffers or memory, a connection aborted before it was
// taken, a timeout) does not end it: it calls retried (if not nil), backs
// off (5 ms doubling to 1 s) and tries again. It returns an error only
// when ln fails for good, closed included. Every accept loop of the
// supervisor goes through it: one shortage must never end a listener.
func Accept(ln net.Listener, retried func(err error, delay time.Duration)) (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err == nil || !Passing(err) {
			return c, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		if retried != nil {
			retried(err, delay)
		}
		time.Sleep(delay)
	}
}

// Passing reports whether an accept error is a passing shortage after
// which the listener still works (see Accept).
func Passing(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
