package supervisor

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
	"github.com/livecgi/livecgi/supervisor/internal/ratelimit"
)

// The WebSocket transport: the upgrade of a connection accept.go read
// (or one handed over by nph-live.cgi), its reader and its pings.

// upgrade turns a request for /live into a WebSocket client once
// admission lets it in (check: Host, token, origin, role; enter: the
// client caps); anything else gets an error answer.
func (s *Supervisor) upgrade(w *connWriter, r *http.Request) {
	if r.URL.Path != "/live" {
		http.Error(w, "not found: the live endpoint is /live", http.StatusNotFound)
		return
	}
	cfg := s.config()
	via := viaWebSocket
	if w.handedOver {
		via = viaHandOver
	}
	e, err := s.check(cfg, ticket{via: via, host: r.Host, token: r.URL.Query().Get("token"), origin: r.Header.Get("Origin"), remote: r.RemoteAddr})
	if err != nil {
		http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{wire.Subprotocol},
		OriginPatterns:  []string{e.originHost}, // the token vouches for this origin
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		s.log.Info("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	if conn.Subprotocol() != wire.Subprotocol {
		conn.Close(websocket.StatusPolicyViolation, "subprotocol "+wire.Subprotocol+" required")
		return
	}
	c := s.hub.NewClient(fanout.ClientOptions{
		Conn: conn, Net: w.nc, Cork: w.cork, Who: e.who, Setup: e.setup, Remote: r.RemoteAddr, Key: e.key, Log: e.log,
	})
	switch err := s.enter(cfg, c); err {
	case nil:
	case fanout.ErrTooMany:
		conn.Close(wire.CloseTooMany, "too many clients")
		return
	case fanout.ErrTooManyPerKey:
		conn.Close(wire.CloseTooMany, "too many clients from your address")
		return
	default:
		conn.Close(websocket.StatusGoingAway, "supervisor stopping")
		return
	}
	c.Log().Debug("client connected")
	// The reader is a fresh goroutine: the upgrade grew this one's stack,
	// and an idle client should cost only what a blocked read needs.
	ctx := r.Context()
	go func() {
		stop := s.keepalive(c)
		s.read(ctx, c)
		stop()
		s.hub.Detach(c)
		c.Log().Debug("client gone")
	}()
}

// read handles c's frames until the connection ends, and then closes it
// whatever the reason (a client that vanished without a close frame
// included), so its descriptor is released.
//
// The rate limit is checked before a frame is read: a frame over it is
// discarded unread, never decoded. A client that keeps sending over its
// rate for ratelimit.FloodGrace is closed with wire.CloseRateLimits. The limits
// (max_frame, rate, burst) are the configuration's as each frame comes.
func (s *Supervisor) read(ctx context.Context, c *fanout.Client) {
	defer c.Conn().CloseNow()
	var lim ratelimit.Limiter
	var lastWarn time.Time
	var maxFrame int64
	snd := wsSender(c)
	for {
		cfg := s.config()
		if cfg.MaxFrame != maxFrame {
			maxFrame = cfg.MaxFrame
			c.Conn().SetReadLimit(maxFrame)
		}
		lim.Set(cfg.Rate, cfg.Burst)
		typ, r, err := c.Conn().Reader(ctx)
		if err != nil {
			if st := websocket.CloseStatus(err); st != -1 {
				c.Log().Debug("client closed", "status", st)
			} else {
				c.Log().Debug("read ended", "err", err)
			}
			return
		}
		now := time.Now()
		if !lim.Allow(now) {
			if _, err := io.Copy(io.Discard, r); err != nil {
				c.Log().Debug("read ended", "err", err)
				return
			}
			if lim.Drop(now) {
				c.Log().Warn("client closed: kept sending over its rate limit", "rate", lim.Rate(), "for", ratelimit.FloodGrace)
				c.Conn().Close(wire.CloseRateLimits, "rate limit exceeded")
				return
			}
			if now.Sub(lastWarn) > time.Second {
				lastWarn = now
				c.QueueJSON(overRate(lim.Rate()))
			}
			continue
		}
		data, err := io.ReadAll(r)
		if err != nil {
			c.Log().Debug("read ended", "err", err)
			linger(c.Net())
			return
		}
		lim.Charge(len(data))
		if typ != websocket.MessageText {
			c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrBadMessage, Message: "binary frames are not accepted"})
			continue
		}
		// The configuration in force now, not when the read began: a
		// reload while it waited holds this frame already.
		if s.frame(ctx, s.config(), snd, data) == errNotUTF8 {
			c.Log().Info("client closed: text frame is not UTF-8")
			c.Conn().Close(websocket.StatusInvalidFramePayloadData, "text frame is not UTF-8")
			return
		}
	}
}

// linger reads and discards what a client still sends, for up to a
// second or 1 MiB, before its connection is closed mid-frame (a frame
// over max_frame, answered with close 1009): closing a socket with
// unread data makes the kernel send a reset, which can destroy the close
// frame before the client has read it, and with it the reason.
func linger(nc net.Conn) {
	if nc == nil || nc.SetReadDeadline(time.Now().Add(time.Second)) != nil {
		return
	}
	io.CopyN(io.Discard, nc, 1<<20)
}

// keepalive pings c's WebSocket one ping_interval after it connected and
// then every ping_interval (as the configuration says at each ping), and
// closes it when a pong does not come within that interval. stop ends it.
func (s *Supervisor) keepalive(c *fanout.Client) (stop func()) {
	var mu sync.Mutex
	var t *time.Timer
	stopped := false
	var arm func()
	ping := func() {
		every := s.config().PingInterval
		if every > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), every)
			err := c.Conn().Ping(ctx)
			cancel()
			if err != nil {
				mu.Lock()
				gone := stopped
				mu.Unlock()
				if !gone {
					c.Log().Info("client dropped: no pong", "err", err)
					c.Conn().CloseNow()
				}
				return
			}
		}
		arm()
	}
	arm = func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		every := s.config().PingInterval
		if every <= 0 {
			every = time.Minute // off: look at the configuration again then
		}
		t = time.AfterFunc(every, ping)
	}
	arm()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}
