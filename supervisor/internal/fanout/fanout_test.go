package fanout

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/wire"
)

// newTestHub returns a hub with sensors a, b and c of plugin p.
func newTestHub(t testing.TB, o Options) *Hub {
	if o.MaxClients == 0 {
		o.MaxClients = 100
	}
	h := New(o)
	var ss []wire.Sensor
	for _, id := range []string{"p.a", "p.b", "p.c"} {
		ss = append(ss, wire.Sensor{ID: id, Plugin: "p", ValueType: wire.ValueNumber, IntervalMS: 10})
	}
	h.SetPlugin("p", &wire.PluginInfo{ID: "p", State: wire.StateOnline}, ss, nil, nil)
	return h
}

func pub(t testing.TB, h *Hub, sensor string, v float64) {
	if !h.Publish(wire.Reading{Sensor: sensor, Value: v}) {
		t.Fatalf("publish %s: unknown sensor", sensor)
	}
}

// bare returns an attached client with no connection: for what the
// writers would take, without writers.
func bare(t testing.TB, h *Hub) *Client {
	c := h.NewClient(ClientOptions{})
	if err := h.Attach(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func seqs(fs []*frame) []uint64 {
	var out []uint64
	for _, f := range fs {
		out = append(out, f.seq)
	}
	return out
}

func TestRingInOrder(t *testing.T) {
	h := newTestHub(t, Options{})
	c := bare(t, h)
	for i := range 10 {
		pub(t, h, []string{"p.a", "p.b"}[i%2], float64(i))
	}
	got := h.after(c, c.cursor, h.head.Load(), nil)
	if len(got) != 10 || got[0].seq != 1 || got[9].seq != 10 {
		t.Fatalf("after: %v, want seqs 1..10", seqs(got))
	}
	if n := h.counters.Coalesced.Load(); n != 0 {
		t.Fatalf("coalesced %d, want 0", n)
	}
}

func TestRingOverrun(t *testing.T) {
	h := newTestHub(t, Options{})
	c := bare(t, h)
	const n = 3 * minRing
	for i := range n {
		pub(t, h, []string{"p.a", "p.b", "p.c"}[i%3], float64(i))
	}
	got := h.after(c, 0, h.head.Load(), nil)
	// The ring was overrun: the last value of each sensor, in order.
	if want := []uint64{n - 2, n - 1, n}; fmt.Sprint(seqs(got)) != fmt.Sprint(want) {
		t.Fatalf("after overrun: %v, want %v", seqs(got), want)
	}
	if got, want := h.counters.Coalesced.Load(), uint64(n-3); got != want {
		t.Fatalf("coalesced %d, want %d", got, want)
	}
	// A subscription filters the fallback too.
	h.Subscribe(c, []string{"p.b"})
	got = h.after(c, 0, h.head.Load(), nil)
	if len(got) != 1 || got[0].sensor != "p.b" {
		t.Fatalf("after overrun, subscribed to p.b: %v", seqs(got))
	}
}

func TestNewestPerSensor(t *testing.T) {
	f := func(seq uint64, s string) *frame { return &frame{seq: seq, sensor: s} }
	var coalesced atomic.Uint64
	for _, n := range []int{5, 100} { // both the short and the long path
		coalesced.Store(0)
		var rd []*frame
		for i := range n {
			rd = append(rd, f(uint64(i+1), []string{"a", "b", "a", "c", "a"}[i%5]))
		}
		got := newest(rd, &coalesced)
		if len(got) != 3 {
			t.Fatalf("n=%d: %d frames kept, want one per sensor", n, len(got))
		}
		for i := 1; i < len(got); i++ {
			if got[i].seq < got[i-1].seq {
				t.Fatalf("n=%d: order lost: %v", n, seqs(got))
			}
		}
		if last := got[len(got)-1]; last.seq != uint64(n) {
			t.Fatalf("n=%d: the newest reading is gone: %v", n, seqs(got))
		}
		if coalesced.Load() != uint64(n-3) {
			t.Fatalf("n=%d: coalesced %d, want %d", n, coalesced.Load(), n-3)
		}
	}
}

func TestRequeue(t *testing.T) {
	h := newTestHub(t, Options{})
	c := bare(t, h)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.control = [][]byte{[]byte("later")}
	c.readings = []*frame{{seq: 9, sensor: "p.a"}}
	c.requeueLocked([][]byte{[]byte("first")}, []*frame{{seq: 3, sensor: "p.a"}, {seq: 4, sensor: "p.b"}})
	if got := fmt.Sprintf("%s", c.control); got != "[first later]" {
		t.Fatalf("control after requeue: %s, want what did not fit first", got)
	}
	if got := seqs(c.readings); fmt.Sprint(got) != "[4 9]" {
		t.Fatalf("readings after requeue: %v, want [4 9] (3 superseded by 9)", got)
	}
	if h.counters.Coalesced.Load() != 1 {
		t.Fatalf("coalesced %d, want 1", h.counters.Coalesced.Load())
	}
}

// TestAttachCapacity attaches from many goroutines at once: exactly
// MaxClients get in; Demand changes with the first client attached and
// the last one detached, and only then.
func TestAttachCapacity(t *testing.T) {
	const maxClients, tries = 10, 200
	h := newTestHub(t, Options{MaxClients: maxClients})
	active, idle := h.Demand()
	if active {
		t.Fatal("demand with no client")
	}
	var ok, full atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range tries {
		wg.Go(func() {
			<-start
			c := h.NewClient(ClientOptions{})
			switch err := h.Attach(c); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrTooMany):
				full.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != maxClients || full.Load() != tries-maxClients || h.ClientCount() != maxClients {
		t.Fatalf("attached %d, refused %d, count %d; want %d, %d, %d", ok.Load(), full.Load(), h.ClientCount(), maxClients, tries-maxClients, maxClients)
	}
	if len(h.work) > cap(h.work) || cap(h.work) <= maxClients {
		t.Fatalf("work queue %d of %d", len(h.work), cap(h.work))
	}
	select {
	case <-idle:
	default:
		t.Fatal("Demand's channel not closed by the first client")
	}
	active, busy := h.Demand()
	if !active {
		t.Fatal("no demand with clients attached")
	}
	cs := h.Clients()
	for _, c := range cs[1:] {
		h.Detach(c)
		h.Detach(c) // twice: counted once
	}
	if active, ch := h.Demand(); !active || ch != busy {
		t.Fatal("demand changed with a client left")
	}
	h.Detach(cs[0])
	select {
	case <-busy:
	default:
		t.Fatal("Demand's channel not closed by the last client leaving")
	}
	if active, _ := h.Demand(); active || h.ClientCount() != 0 {
		t.Fatalf("demand %v with %d clients after all left", active, h.ClientCount())
	}
	h.Shutdown()
	if err := h.Attach(h.NewClient(ClientOptions{})); !errors.Is(err, ErrClosed) {
		t.Fatalf("attach after shutdown: %v, want ErrClosed", err)
	}
}

func TestSubscribeResumeReplay(t *testing.T) {
	h := newTestHub(t, Options{Epoch: "e1", History: 8})
	for i := range 5 {
		pub(t, h, []string{"p.a", "p.b"}[i%2], float64(i))
	}
	c := bare(t, h)
	var snap wire.Snapshot
	decode := func(b []byte) {
		t.Helper()
		snap = wire.Snapshot{}
		if err := json.Unmarshal(b, &snap); err != nil {
			t.Fatal(err)
		}
	}
	b, unknown := h.Subscribe(c, []string{"p.a", "p.zz"})
	decode(b)
	if fmt.Sprint(unknown) != "[p.zz]" || len(snap.Readings) != 1 || snap.Readings[0].Sensor != "p.a" || snap.Seq != 5 {
		t.Fatalf("subscribe: unknown %v, snapshot %+v", unknown, snap)
	}
	if c.cursor != 5 {
		t.Fatalf("cursor %d after subscribe, want 5", c.cursor)
	}
	h.Subscribe(c, nil)
	for i := range 4 {
		pub(t, h, []string{"p.a", "p.b"}[i%2], float64(i))
	}
	decode(h.Resume(c, "e1", 6))
	if snap.Mode != wire.SnapshotReplay || len(snap.Readings) != 3 || snap.Readings[0].Seq != 7 || snap.Seq != 9 {
		t.Fatalf("resume from 6: %+v", snap)
	}
	decode(h.Resume(c, "e0", 6))
	if snap.Mode != wire.SnapshotFull || !strings.Contains(snap.Reason, "epoch") {
		t.Fatalf("resume with another epoch: %+v", snap)
	}
	decode(h.Resume(c, "e1", 99))
	if snap.Mode != wire.SnapshotFull || !strings.Contains(snap.Reason, "ahead") {
		t.Fatalf("resume ahead: %+v", snap)
	}
	decode(h.Resume(c, "e1", 0)) // 9 back, history 8
	if snap.Mode != wire.SnapshotFull || !strings.Contains(snap.Reason, "history") || len(snap.Readings) != 2 {
		t.Fatalf("resume past the history: %+v", snap)
	}
}

// --- with real sockets on loopback ---

// peer is the browser end of a client.
type peer struct {
	conn *websocket.Conn
	c    *Client
}

// dial connects a WebSocket client to h over loopback TCP and attaches
// the server end.
func dial(t testing.TB, h *Hub, ln net.Listener) *peer {
	t.Helper()
	type accepted struct {
		c   *Client
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			ch <- accepted{err: err}
			return
		}
		br := bufio.NewReader(nc)
		req, err := http.ReadRequest(br)
		if err != nil {
			ch <- accepted{err: err}
			return
		}
		w := &hijacker{nc: nc, br: br, h: http.Header{}}
		conn, err := websocket.Accept(w, req, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			ch <- accepted{err: err}
			return
		}
		c := h.NewClient(ClientOptions{Conn: conn, Net: nc, Cork: w.cork})
		ch <- accepted{c: c, err: h.Attach(c)}
		go func() { // the reader: pongs and closes
			for {
				if _, _, err := conn.Read(context.Background()); err != nil {
					h.Detach(c)
					c.Shut()
					conn.CloseNow()
					return
				}
			}
		}()
	}()
	conn, _, err := websocket.Dial(context.Background(), "ws://"+ln.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(1 << 20)
	a := <-ch
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &peer{conn: conn, c: a.c}
}

// hijacker is enough of an http.ResponseWriter for websocket.Accept.
type hijacker struct {
	nc     net.Conn
	br     *bufio.Reader
	h      http.Header
	status int
	cork   *Cork
}

func (w *hijacker) Header() http.Header         { return w.h }
func (w *hijacker) Write(p []byte) (int, error) { return len(p), nil }
func (w *hijacker) WriteHeader(code int)        { w.status = code }
func (w *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	w.h.Write(&b)
	b.WriteString("\r\n")
	if _, err := w.nc.Write([]byte(b.String())); err != nil {
		return nil, nil, err
	}
	w.cork = NewCork(w.nc)
	return w.nc, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.cork, 1024)), nil
}

func listen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func startHub(t testing.TB, o Options) *Hub {
	h := newTestHub(t, o)
	h.Start()
	t.Cleanup(func() {
		for _, c := range h.Shutdown() {
			c.Shut()
			c.conn.CloseNow()
		}
		h.Stop()
	})
	return h
}

// next reads p's frames until one of type typ.
func (p *peer) next(t testing.TB, typ string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, b, err := p.conn.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["type"] == typ {
			return m
		}
	}
}

// TestManyWriters sends readings to many clients through many writers:
// every client gets its readings in order, and the last one of each
// round; the work queue never blocks a publisher.
func TestManyWriters(t *testing.T) {
	const clients, rounds = 40, 30
	h := startHub(t, Options{Writers: 8})
	ln := listen(t)
	peers := make([]*peer, clients)
	for i := range peers {
		peers[i] = dial(t, h, ln)
		peers[i].next(t, "snapshot")
	}
	var wg sync.WaitGroup
	for r := range rounds {
		for _, s := range []string{"p.a", "p.b", "p.c"} {
			pub(t, h, s, float64(r))
		}
		want := float64(3 * (r + 1)) // the seq of this round's last reading
		for _, p := range peers {
			wg.Go(func() {
				var last float64
				for {
					m := p.next(t, "reading")
					seq := m["seq"].(float64)
					if seq <= last {
						t.Errorf("seq %v after %v", seq, last)
					}
					last = seq
					if seq == want {
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

// TestSlowClient stops reading on one client while a healthy one reads
// on: the stuck one is closed as too slow, the other gets the newest value.
func TestSlowClient(t *testing.T) {
	// The write timeout is long enough for the healthy client to answer
	// its pings on a loaded machine.
	h := startHub(t, Options{WriteTimeout: 3 * time.Second})
	ln := listen(t)
	stuck := dial(t, h, ln)
	healthy := dial(t, h, ln)
	healthy.next(t, "snapshot")
	big := strings.Repeat("x", 4000)
	done := make(chan struct{})
	go func() { // the healthy client reads everything
		defer close(done)
		for {
			m := healthy.next(t, "reading")
			if m["value"] == "last" {
				return
			}
		}
	}()
	for h.counters.TooSlow.Load() == 0 {
		if !h.Publish(wire.Reading{Sensor: "p.a", Value: big}) {
			t.Fatal("unknown sensor")
		}
		time.Sleep(time.Millisecond) // pacing only: the loop waits for the counter
	}
	pub(t, h, "p.b", 0)
	h.Publish(wire.Reading{Sensor: "p.a", Value: "last"})
	<-done
	if !stuck.c.gone.Load() && !stuck.c.closedNow() {
		t.Fatal("the stuck client was counted too slow but is not closed")
	}
	if h.counters.Coalesced.Load() == 0 {
		t.Fatal("nothing coalesced for the stuck client")
	}
}

func (c *Client) closedNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// TestFullSocketNeverParksWriter fills one client's socket with a single
// writer and a write timeout far longer than the test: the healthy client
// still gets its readings, so the writer never waited on the full socket.
func TestFullSocketNeverParksWriter(t *testing.T) {
	h := startHub(t, Options{Writers: 1, WriteTimeout: time.Hour})
	ln := listen(t)
	stuck := dial(t, h, ln)
	healthy := dial(t, h, ln)
	healthy.next(t, "snapshot")
	big := strings.Repeat("x", 4000)
	for i := 0; !stuck.c.isBlocked(); i++ {
		if !h.Publish(wire.Reading{Sensor: []string{"p.a", "p.b", "p.c"}[i%3], Value: big}) {
			t.Fatal("unknown sensor")
		}
		healthy.next(t, "reading") // one round at a time: the writer is free between rounds
	}
	h.Publish(wire.Reading{Sensor: "p.a", Value: "last"})
	for healthy.next(t, "reading")["value"] != "last" {
	}
	if stuck.c.closedNow() {
		t.Fatal("the stuck client was closed before its write timeout")
	}
}

func (c *Client) isBlocked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.blocked.IsZero()
}

// TestControlSink: a client with a Control sink and no socket gets hello
// (with its user), snapshot and status frames there, counts toward
// MaxClients, and reads readings with Collect.
func TestControlSink(t *testing.T) {
	h := newTestHub(t, Options{History: 4, MaxClients: 1})
	pub(t, h, "p.a", 1)
	var got [][]byte
	c := h.NewClient(ClientOptions{Who: auth.Identity{User: "ann", Role: "admin"}, Control: func(b []byte) { got = append(got, b) }})
	if err := h.Attach(c); err != nil {
		t.Fatal(err)
	}
	if err := h.Attach(h.NewClient(ClientOptions{})); err != ErrTooMany {
		t.Fatalf("second attach with max_clients 1: %v, want ErrTooMany", err)
	}
	h.SetState(wire.Status{Plugin: "p", State: wire.StateOnline})
	if len(got) != 3 || !strings.Contains(string(got[0]), `"user":{"name":"ann","role":"admin"}`) ||
		!strings.Contains(string(got[1]), `"type":"snapshot"`) || !strings.Contains(string(got[2]), `"type":"status"`) {
		t.Fatalf("control frames: %q", got)
	}
	if c.Cursor() != 1 {
		t.Fatalf("cursor %d after attach, want 1", c.Cursor())
	}
	cur := c.Cursor()
	if fs, seq := h.Collect(c, &cur); len(fs) != 0 || seq != 1 {
		t.Fatalf("collect with nothing new: %q, %d", fs, seq)
	}
	ch := h.Published()
	pub(t, h, "p.b", 2)
	pub(t, h, "p.b", 3)
	<-ch
	if fs, seq := h.Collect(c, &cur); len(fs) != 1 || seq != 3 || !strings.Contains(string(fs[0]), `"value":3`) {
		t.Fatalf("collect after 2 readings of p.b: %q, %d; want the newest", fs, seq)
	}
	if fs, _ := h.Collect(c, nil); len(fs) != 2 || !strings.Contains(string(fs[0]), `"user"`) {
		t.Fatalf("collect from scratch: %q, want hello and snapshot", fs)
	}
	for range 5 {
		pub(t, h, "p.c", 4)
	}
	if fs, _ := h.Collect(c, &cur); len(fs) != 1 || !strings.Contains(string(fs[0]), "history gone") {
		t.Fatalf("collect past the history: %q, want a snapshot", fs)
	}
}

// TestTLSSendBuffer: a client over TLS asks the TCP socket under it how
// full its send buffer is.
func TestTLSSendBuffer(t *testing.T) {
	ln := listen(t)
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	h := newTestHub(t, Options{})
	if c := h.NewClient(ClientOptions{Net: tls.Client(nc, &tls.Config{})}); c.raw == nil {
		t.Fatal("a client over TLS has no raw socket for its send buffer")
	}
}

// TestReadings: a consumer that looks only now and then (the broker
// bridge) gets at most one reading per sensor, the newest, however many
// were published meanwhile, also past the ring; with since 0, the last
// value of each sensor.
func TestReadings(t *testing.T) {
	h := newTestHub(t, Options{History: 4})
	c := h.NewClient(ClientOptions{Control: func([]byte) {}})
	if err := h.Attach(c); err != nil {
		t.Fatal(err)
	}
	if rs, seq := h.Readings(c, 0, nil); len(rs) != 0 || seq != 0 {
		t.Fatalf("nothing published: %v, %d", rs, seq)
	}
	pub(t, h, "p.a", 1)
	pub(t, h, "p.b", 2)
	rs, seq := h.Readings(c, 0, nil)
	if len(rs) != 2 || rs[0].Value != 1.0 || rs[1].Value != 2.0 || seq != 2 {
		t.Fatalf("since 0: %v, %d; want p.a 1 and p.b 2 up to 2", rs, seq)
	}
	for _, n := range []int{10, 10 * minRing} { // within the ring, and past it
		for i := range n {
			pub(t, h, "p.a", float64(i))
			pub(t, h, "p.c", float64(-i))
		}
		var got []wire.Reading
		got, seq = h.Readings(c, seq, got)
		if len(got) != 2 || got[0].Sensor != "p.a" || got[0].Value != float64(n-1) || got[1].Sensor != "p.c" || got[1].Value != float64(1-n) {
			t.Fatalf("after %d readings of p.a and p.c: %v; want the newest of each", n, got)
		}
		if rs, s := h.Readings(c, seq, nil); len(rs) != 0 || s != seq {
			t.Fatalf("nothing new: %v, %d", rs, s)
		}
	}
}

// TestSetLimits: a running hub takes a lower max_clients at once (the
// clients in stay), never more than New made room for, and history up to
// its ring; Rehello gives each client a hello with its user now.
func TestSetLimits(t *testing.T) {
	h := newTestHub(t, Options{MaxClients: 3, History: 300})
	var got [][]byte
	mk := func() *Client {
		return h.NewClient(ClientOptions{Who: auth.Identity{User: "u", Role: auth.RoleOperator}, Control: func(b []byte) { got = append(got, b) }})
	}
	a, b := mk(), mk()
	for _, c := range []*Client{a, b} {
		if err := h.Attach(c); err != nil {
			t.Fatal(err)
		}
	}
	if c, hist := h.SetLimits(1, 1000, 0); c != 1 || hist != 300 {
		t.Errorf("SetLimits(1, 1000) = %d, %d; want 1, 300 (the ring)", c, hist)
	}
	if err := h.Attach(mk()); !errors.Is(err, ErrTooMany) || h.ClientCount() != 2 {
		t.Errorf("attach past a lowered max_clients: %v, %d clients", err, h.ClientCount())
	}
	if c, hist := h.SetLimits(100, 10, time.Second); c != 3 || hist != 10 {
		t.Errorf("SetLimits(100, 10) = %d, %d; want 3 (New's), 10", c, hist)
	}
	got = nil
	h.Rehello(map[*Client]auth.Identity{a: {User: "u", Role: auth.RoleViewer}})
	if len(got) != 2 || !strings.Contains(string(got[0])+string(got[1]), `"user":{"name":"u","role":"viewer"}`) ||
		!strings.Contains(string(got[0])+string(got[1]), `"user":{"name":"u","role":"operator"}`) {
		t.Errorf("Rehello frames:\n%s", got)
	}
}
