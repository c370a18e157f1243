package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/wire"
)

// maxControlQueue bounds the frames that are never coalesced (results,
// status, hello) waiting for one client; past it the client is too slow.
const maxControlQueue = 512

// client is one browser connection. Its reader runs in the HTTP handler's
// goroutine; writes are done by the hub's writer pool, so an idle client
// costs one goroutine and no buffers of ours.
type client struct {
	hub  *hub
	conn *websocket.Conn
	nc   net.Conn // the connection under conn, for write deadlines; may be nil
	log  *slog.Logger

	subs map[string]bool // guarded by hub.mu; nil means every sensor

	mu        sync.Mutex
	control   [][]byte // hello, snapshot, status, result, error: never dropped
	readings  []*frame // at most one per sensor: the newest
	scheduled bool     // in hub.work or being written
	closed    bool
}

func (c *client) wants(sensor string) bool { return c.subs == nil || c.subs[sensor] }

// setSubs is called with hub.mu held.
func (c *client) setSubs(s map[string]bool) { c.subs = s }

// queueReading queues f, replacing a pending reading of the same sensor.
// Called with hub.mu held.
func (c *client) queueReading(f *frame) {
	if !c.wants(f.sensor) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	for i, p := range c.readings {
		if p.sensor == f.sensor {
			c.readings[i] = f
			c.hub.coalesced.Add(1)
			return
		}
	}
	c.readings = append(c.readings, f)
	c.scheduleLocked()
}

// queueControl queues a frame that must not be coalesced or dropped.
func (c *client) queueControl(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if len(c.control) >= maxControlQueue {
		c.closed = true
		c.hub.tooSlow.Add(1)
		c.log.Warn("client too slow: control queue full, closing")
		go c.conn.Close(wire.CloseTooSlow, "client too slow")
		return
	}
	c.control = append(c.control, b)
	c.scheduleLocked()
}

func (c *client) queueJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("encode frame", "err", err)
		return
	}
	c.queueControl(b)
}

func (c *client) scheduleLocked() {
	if !c.scheduled {
		c.scheduled = true
		c.hub.work <- c // never blocks: cap(work) > max clients, and c is in it at most once
	}
}

// flush writes what c has queued. It is run by one writer at a time per
// client (the scheduled flag), and hands c back to the pool if more
// arrived meanwhile so that one busy client cannot hog a writer.
func (c *client) flush(timeout time.Duration) {
	c.mu.Lock()
	ctl, rd := c.control, c.readings
	c.control, c.readings = nil, nil // idle clients hold no buffers
	c.mu.Unlock()

	// A deadline on the socket bounds the batch without a context timer
	// and callback per frame, which is what a context costs in Write.
	var err error
	if c.nc != nil {
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		err = c.write(context.Background(), ctl, rd)
		c.nc.SetWriteDeadline(time.Time{}) // pings and closes write too
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err = c.write(ctx, ctl, rd)
		cancel()
	}

	c.mu.Lock()
	if err != nil {
		c.closed = true
		c.control, c.readings = nil, nil
	}
	more := !c.closed && len(c.control)+len(c.readings) > 0
	if !more {
		c.scheduled = false
	}
	c.mu.Unlock()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			c.hub.tooSlow.Add(1)
			c.log.Warn("client too slow: write timed out, closing", "timeout", timeout)
			// Not in this writer: the close handshake may wait seconds.
			go c.conn.Close(wire.CloseTooSlow, "client too slow")
		} else {
			c.log.Debug("write failed", "err", err)
			c.conn.CloseNow()
		}
		return
	}
	if more {
		c.hub.work <- c
	}
}

func (c *client) write(ctx context.Context, ctl [][]byte, rd []*frame) error {
	for _, b := range ctl {
		if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
			return err
		}
		c.hub.delivered.Add(1)
	}
	for _, f := range rd {
		if err := c.conn.Write(ctx, websocket.MessageText, f.data); err != nil {
			return err
		}
		c.hub.delivered.Add(1)
	}
	return nil
}

// shut marks c closed so nothing more is queued for it.
func (c *client) shut() {
	c.mu.Lock()
	c.closed = true
	c.control, c.readings = nil, nil
	c.mu.Unlock()
}

// limiter is a token bucket for one client's messages; used by the
// client's reader only.
type limiter struct {
	rate, burst, tokens float64
	last                time.Time
	strikes             int
	lastWarn            time.Time
}

func (l *limiter) allow(now time.Time) bool {
	if l.last.IsZero() {
		l.tokens = l.burst
	} else {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		l.strikes = 0
		return true
	}
	l.strikes++
	return false
}
