package fanout

import (
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/wire"
)

// frame is one encoded server message shared by every client it goes to.
type frame struct {
	seq    uint64
	sensor string // set for readings: frames of one sensor coalesce
	data   []byte
	r      wire.Reading
}

// sensorState is what the hub knows of one sensor.
type sensorState struct {
	desc wire.Sensor
	last *frame
}

// Options configures a Hub.
type Options struct {
	Epoch   string // this run of the supervisor, in hello and resume
	Version string // the server's version, in hello
	// History is how many readings resume may replay; the ring holds at
	// least minRing.
	History int
	// MaxClients bounds the attached clients: Attach refuses past it, and
	// the work queue is sized from it.
	MaxClients int
	// MaxPerKey bounds the attached clients of one ClientOptions.Key
	// (the supervisor's: an address and user), so that one of them cannot
	// take every place; 0: no bound. Clients with no key are not counted.
	MaxPerKey int
	// Writers is the number of goroutines writing to clients (default 4).
	Writers int
	// WriteTimeout is how long a client may take nothing before it is
	// closed as too slow (default 10 s).
	WriteTimeout time.Duration
	// CommandRole gives the role a command needs, for hello; may be nil.
	CommandRole func(command string) string
}

// Counters are the hub's running totals, for the built-in sensors.
type Counters struct {
	Delivered atomic.Uint64 // frames written to clients
	Coalesced atomic.Uint64 // readings skipped for a newer one of their sensor
	TooSlow   atomic.Uint64 // clients closed for being too slow
}

// Hub keeps the last value of every sensor and a ring of recent readings,
// and fans readings out to clients. Publishing never touches a busy
// client: it appends to the ring and wakes only the clients that were
// idle; each client's writer then takes everything after its cursor,
// newest value per sensor, when it gets to it. So a reading costs the
// same whether 10 or 1,000 clients are connected, and a slow client
// simply skips the readings it had no time for.
//
// Concurrency contract:
//   - mu guards seq, sensors, commands, plugins, maxClients, maxPerKey,
//     clients, perKey and closed, the ring's writes and the attached
//     clients' userJSON;
//     publish, SetPlugin, SetState, Attach, Detach, Subscribe, Resume,
//     Rehello and SetLimits take it.
//   - The ring and head are read by writers without mu (see after).
//   - demand is replaced under mu (Attach, Detach) and read without it
//     (Demand).
//   - idleMu guards idle and every client's inIdle.
//   - Lock order: mu, then a client's mu (broadcast queues under mu).
//     Nothing takes mu while holding a client's mu; idleMu is taken with
//     no other lock held. (Every lock order of livecgid: the
//     supervisor's doc.go, "Locking".)
//   - work holds each client at most once (its scheduled flag) and has
//     room for MaxClients+16: with Attach refusing past MaxClients, a send
//     to it never blocks. chunks holds idle clients woken by a reading;
//     a client can be woken again only after a writer took it, so the
//     outstanding chunks stay below the same capacity.
//   - The writers (Start) own the clients' sockets for writing; each
//     client's reader is its owner's (the supervisor's read loop).
type Hub struct {
	epoch        string
	version      string
	commandRole  func(command string) string
	writers      int
	writeTimeout atomic.Int64 // nanoseconds (SetLimits)
	history      atomic.Int64 // how far back resume may replay (≤ len(ring); SetLimits)

	mu         sync.RWMutex
	seq        uint64
	sensors    map[string]*sensorState
	commands   map[string]wire.Command
	plugins    map[string]wire.PluginInfo
	maxClients int
	maxPerKey  int
	clients    map[*Client]struct{}
	perKey     map[string]int // attached clients by key, for those with one
	closed     bool           // shutting down: attach refuses

	alarms map[string]wire.Alarm // every alarm's state, by name (alarms.go); guarded by mu

	// The ring is read by writers without mu: reading seq s is in
	// ring[s%len(ring)] (check its seq: the slot may have moved on), and
	// head is the last seq stored.
	ring []atomic.Pointer[frame]
	head atomic.Uint64

	idleMu sync.Mutex
	idle   []*Client // clients waiting for the next reading (see Client.inIdle)

	work   chan *Client   // clients with something to write
	chunks chan []*Client // idle clients woken by a reading (see wakeIdle)
	wg     sync.WaitGroup // the writers

	waitMu sync.Mutex
	waitCh chan struct{} // closed by the next Publish; nil when nobody waits

	// demand is whether a client is attached, replaced under mu at each
	// change (see Demand); read without a lock.
	demand atomic.Pointer[demand]

	counters Counters
}

// minRing is the smallest ring: what a client may fall behind before its
// writer falls back to the last value of each sensor.
const minRing = 256

// New returns a hub; Start its writers before attaching clients.
func New(o Options) *Hub {
	if o.Writers <= 0 {
		o.Writers = 4
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	h := &Hub{
		epoch:       o.Epoch,
		version:     o.Version,
		commandRole: o.CommandRole,
		maxClients:  o.MaxClients,
		maxPerKey:   o.MaxPerKey,
		writers:     o.Writers,
		sensors:     map[string]*sensorState{},
		commands:    map[string]wire.Command{},
		plugins:     map[string]wire.PluginInfo{},
		ring:        make([]atomic.Pointer[frame], max(o.History, minRing)),
		clients:     map[*Client]struct{}{},
		perKey:      map[string]int{},
		work:        make(chan *Client, o.MaxClients+16),
		chunks:      make(chan []*Client, o.MaxClients+16),
	}
	h.writeTimeout.Store(int64(o.WriteTimeout))
	h.history.Store(int64(o.History))
	h.demand.Store(&demand{changed: make(chan struct{})})
	return h
}

// SetLimits changes MaxClients, History and WriteTimeout of a running
// hub (a reloaded configuration) and returns the first two as applied:
// the work queue and the ring were sized by New, so MaxClients stays at
// most New's and History at most the ring (New's, at least minRing).
// Clients attached past a lowered MaxClients stay; Attach refuses until
// they are fewer.
func (h *Hub) SetLimits(maxClients, history int, writeTimeout time.Duration) (clients, hist int) {
	clients = min(maxClients, cap(h.work)-16)
	hist = min(history, len(h.ring))
	if writeTimeout <= 0 {
		writeTimeout = 10 * time.Second
	}
	h.mu.Lock()
	h.maxClients = clients
	h.mu.Unlock()
	h.history.Store(int64(hist))
	h.writeTimeout.Store(int64(writeTimeout))
	return clients, hist
}

// SetMaxPerKey changes MaxPerKey of a running hub. Clients attached past
// a lowered bound stay; Attach refuses until they are fewer.
func (h *Hub) SetMaxPerKey(n int) {
	h.mu.Lock()
	h.maxPerKey = n
	h.mu.Unlock()
}

// Epoch returns the hub's epoch.
func (h *Hub) Epoch() string { return h.epoch }

// Counters returns the hub's running totals.
func (h *Hub) Counters() *Counters { return &h.counters }

// Publish assigns the next sequence number to r, stores it as the sensor's
// last value and in the ring, and wakes the idle clients. It returns false
// if the sensor is unknown.
func (h *Hub) Publish(r wire.Reading) bool {
	r.Type = wire.TypeReading
	h.mu.Lock()
	s := h.sensors[r.Sensor]
	if s == nil {
		h.mu.Unlock()
		return false
	}
	h.seq++
	r.Seq = h.seq
	if r.Unit == "" {
		r.Unit = s.desc.Unit
	}
	data, err := json.Marshal(r)
	if err != nil { // a value that JSON cannot hold (NaN, ±Inf)
		r.Value, r.Error = nil, "value not representable in JSON"
		data, _ = json.Marshal(r)
	}
	f := &frame{seq: r.Seq, sensor: r.Sensor, data: data, r: r}
	s.last = f
	h.ring[h.seq%uint64(len(h.ring))].Store(f)
	h.head.Store(h.seq)
	h.mu.Unlock()
	h.wakeIdle()
	h.waitMu.Lock()
	if h.waitCh != nil {
		close(h.waitCh)
		h.waitCh = nil
	}
	h.waitMu.Unlock()
	return true
}

// Published returns a channel closed at the next Publish.
func (h *Hub) Published() <-chan struct{} {
	h.waitMu.Lock()
	defer h.waitMu.Unlock()
	if h.waitCh == nil {
		h.waitCh = make(chan struct{})
	}
	return h.waitCh
}

// wakeIdle hands every idle client to the writers, in chunks so that a
// reading costs a few channel operations however many clients wait (one
// not subscribed to the new reading finds nothing and goes idle again).
// A writer puts a client on the list only after seeing head unchanged
// under idleMu, and head moves before this takes idleMu: no reading is
// missed.
func (h *Hub) wakeIdle() {
	h.idleMu.Lock()
	batch := h.idle
	h.idle = nil
	for _, c := range batch {
		c.inIdle = false
	}
	h.idleMu.Unlock()
	for i := 0; i < len(batch); i += wakeChunk {
		h.chunks <- batch[i:min(i+wakeChunk, len(batch))] // see Hub for the capacity
	}
}

// wakeChunk is how many idle clients one writer takes at a time.
const wakeChunk = 32

// goIdle puts c on the idle list unless a reading came after cursor; it
// reports false then, and c should be written again.
func (h *Hub) goIdle(c *Client, cursor uint64) bool {
	h.idleMu.Lock()
	defer h.idleMu.Unlock()
	if h.head.Load() > cursor {
		return false
	}
	if !c.inIdle {
		c.inIdle = true
		h.idle = append(h.idle, c)
	}
	return true
}

// after returns the readings after seq that c wants, in order; with the
// ring overrun, the last value of each sensor newer than seq (counting the
// rest as coalesced). It takes no lock unless the ring was overrun.
func (h *Hub) after(c *Client, seq, head uint64, out []*frame) []*frame {
	n := uint64(len(h.ring))
	start := len(out)
	if head-seq <= n {
		for s := seq + 1; s <= head; s++ {
			f := h.ring[s%n].Load()
			if f == nil || f.seq != s {
				out = out[:start] // overwritten meanwhile: overrun after all
				goto overrun
			}
			if c.wants(f.sensor) {
				out = append(out, f)
			}
		}
		return out
	}
overrun:
	h.mu.RLock()
	for id, st := range h.sensors {
		if st.last != nil && st.last.seq > seq && c.wants(id) {
			out = append(out, st.last)
		}
	}
	h.mu.RUnlock()
	sort.Slice(out[start:], func(i, j int) bool { return out[start+i].seq < out[start+j].seq })
	if skipped := head - seq; skipped > uint64(len(out)-start) {
		h.counters.Coalesced.Add(skipped - uint64(len(out)-start))
	}
	return out
}

// broadcast queues a control frame (status, hello…) for every client.
func (h *Hub) broadcast(data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		c.QueueControl(data)
	}
}

// SetPlugin replaces the sensors and commands of plugin id (nil info
// removes it) and tells every client with a fresh hello when descriptors
// changed, after st (if any).
func (h *Hub) SetPlugin(id string, info *wire.PluginInfo, sensors []wire.Sensor, commands []wire.Command, st *wire.Status) {
	h.mu.Lock()
	before := h.descriptorsLocked(id)
	for sid, s := range h.sensors {
		if s.desc.Plugin == id && !slices.ContainsFunc(sensors, func(x wire.Sensor) bool { return x.ID == sid }) {
			delete(h.sensors, sid)
		}
	}
	for _, d := range sensors {
		if s := h.sensors[d.ID]; s != nil {
			s.desc = d
		} else {
			h.sensors[d.ID] = &sensorState{desc: d}
		}
	}
	for cid, c := range h.commands {
		if c.Plugin == id {
			delete(h.commands, cid)
		}
	}
	for _, c := range commands {
		h.commands[c.ID] = c
	}
	if info == nil {
		delete(h.plugins, id)
	} else {
		h.plugins[id] = *info
	}
	changed := before != h.descriptorsLocked(id)
	var stData []byte
	if st != nil {
		st.Type = wire.TypeStatus
		if st.T == 0 {
			st.T = time.Now().UnixMilli()
		}
		stData, _ = json.Marshal(st)
	}
	var hello []byte
	if changed {
		hello, _ = json.Marshal(h.helloLocked())
	}
	for c := range h.clients {
		if stData != nil {
			c.QueueControl(stData)
		}
		if hello != nil {
			c.QueueControl(c.hello(hello))
		}
	}
	h.mu.Unlock()
}

// SetState records a plugin's state without touching its descriptors and
// tells every client.
func (h *Hub) SetState(st wire.Status) {
	h.mu.Lock()
	info := h.plugins[st.Plugin]
	info.ID, info.State, info.Reason = st.Plugin, st.State, st.Reason
	if st.Version != "" {
		info.Version = st.Version
	}
	h.plugins[st.Plugin] = info
	h.mu.Unlock()
	st.Type = wire.TypeStatus
	if st.T == 0 {
		st.T = time.Now().UnixMilli()
	}
	b, _ := json.Marshal(st)
	h.broadcast(b)
}

// Rehello sends every client a fresh hello: what CommandRole says may
// have changed. A client in who is told it is signed in as that identity
// from now on (the "user" member of its hellos).
func (h *Hub) Rehello(who map[*Client]auth.Identity) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hello, _ := json.Marshal(h.helloLocked())
	for c := range h.clients {
		if id, ok := who[c]; ok {
			c.setUser(id) // read under mu only (hello)
		}
		c.QueueControl(c.hello(hello))
	}
}

// descriptorsLocked is a comparable summary of one plugin's descriptors.
func (h *Hub) descriptorsLocked(id string) string {
	var ss []wire.Sensor
	for _, s := range h.sensors {
		if s.desc.Plugin == id {
			ss = append(ss, s.desc)
		}
	}
	var cs []wire.Command
	for _, c := range h.commands {
		if c.Plugin == id {
			cs = append(cs, c)
		}
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].ID < ss[j].ID })
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	b, _ := json.Marshal([]any{ss, cs})
	return string(b)
}

func (h *Hub) helloLocked() wire.Hello {
	m := wire.Hello{
		Type: wire.TypeHello, Version: wire.Version, Server: h.version, Epoch: h.epoch, Seq: h.seq,
		Sensors: []wire.Sensor{}, Commands: []wire.Command{}, Plugins: []wire.PluginInfo{},
	}
	for _, s := range h.sensors {
		m.Sensors = append(m.Sensors, s.desc)
	}
	for _, c := range h.commands {
		if h.commandRole != nil {
			c.Role = h.commandRole(c.ID)
		}
		m.Commands = append(m.Commands, c)
	}
	for _, p := range h.plugins {
		m.Plugins = append(m.Plugins, p)
	}
	sort.Slice(m.Sensors, func(i, j int) bool { return m.Sensors[i].ID < m.Sensors[j].ID })
	sort.Slice(m.Commands, func(i, j int) bool { return m.Commands[i].ID < m.Commands[j].ID })
	sort.Slice(m.Plugins, func(i, j int) bool { return m.Plugins[i].ID < m.Plugins[j].ID })
	return m
}

// snapshotLocked returns the last value of every sensor wanted.
func (h *Hub) snapshotLocked(wants func(sensor string) bool, reason string) wire.Snapshot {
	s := wire.Snapshot{Type: wire.TypeSnapshot, Mode: wire.SnapshotFull, Reason: reason, Seq: h.seq, Readings: []wire.Reading{}, Alarms: h.alarmsLocked()}
	for id, st := range h.sensors {
		if st.last != nil && wants(id) {
			r := st.last.r
			r.Type = ""
			s.Readings = append(s.Readings, r)
		}
	}
	sort.Slice(s.Readings, func(i, j int) bool { return s.Readings[i].Sensor < s.Readings[j].Sensor })
	return s
}

// replayLocked returns the readings after seq that are wanted, or
// false when the history no longer reaches back that far.
func (h *Hub) replayLocked(wants func(sensor string) bool, seq uint64) (wire.Snapshot, bool) {
	s := wire.Snapshot{Type: wire.TypeSnapshot, Mode: wire.SnapshotReplay, Seq: h.seq, Readings: []wire.Reading{}, Alarms: h.alarmsLocked()}
	if h.seq-seq > uint64(h.history.Load()) {
		return s, false
	}
	n := uint64(len(h.ring))
	for i := seq + 1; i <= h.seq; i++ {
		if f := h.ring[i%n].Load(); wants(f.sensor) {
			r := f.r
			r.Type = ""
			s.Readings = append(s.Readings, r)
		}
	}
	return s, true
}

// Errors of Attach.
var (
	ErrTooMany       = errors.New("too many clients")
	ErrTooManyPerKey = errors.New("too many clients of one key")
	ErrClosed        = errors.New("hub shutting down")
)

// Attach registers c and queues hello and a full snapshot for it,
// atomically with respect to publish so that no reading slips in before
// them, and with the client counts: past MaxClients it returns ErrTooMany
// (the work queue's capacity rests on this), past MaxPerKey clients of
// c's key ErrTooManyPerKey, once the hub is shutting down ErrClosed.
func (h *Hub) Attach(c *Client) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if len(h.clients) >= h.maxClients {
		return ErrTooMany
	}
	if c.key != "" && h.maxPerKey > 0 && h.perKey[c.key] >= h.maxPerKey {
		return ErrTooManyPerKey
	}
	hello, _ := json.Marshal(h.helloLocked())
	snap, _ := json.Marshal(h.snapshotLocked(c.wants, ""))
	c.cursor = h.seq // the snapshot covers everything up to here
	c.QueueControl(c.hello(hello))
	c.QueueControl(snap)
	h.clients[c] = struct{}{}
	if c.key != "" {
		h.perKey[c.key]++
	}
	h.consumersLocked()
	return nil
}

// Shutdown refuses new clients and returns the current ones.
func (h *Hub) Shutdown() []*Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	return h.clientsLocked()
}

// Clients returns the attached clients.
func (h *Hub) Clients() []*Client {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.clientsLocked()
}

func (h *Hub) clientsLocked() []*Client {
	cs := make([]*Client, 0, len(h.clients))
	for c := range h.clients {
		cs = append(cs, c)
	}
	return cs
}

// Detach shuts c and forgets it (its reader ended). A client is shut
// before it leaves the list, so that Stop, which shuts the clients still
// listed, knows every client closed (none can queue itself again) before
// it closes the work queue.
func (h *Hub) Detach(c *Client) {
	c.Shut()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		if c.key != "" {
			if h.perKey[c.key]--; h.perKey[c.key] == 0 {
				delete(h.perKey, c.key)
			}
		}
		h.consumersLocked()
	}
}

// demand is one state of Hub.Demand: it is never changed, but replaced.
type demand struct {
	active  bool
	changed chan struct{} // closed when it is replaced
}

// consumersLocked replaces the demand when the client count went from 0
// to 1 or from 1 to 0.
func (h *Hub) consumersLocked() {
	old := h.demand.Load()
	if active := len(h.clients) > 0; active != old.active {
		h.demand.Store(&demand{active: active, changed: make(chan struct{})})
		close(old.changed)
	}
}

// Demand reports whether anyone consumes readings now: every attached
// client does (a browser, a poll session, the broker bridge), and a
// channel that is closed at the next change (the first client attached,
// the last detached). Sampling follows it: plugins stream, and the
// supervisor publishes its own figures and pings clients, only while
// someone consumes readings; the idle timeout runs only while no one
// does. It takes no lock.
func (h *Hub) Demand() (active bool, changed <-chan struct{}) {
	d := h.demand.Load()
	return d.active, d.changed
}

// Plugin returns what the hub knows of plugin id.
func (h *Hub) Plugin(id string) wire.PluginInfo {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.plugins[id]
}

// ClientCount returns the number of attached clients.
func (h *Hub) ClientCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// Command looks up a command descriptor by id.
func (h *Hub) Command(id string) (wire.Command, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	c, ok := h.commands[id]
	return c, ok
}

// Resume answers a client's resume request.
func (h *Hub) Resume(c *Client, epoch string, seq uint64) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s wire.Snapshot
	switch {
	case epoch != h.epoch:
		s = h.snapshotLocked(c.wants, "epoch changed: the supervisor restarted")
	case seq > h.seq:
		s = h.snapshotLocked(c.wants, "sequence ahead of the server")
	default:
		var ok bool
		if s, ok = h.replayLocked(c.wants, seq); !ok {
			s = h.snapshotLocked(c.wants, "history gone: more readings were missed than are kept")
		}
	}
	c.skipTo(h.seq) // the answer covers everything up to here
	b, _ := json.Marshal(s)
	return b
}

// Subscribe answers a client's subscribe request with a full snapshot of
// its new selection; it returns the ids it did not know.
func (h *Hub) Subscribe(c *Client, ids []string) (snap []byte, unknown []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var set map[string]bool
	if len(ids) > 0 {
		set = map[string]bool{}
		for _, id := range ids {
			if h.sensors[id] == nil {
				unknown = append(unknown, id)
			}
			set[id] = true
		}
	}
	c.setSubs(set)
	c.skipTo(h.seq)
	b, _ := json.Marshal(h.snapshotLocked(c.wants, "subscribed"))
	return b, unknown
}

// A consumer without a WebSocket is a socketless client
// (ClientOptions.Control) that reads the hub when it wakes at Published:
// long polling with Collect, the broker bridge with Readings.

// Hello returns the hello a new consumer gets (without a "user" member).
func (h *Hub) Hello() wire.Hello {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.helloLocked()
}

// Collect returns what a socketless client c (ClientOptions.Control)
// reads after since, and the sequence number it covers: with since nil,
// hello (with c's user) and a full snapshot; a full snapshot, with its
// reason, when since is ahead of the hub or older than the history; else
// the readings after since that c wants, newest per sensor (none when
// nothing came).
func (h *Hub) Collect(c *Client, since *uint64) (frames [][]byte, seq uint64) {
	head := h.head.Load()
	var reason string
	switch {
	case since == nil:
	case *since > head:
		reason = "sequence ahead of the server"
	case head-*since > uint64(h.history.Load()):
		reason = "history gone: more readings were missed than are kept"
	default:
		for _, f := range newest(h.after(c, *since, head, nil), &h.counters.Coalesced) {
			frames = append(frames, f.data)
		}
		return frames, head
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if since == nil {
		b, _ := json.Marshal(h.helloLocked())
		frames = append(frames, c.hello(b))
	}
	b, _ := json.Marshal(h.snapshotLocked(c.wants, reason))
	return append(frames, b), h.seq
}

// Readings appends to out the readings after since that a socketless
// client c wants, newest per sensor (the last value of each when since
// is older than the ring), and returns them with the sequence number
// they cover: what a consumer that is not a browser (the broker bridge)
// takes each time it wakes at Published. With since 0 it gets the last
// value of every sensor.
func (h *Hub) Readings(c *Client, since uint64, out []wire.Reading) ([]wire.Reading, uint64) {
	head := h.head.Load()
	if since >= head {
		return out, head
	}
	var fs []*frame
	if since == 0 {
		h.mu.RLock()
		head = h.seq
		for id, st := range h.sensors {
			if st.last != nil && c.wants(id) {
				fs = append(fs, st.last)
			}
		}
		h.mu.RUnlock()
		sort.Slice(fs, func(i, j int) bool { return fs[i].seq < fs[j].seq })
	} else {
		fs = newest(h.after(c, since, head, nil), &h.counters.Coalesced)
	}
	for _, f := range fs {
		out = append(out, f.r)
	}
	return out, head
}
