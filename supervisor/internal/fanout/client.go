package fanout

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/wire"
)

// maxControlQueue bounds the frames that are never coalesced (results,
// status, hello) waiting for one client; past it the client is too slow.
const maxControlQueue = 512

// Client is one browser connection. Its reader runs in the owner's
// goroutine; writes are done by the hub's writer pool, so an idle client
// costs one goroutine and no buffers of ours.
//
// Concurrency contract: the fields above mu are set by NewClient and not
// changed after, except subs (atomic, written by Subscribe), inIdle
// (guarded by hub.idleMu), gone (atomic) and userJSON (guarded by hub.mu
// once attached: Rehello). mu guards the rest. At most
// one writer flushes a client at a time: the one that set scheduled.
type Client struct {
	hub  *Hub
	conn *websocket.Conn
	nc   net.Conn        // the connection under conn, for write deadlines
	cork *Cork           // batches the frames of one flush into one write
	raw  syscall.RawConn // nc's fd, to ask how full its send buffer is; may be nil
	log  *slog.Logger
	// Who the token was minted for, under which auth setup it was
	// admitted, and from where.
	who      auth.Identity
	setup    string
	remote   string
	userJSON []byte

	sink func(b []byte) // a socketless client's: its control frames go there; conn is nil

	subs   atomic.Pointer[map[string]bool] // nil means every sensor
	inIdle bool                            // in hub.idle; guarded by hub.idleMu
	gone   atomic.Bool                     // closed, for the hub's idle list

	mu        sync.Mutex
	cursor    uint64   // readings up to this seq are written or skipped
	control   [][]byte // hello, snapshot, status, result, error: never dropped
	readings  []*frame // taken from the ring but not yet written: one per sensor
	scheduled bool     // in hub.work, being written, or waiting to retry
	closed    bool
	blocked   time.Time     // since when the socket has been too full for the queue
	retry     time.Duration // the pause before the next attempt while blocked

	// The send buffer, as the writer that flushes c last saw it (see room);
	// used only by that writer.
	limit   int   // bytes the socket may hold for us: min(SO_SNDBUF/2, maxQueued); 0: not asked yet
	queued  int   // at most this many bytes wait in the socket
	written int64 // bytes written in all
	// Unread bytes at which to ping: from a quarter to half of maxUnread,
	// drawn per client so that clients fed the same readings do not all
	// ping in the same round.
	pingAt int64
	since  time.Time // when confirmed last moved or a ping went out

	// The browser has read everything up to confirmed (bytes written),
	// known from a ping it answered; pinging while a ping is out.
	confirmed atomic.Int64
	pinging   atomic.Bool
}

// ClientOptions describes a new client's connection.
type ClientOptions struct {
	Conn *websocket.Conn
	Net  net.Conn // the connection under Conn
	Cork *Cork    // under Conn's writes, on Net; nil: none
	Log  *slog.Logger
	Who  auth.Identity // who the token was minted for
	// Setup is the auth setup Who was admitted under
	// (config.Config.AuthSetup); "" for a client that is not signed in
	// with a token (the broker bridge).
	Setup  string
	Remote string
	// Control, for a client without a socket (Conn and Net nil), takes
	// its control frames (hello, snapshot, status, result) as they are
	// queued, under the client's lock: it must not block nor call the
	// Hub. Readings it reads with Collect.
	Control func(b []byte)
}

// NewClient returns a client of h for o; Attach makes it receive.
func (h *Hub) NewClient(o ClientOptions) *Client {
	c := &Client{hub: h, conn: o.Conn, nc: o.Net, cork: o.Cork, log: o.Log, who: o.Who, setup: o.Setup, remote: o.Remote, sink: o.Control,
		pingAt: maxUnread/4 + rand.Int64N(maxUnread/4+1)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.cork == nil {
		c.cork = NewCork(o.Net)
	}
	c.setUser(o.Who)
	raw := o.Net
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn() // the send buffer is the TCP socket's
	}
	if sc, ok := raw.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c
}

// Conn returns c's WebSocket, for its reader (and pings).
func (c *Client) Conn() *websocket.Conn { return c.conn }

// Net returns the connection under Conn (nil for a socketless client).
func (c *Client) Net() net.Conn { return c.nc }

// Log returns c's logger.
func (c *Client) Log() *slog.Logger { return c.log }

// Who returns who c's token was minted for.
func (c *Client) Who() auth.Identity { return c.who }

// Setup returns the auth setup c was admitted under ("": no token).
func (c *Client) Setup() string { return c.setup }

// setUser sets the "user" member of c's hellos.
func (c *Client) setUser(id auth.Identity) {
	c.userJSON, _ = json.Marshal(wire.User{Name: id.User, Role: id.Role})
}

// Remote returns c's remote address.
func (c *Client) Remote() string { return c.remote }

// Cursor returns the sequence number up to which c has its readings:
// after Attach, the one its snapshot covers.
func (c *Client) Cursor() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursor
}

// hello returns the shared hello frame with c's "user" member added: the
// hub marshals one hello for all clients, and only this part differs.
func (c *Client) hello(shared []byte) []byte {
	if len(c.userJSON) == 0 || len(shared) < 2 || shared[len(shared)-1] != '}' {
		return shared
	}
	out := make([]byte, 0, len(shared)+len(c.userJSON)+8)
	out = append(out, shared[:len(shared)-1]...)
	out = append(out, `,"user":`...)
	out = append(out, c.userJSON...)
	return append(out, '}')
}

func (c *Client) wants(sensor string) bool {
	s := c.subs.Load()
	return s == nil || (*s)[sensor]
}

// setSubs selects the sensors c gets (nil: all).
func (c *Client) setSubs(s map[string]bool) {
	if s == nil {
		c.subs.Store(nil)
		return
	}
	c.subs.Store(&s)
}

// skipTo moves c's cursor to seq: a snapshot just covered the readings
// before it.
func (c *Client) skipTo(seq uint64) {
	c.mu.Lock()
	c.cursor = max(c.cursor, seq)
	c.mu.Unlock()
}

// claim makes c scheduled for the caller, a writer, unless it is closed
// or with another writer already.
func (c *Client) claim() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.scheduled {
		return false
	}
	c.scheduled = true
	return true
}

// wake hands c to the writers unless it is with them already.
func (c *Client) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed && !c.scheduled {
		c.scheduled = true
		c.hub.work <- c // never blocks: cap(work) > max clients, and c is in it at most once
	}
}

// QueueControl queues a frame that must not be coalesced or dropped.
func (c *Client) QueueControl(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.sink != nil {
		c.sink(b)
		return
	}
	if len(c.control) >= maxControlQueue {
		c.closed = true
		c.hub.counters.TooSlow.Add(1)
		c.log.Warn("client too slow: control queue full, closing")
		go c.conn.Close(wire.CloseTooSlow, "client too slow")
		return
	}
	c.control = append(c.control, b)
	c.scheduleLocked()
}

// QueueJSON queues v, encoded, as a control frame.
func (c *Client) QueueJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("encode frame", "err", err)
		return
	}
	c.QueueControl(b)
}

func (c *Client) scheduleLocked() {
	if !c.scheduled {
		c.scheduled = true
		c.hub.work <- c // never blocks: cap(work) > max clients, and c is in it at most once
	}
}

// flush writes what c has queued and the readings published since its
// cursor (newest per sensor). It is run by one writer at a time per client
// (the scheduled flag), and hands c back to the pool if more arrived
// meanwhile so that one busy client cannot hog a writer; with nothing
// left, c goes on the hub's idle list for the next reading to wake.
//
// A writer never waits on a slow client: it writes only what the socket's
// send buffer can take now and leaves the rest queued (readings keep
// coalescing meanwhile), retrying after a short pause. A client that has
// taken nothing for the write timeout is closed as too slow. The pool
// stays small because no writer is ever parked on one client's socket.
func (c *Client) flush(timeout time.Duration, scratch *[]*frame, batch *[]byte) {
	h := c.hub
	c.mu.Lock()
	cursor := c.cursor
	c.mu.Unlock()
	head := max(h.head.Load(), cursor)
	fresh := h.after(c, cursor, head, (*scratch)[:0])

	c.mu.Lock()
	c.cursor = max(c.cursor, head)
	ctl := c.control
	rd := fresh
	if len(c.readings) > 0 {
		rd = append(c.readings, fresh...)
	}
	rd = newest(rd, &h.counters.Coalesced)
	c.control, c.readings = nil, nil // idle clients hold no buffers
	c.mu.Unlock()
	*scratch = fresh[:0]

	need := size(ctl, rd)
	room, empty := c.budget(need, false)
	nctl, nrd := fits(room, ctl, rd)
	if nctl+nrd == 0 && !empty { // the bound may be stale: ask the kernel
		room, empty = c.budget(need, true)
		nctl, nrd = fits(room, ctl, rd)
	}
	if nctl+nrd == 0 && empty {
		// A frame larger than the whole buffer: let it block briefly.
		if len(ctl) > 0 {
			nctl = 1
		} else if len(rd) > 0 {
			nrd = 1
		}
	}
	// The deadline is a safety net: what fits the buffer does not block.
	c.nc.SetWriteDeadline(time.Now().Add(timeout))
	c.cork.cork(batch)
	err := c.write(ctl[:nctl], rd[:nrd])
	n := size(ctl[:nctl], rd[:nrd])
	c.queued += n
	c.written += int64(n)
	// What was collected goes out even when a write failed: complete
	// frames, and maybe a close frame another goroutine wrote meanwhile
	// (the reader closing with 1007, say), which must reach the browser.
	if uerr := c.cork.uncork(); err == nil {
		err = uerr
	}
	// Ask the browser to confirm what it read once pingAt is out, or
	// anything when the rest did not fit. A browser sent less than
	// maxUnread a second is not asked: read late, so little is not
	// stale, and pinging every client would cost more than the readings.
	if unread, left := c.written-c.confirmed.Load(), nctl < len(ctl) || nrd < len(rd); err == nil && (unread >= c.pingAt || unread > 0 && left) {
		if now := time.Now(); !left && now.Sub(c.since) >= time.Duration(unread)*time.Second/maxUnread {
			c.confirm(c.written)
			c.since = now
		} else if c.pinging.CompareAndSwap(false, true) {
			c.since = now
			go c.ping(c.written, timeout)
		}
	}
	c.nc.SetWriteDeadline(time.Time{}) // pings and closes write too
	if err != nil {
		c.fail(err, timeout)
		return
	}

	if nctl < len(ctl) || nrd < len(rd) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return
		}
		c.requeueLocked(ctl[nctl:], slices.Clone(rd[nrd:]))
		now := time.Now()
		if c.blocked.IsZero() || nctl+nrd > 0 { // new, or still taking some: not stuck
			c.blocked, c.retry = now, minRetry
		} else if now.Sub(c.blocked) > timeout {
			c.closed = true
			c.control, c.readings = nil, nil
			go c.fail(os.ErrDeadlineExceeded, timeout) // c.mu is held
			return
		}
		c.retry = min(2*c.retry, maxRetry)
		time.AfterFunc(c.retry, c.rewake) // still scheduled: nobody else queues c
		return
	}

	// Everything written: more to do, or idle until the next reading.
	c.mu.Lock()
	c.blocked = time.Time{}
	if c.closed || len(c.control) > 0 {
		if !c.closed {
			h.work <- c // still scheduled
		}
		c.mu.Unlock()
		return
	}
	c.scheduled = false
	cursor = c.cursor
	c.mu.Unlock()
	if !h.goIdle(c, cursor) {
		c.wake() // a reading came meanwhile
	}
}

// newest drops every reading superseded by a later one of its sensor in
// rd, in place and keeping order, and counts what it dropped.
func newest(rd []*frame, coalesced *atomic.Uint64) []*frame {
	if len(rd) < 2 {
		return rd
	}
	var last map[string]int // index of each sensor's last frame, for long batches
	if len(rd) > 32 {
		last = make(map[string]int, 64)
		for i, f := range rd {
			last[f.sensor] = i
		}
	}
	keep := rd[:0]
	for i, f := range rd {
		var later bool
		if last != nil {
			later = last[f.sensor] != i
		} else {
			later = slices.ContainsFunc(rd[i+1:], func(g *frame) bool { return g.sensor == f.sensor })
		}
		if later {
			coalesced.Add(1)
			continue
		}
		keep = append(keep, f)
	}
	clear(rd[len(keep):])
	return keep
}

// Pauses between attempts to write to a client whose socket is full.
const (
	minRetry = 5 * time.Millisecond
	maxRetry = 100 * time.Millisecond
)

// rewake hands a blocked client back to the writers after its pause.
func (c *Client) rewake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.hub.work <- c
	}
}

// requeueLocked puts frames that did not fit back in front of what arrived
// meanwhile; a reading superseded by a newer one of its sensor is dropped.
func (c *Client) requeueLocked(ctl [][]byte, rd []*frame) {
	c.control = append(ctl[:len(ctl):len(ctl)], c.control...)
	var keep []*frame
	for _, f := range rd {
		if slices.ContainsFunc(c.readings, func(n *frame) bool { return n.sensor == f.sensor }) {
			c.hub.counters.Coalesced.Add(1)
			continue
		}
		keep = append(keep, f)
	}
	c.readings = append(keep, c.readings...)
}

// fail ends a client whose write failed.
func (c *Client) fail(err error, timeout time.Duration) {
	c.Shut()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.hub.counters.TooSlow.Add(1)
		c.log.Warn("client too slow: closing", "timeout", timeout)
		// Not in a writer: the close handshake may wait seconds.
		go func() {
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			c.conn.Close(wire.CloseTooSlow, "client too slow")
		}()
		return
	}
	c.log.Debug("write failed", "err", err)
	c.conn.CloseNow()
}

// maxUnread bounds the bytes written to a client that it has not been
// seen to read: past it, its readings coalesce here. The socket buffers
// alone do not bound that: on a fast link the browser's kernel takes
// whatever it is sent into a receive buffer of up to megabytes, so a
// browser that reads slower than it is written to would see readings
// seconds old. A ping sent once a quarter to a half of it is unconfirmed
// tells when the browser has read up to there (its pong comes after
// everything before).
const maxUnread = 4 << 10

// ping confirms, when the browser answers, that it has read the first
// mark bytes written to it.
func (c *Client) ping(mark int64, timeout time.Duration) {
	defer c.pinging.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if c.conn.Ping(ctx) == nil {
		c.confirm(mark)
	}
}

// confirm records that the browser has read the first mark bytes.
func (c *Client) confirm(mark int64) {
	for {
		old := c.confirmed.Load()
		if mark <= old || c.confirmed.CompareAndSwap(old, mark) {
			return
		}
	}
}

// maxQueued is how many bytes may wait in a client's socket before its
// readings start to coalesce: enough for a burst of ~100 readings, small
// enough that a client that reads slowly sees fresh values, not old ones.
const maxQueued = 16 << 10

// frameOverhead bounds the WebSocket header of a server frame.
const frameOverhead = 10

// fits returns how many control frames and then readings fit in room
// bytes (all when room < 0, unknown).
func fits(room int, ctl [][]byte, rd []*frame) (nctl, nrd int) {
	if room < 0 {
		return len(ctl), len(rd)
	}
	for _, b := range ctl {
		if len(b)+frameOverhead > room {
			return nctl, 0
		}
		room -= len(b) + frameOverhead
		nctl++
	}
	for _, f := range rd {
		if len(f.data)+frameOverhead > room {
			break
		}
		room -= len(f.data) + frameOverhead
		nrd++
	}
	return nctl, nrd
}

// size bounds the bytes that ctl and rd take on the wire.
func size(ctl [][]byte, rd []*frame) int {
	n := 0
	for _, b := range ctl {
		n += len(b) + frameOverhead
	}
	for _, f := range rd {
		n += len(f.data) + frameOverhead
	}
	return n
}

// budget returns how many bytes c may be written now (-1: any), the
// least of its socket's room and what is left of maxUnread, and whether
// both are empty; fresh asks the kernel however little was written.
func (c *Client) budget(need int, fresh bool) (int, bool) {
	room, empty := c.room(need, fresh)
	if unread := int(c.written - c.confirmed.Load()); room < 0 || maxUnread-unread < room {
		room, empty = max(maxUnread-unread, 0), empty && unread == 0
	}
	return room, empty
}

// room returns how many bytes the socket's send buffer takes now without
// blocking (-1 if that cannot be known), and whether it is empty. need is
// what the caller would write: unless fresh, while the bytes written since
// the kernel was last asked (an upper bound of what still waits in the
// socket) leave room for need, room answers without a system call, so a
// client that keeps up costs one write per flush and nothing more.
func (c *Client) room(need int, fresh bool) (int, bool) {
	if c.raw == nil {
		return -1, true
	}
	if !fresh && c.limit > 0 && c.queued+need <= c.limit {
		return c.limit - c.queued, c.queued == 0
	}
	var queued, size int
	var qerr, serr error
	c.raw.Control(func(fd uintptr) {
		queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		if c.limit < maxQueued {
			size, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		}
	})
	if qerr != nil || serr != nil {
		return -1, true
	}
	// The kernel reports SO_SNDBUF doubled for its bookkeeping; count half.
	// Past maxQueued, frames wait here instead, where newer readings
	// replace older ones: a backlog in the kernel only delays them. The
	// kernel only grows the buffer: once it reaches maxQueued it is not
	// asked again.
	if c.limit < maxQueued {
		c.limit = min(size/2, maxQueued)
	}
	c.queued = queued
	return max(c.limit-queued, 0), queued == 0
}

func (c *Client) write(ctl [][]byte, rd []*frame) error {
	ctx := context.Background() // bounded by the socket's write deadline
	for _, b := range ctl {
		if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
			return err
		}
		c.hub.counters.Delivered.Add(1)
	}
	for _, f := range rd {
		if err := c.conn.Write(ctx, websocket.MessageText, f.data); err != nil {
			return err
		}
		c.hub.counters.Delivered.Add(1)
	}
	return nil
}

// Shut marks c closed so nothing more is queued for it.
func (c *Client) Shut() {
	c.gone.Store(true)
	c.mu.Lock()
	c.closed = true
	c.control, c.readings = nil, nil
	c.mu.Unlock()
}
