package supervisor

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/livecgi/livecgi/proto/control/ctlserver"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// Buffer sizes of one client connection. net/http would give every
// connection 4 KiB for reading and 4 KiB for writing on top of its own
// per-connection state; our frames are small (readings ~150 bytes, client
// messages rate-limited), so 1 KiB each is plenty and halves the memory a
// browser costs. A frame larger than a buffer is written straight through.
const (
	connReadBuf  = 1 << 10
	connWriteBuf = 1 << 10
)

// Limits of a connection that has not finished its upgrade request.
// maxHeader bounds its request line and headers (answered 431 past it),
// maxHandshakes the connections still sending theirs: past it the oldest
// is closed, so that slow or silent connections cannot crowd out a
// browser. upgradeTimeout is how long one may take.
const (
	maxHeader      = 8 << 10
	maxHandshakes  = 64
	upgradeTimeout = 10 * time.Second
)

// serve accepts connections on ln and gives each its own goroutine, which
// reads one HTTP request and hands it to upgrade: a WebSocket upgrade
// keeps the goroutine as the client's reader; anything else is answered
// and closed. This replaces http.Server to keep per-client memory small.
// A shortage of descriptors is waited out (ctlserver.Accept); serve returns
// only when ln fails for good.
func (s *Supervisor) serve(ctx context.Context, ln net.Listener) error {
	retried := func(err error, delay time.Duration) {
		s.log.Warn("accept failed, retrying", "err", err, "in", delay)
	}
	for {
		nc, err := ctlserver.Accept(ln, retried)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go s.serveConn(ctx, nc, s.startHandshake(nc))
	}
}

// startHandshake counts nc among the connections whose request is not in
// yet, closing the oldest of them if there are maxHandshakes already.
func (s *Supervisor) startHandshake(nc net.Conn) *list.Element {
	s.hsMu.Lock()
	defer s.hsMu.Unlock()
	if s.handshakes.Len() >= maxHandshakes {
		old := s.handshakes.Remove(s.handshakes.Front()).(net.Conn)
		old.Close()
		s.log.Debug("too many unfinished upgrade requests: closed the oldest", "remote", old.RemoteAddr().String())
	}
	return s.handshakes.PushBack(nc)
}

// endHandshake takes a connection's request off the unfinished ones.
func (s *Supervisor) endHandshake(e *list.Element) {
	s.hsMu.Lock()
	s.handshakes.Remove(e) // a no-op if it was closed as the oldest
	s.hsMu.Unlock()
}

// errHeaderTooLarge ends an upgrade request longer than maxHeader.
var errHeaderTooLarge = errors.New("request header too large")

// headerLimit lets at most n bytes through until n is set to -1: the
// request line and headers of one connection.
type headerLimit struct {
	net.Conn
	n int
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.Conn.Read(p)
	}
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	n, err := l.Conn.Read(p[:min(len(p), l.n)])
	l.n -= n
	return n, err
}

func (s *Supervisor) serveConn(ctx context.Context, nc net.Conn, hs *list.Element) {
	nc.SetReadDeadline(time.Now().Add(upgradeTimeout))
	lr := &headerLimit{Conn: nc, n: maxHeader}
	br := bufio.NewReaderSize(lr, connReadBuf)
	req, err := http.ReadRequest(br)
	s.endHandshake(hs)
	if err != nil {
		answer := "400 Bad Request"
		if errors.Is(err, errHeaderTooLarge) {
			answer = "431 Request Header Fields Too Large"
		}
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		nc.Write([]byte("HTTP/1.1 " + answer + "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		nc.Close()
		return
	}
	lr.n = -1
	nc.SetReadDeadline(time.Time{})
	s.answer(ctx, nc, br, req)
}

// answer hands req, read from nc through br, to upgrade: a WebSocket
// upgrade keeps nc as a client's; anything else is answered and closed.
func (s *Supervisor) answer(ctx context.Context, nc net.Conn, br *bufio.Reader, req *http.Request) {
	req.RemoteAddr = nc.RemoteAddr().String()
	w := &connWriter{nc: nc, br: br, header: http.Header{}}
	// Not ctx itself: a cancelled read would drop the connection without a
	// close frame; shutdown closes each client with "going away" instead.
	s.upgrade(w, req.WithContext(context.WithoutCancel(ctx)))
	if !w.hijacked {
		w.finish()
		nc.Close()
	}
}

// HandOver takes a browser's connection that a stub running as
// nph-live.cgi passed over the control socket (control.HandOverVerb),
// with the upgrade request the web server read from it. It returns an
// error, nc untouched, if request is not an HTTP request; otherwise nc is
// served like a connection of the WebSocket port (serveHandedOver).
func (s *Supervisor) HandOver(nc net.Conn, request []byte) error {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(request)))
	if err != nil {
		return fmt.Errorf("bad upgrade request: %w", err)
	}
	go s.serveHandedOver(nc, req)
	return nil
}

// serveHandedOver answers a handed-over connection's request with the
// same checks as a direct upgrade (Host, token, Origin, roles, limits).
func (s *Supervisor) serveHandedOver(nc net.Conn, req *http.Request) {
	s.answer(context.Background(), nc, bufio.NewReaderSize(nc, connReadBuf), req)
}

// connWriter is the http.ResponseWriter of serveConn: enough of one for
// websocket.Accept (headers, 101, Hijack) and for short error answers.
type connWriter struct {
	nc       net.Conn
	br       *bufio.Reader
	header   http.Header
	status   int
	head     []byte // status line and headers, once WriteHeader ran
	body     bytes.Buffer
	hijacked bool
	cork     *fanout.Cork // under the WebSocket's writes, once hijacked
}

var _ http.Hijacker = (*connWriter)(nil)

func (w *connWriter) Header() http.Header { return w.header }

func (w *connWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	if code != http.StatusSwitchingProtocols {
		w.header.Set("Connection", "close")
	}
	w.header.Write(&b)
	w.head = b.Bytes()
}

func (w *connWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.body.Write(p)
}

// finish sends a non-upgrade answer with its length.
func (w *connWriter) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	var b bytes.Buffer
	b.Write(w.head)
	b.WriteString("Content-Length: " + strconv.Itoa(w.body.Len()) + "\r\n\r\n")
	b.Write(w.body.Bytes())
	w.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	w.nc.Write(b.Bytes())
}

// Hijack hands the connection to the WebSocket, with the 101 answer
// already written.
func (w *connWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status != http.StatusSwitchingProtocols {
		return nil, nil, errors.New("hijack without a 101 answer")
	}
	w.hijacked = true
	w.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := w.nc.Write(append(w.head, "\r\n"...)); err != nil {
		return nil, nil, err
	}
	w.nc.SetWriteDeadline(time.Time{})
	w.cork = fanout.NewCork(w.nc)
	return w.nc, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.cork, connWriteBuf)), nil
}
