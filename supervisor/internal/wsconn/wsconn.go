// Package wsconn is a minimal RFC 6455 WebSocket client for MQTT over
// WebSockets: Dial does the HTTP/1.1 upgrade (over TLS for wss) and
// returns a net.Conn whose Write sends each call as one binary frame and
// whose Read returns the payload of the binary messages the server sends,
// as one byte stream. Pings are answered, close frames too; anything the
// protocol forbids, text frames and frames over Options.MaxPayload close
// the connection with the matching status code.
//
// It exists so that livecgid does not link net/http's client (its
// Transport and bundled HTTP/2 client) for the broker bridge alone.
// Start at Dial.
package wsconn

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Options says how to dial.
type Options struct {
	TLS         *tls.Config // for wss; nil: the defaults. Its NextProtos is replaced by http/1.1.
	Subprotocol string      // asked for, and required in the answer; "": none
	MaxPayload  int64       // the largest frame payload Read accepts; 0: 1 MiB
}

// Frame opcodes and close status codes.
const (
	opCont, opText, opBinary, opClose, opPing, opPong = 0, 1, 2, 8, 9, 10

	statusNormal, statusProtocol, statusUnsupported, statusTooBig = 1000, 1002, 1003, 1009
)

// Dial opens a WebSocket connection to u (ws:// or wss://). ctx bounds
// the TCP dial, the TLS handshake and the upgrade, not the connection.
func Dial(ctx context.Context, u *url.URL, o Options) (net.Conn, error) {
	host, port := u.Host, map[string]string{"ws": "80", "wss": "443"}[u.Scheme]
	if port == "" {
		return nil, fmt.Errorf("websocket %s: want ws:// or wss://", u.Redacted())
	}
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), port)
	}
	var d interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	} = &net.Dialer{}
	if u.Scheme == "wss" {
		cfg := &tls.Config{}
		if o.TLS != nil {
			cfg = o.TLS.Clone()
		}
		cfg.NextProtos = []string{"http/1.1"}
		d = &tls.Dialer{Config: cfg}
	}
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	c, err := handshake(nc, u, o)
	if !stop() {
		err = fmt.Errorf("websocket handshake with %s: %w", u.Redacted(), ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// handshake sends the upgrade request and checks the answer.
func handshake(nc net.Conn, u *url.URL, o Options) (*conn, error) {
	var k [16]byte
	crand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n"
	if o.Subprotocol != "" {
		req += "Sec-WebSocket-Protocol: " + o.Subprotocol + "\r\n"
	}
	if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
		return nil, fmt.Errorf("websocket handshake with %s: %w", u.Redacted(), err)
	}
	br := bufio.NewReader(nc)
	tp := textproto.NewReader(br)
	status, err := tp.ReadLine()
	var h textproto.MIMEHeader
	if err == nil {
		h, err = tp.ReadMIMEHeader()
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	switch _, code, _ := strings.Cut(status, " "); {
	case err != nil:
	case code != "101" && !strings.HasPrefix(code, "101 "):
		err = fmt.Errorf("status %q, want 101", status)
	case !strings.EqualFold(h.Get("Upgrade"), "websocket") || !hasToken(h.Get("Connection"), "upgrade"):
		err = fmt.Errorf("no upgrade to websocket in %q", status)
	case h.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]):
		err = fmt.Errorf("Sec-WebSocket-Accept %q does not match the key", h.Get("Sec-WebSocket-Accept"))
	case h.Get("Sec-WebSocket-Protocol") != o.Subprotocol:
		err = fmt.Errorf("subprotocol %q, want %q", h.Get("Sec-WebSocket-Protocol"), o.Subprotocol)
	case h.Get("Sec-WebSocket-Extensions") != "":
		err = fmt.Errorf("extensions %q not asked for", h.Get("Sec-WebSocket-Extensions"))
	}
	if err != nil {
		return nil, fmt.Errorf("websocket handshake with %s: %w", u.Redacted(), err)
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1 << 20
	}
	return &conn{Conn: nc, br: br, max: o.MaxPayload}, nil
}

// hasToken reports whether the comma-separated list v holds tok.
func hasToken(v, tok string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// conn is a WebSocket connection as a net.Conn. Read is for one
// goroutine at a time; Write and Close may be called from any.
type conn struct {
	net.Conn
	br  *bufio.Reader // reads frames; holds what came after the handshake
	max int64

	// read side
	remain int64 // payload bytes of the current data frame not yet read
	frag   bool  // within a fragmented message: continuation frames come next
	err    error // why Read fails from now on

	wmu    sync.Mutex // serializes frames
	wbuf   []byte
	closed bool // a close frame was sent; nothing may follow it
}

// Read returns payload bytes of the binary messages, answering the
// control frames that come before them.
func (c *conn) Read(p []byte) (int, error) {
	for c.remain == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.br.Read(p)
	c.remain -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// next reads one frame header; a control frame it handles whole. The
// header is only peeked at until it is complete, so a read deadline
// leaves the stream as it was.
func (c *conn) next() error {
	h, err := c.br.Peek(2)
	if len(h) == 1 {
		return unexpected(err)
	} else if err != nil {
		return err // io.EOF between frames
	}
	fin, op, n, hl := h[0]&0x80 != 0, h[0]&0x0f, int64(h[1]&0x7f), 2
	switch {
	case h[0]&0x70 != 0:
		return c.fail(statusProtocol, "reserved bits set")
	case h[1]&0x80 != 0:
		return c.fail(statusProtocol, "masked frame from the server")
	case op == opText:
		return c.fail(statusUnsupported, "text frame")
	case op >= opClose && (!fin || n > 125):
		return c.fail(statusProtocol, "control frame fragmented or over 125 bytes")
	case n == 126:
		hl = 4
	case n == 127:
		hl = 10
	}
	if h, err = c.br.Peek(hl); err != nil {
		return unexpected(err)
	}
	switch hl {
	case 4:
		n = int64(binary.BigEndian.Uint16(h[2:]))
	case 10:
		n = int64(binary.BigEndian.Uint64(h[2:]))
	}
	if n < 0 || n > c.max {
		return c.fail(statusTooBig, fmt.Sprintf("frame of %d bytes, over %d", uint64(n), c.max))
	}
	switch op {
	case opCont, opBinary:
		if (op == opCont) != c.frag {
			return c.fail(statusProtocol, "continuation frame out of place")
		}
		c.frag = !fin
		c.br.Discard(hl)
		c.remain = n
		return nil
	case opClose, opPing, opPong:
	default:
		return c.fail(statusProtocol, fmt.Sprintf("opcode %d", op))
	}
	f, err := c.br.Peek(hl + int(n))
	if err != nil {
		return unexpected(err)
	}
	payload := append([]byte(nil), f[hl:]...)
	c.br.Discard(len(f))
	switch {
	case op == opPing:
		return c.write(opPong, payload)
	case op == opClose && n == 1:
		return c.fail(statusProtocol, "close frame of 1 byte")
	case op == opClose:
		c.err = io.EOF
		if len(payload) > 2 {
			payload = payload[:2] // the status code, echoed
		}
		c.write(opClose, payload)
		return io.EOF
	}
	return nil
}

// unexpected says that the connection ended within a frame.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// fail sends a close frame with code and why, best-effort, and makes
// Read fail from now on.
func (c *conn) fail(code uint16, why string) error {
	c.err = errors.New("websocket: " + why)
	c.write(opClose, append(binary.BigEndian.AppendUint16(nil, code), why...))
	return c.err
}

// Write sends p as one binary frame.
func (c *conn) Write(p []byte) (int, error) {
	if err := c.write(opBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// write sends one masked frame of opcode op with FIN set.
func (c *conn) write(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return fmt.Errorf("websocket: write after close: %w", net.ErrClosed)
	}
	c.closed = op == opClose
	b := append(c.wbuf[:0], 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	b = binary.BigEndian.AppendUint32(b, rand.Uint32()) // the mask is no secret
	h := len(b)
	b = append(b, p...)
	mask := b[h-4 : h]
	for i := range p {
		b[h+i] ^= mask[i%4]
	}
	if cap(b) <= 64<<10 {
		c.wbuf = b
	}
	_, err := c.Conn.Write(b)
	return err
}

// Close sends a close frame (1000), waiting a second at most, and closes
// the connection.
func (c *conn) Close() error {
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.write(opClose, binary.BigEndian.AppendUint16(nil, statusNormal))
	return c.Conn.Close()
}
