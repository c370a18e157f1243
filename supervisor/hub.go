package supervisor

import (
	"encoding/json"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

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

// hub keeps the last value of every sensor and a ring of recent readings,
// and fans readings out to clients. Publishing never touches a busy
// client: it appends to the ring and wakes only the clients that were
// idle; each client's writer then takes everything after its cursor,
// newest value per sensor, when it gets to it. So a reading costs the
// same whether 10 or 1,000 clients are connected, and a slow client
// simply skips the readings it had no time for.
type hub struct {
	epoch   string
	version string
	// commandRole gives the role a command needs, for hello.
	commandRole func(command string) string

	mu       sync.RWMutex
	seq      uint64
	sensors  map[string]*sensorState
	commands map[string]wire.Command
	plugins  map[string]wire.PluginInfo
	history  int // how far back resume may replay (≤ len(ring))
	clients  map[*client]struct{}
	closed   bool // shutting down: attach refuses

	demand *demand // each attached client holds it (see demand.go)

	// The ring is read by writers without mu: reading seq s is in
	// ring[s%len(ring)] (check its seq: the slot may have moved on), and
	// head is the last seq stored.
	ring []atomic.Pointer[frame]
	head atomic.Uint64

	idleMu sync.Mutex
	idle   []*client // clients waiting for the next reading (see client.inIdle)

	polled pollSignal // fired at every reading, for waiting polls (poll.go)

	work   chan *client   // clients with something to write
	chunks chan []*client // idle clients woken by a reading (see wakeIdle)

	// counters for the built-in sensors
	delivered atomic.Uint64
	coalesced atomic.Uint64
	tooSlow   atomic.Uint64
}

// minRing is the smallest ring: what a client may fall behind before its
// writer falls back to the last value of each sensor.
const minRing = 256

func newHub(epoch, version string, history int) *hub {
	return &hub{
		epoch:    epoch,
		version:  version,
		sensors:  map[string]*sensorState{},
		commands: map[string]wire.Command{},
		plugins:  map[string]wire.PluginInfo{},
		ring:     make([]atomic.Pointer[frame], max(history, minRing)),
		history:  history,
		clients:  map[*client]struct{}{},
	}
}

// publish assigns the next sequence number to r, stores it as the sensor's
// last value and in the ring, and wakes the idle clients. It returns false
// if the sensor is unknown.
func (h *hub) publish(r wire.Reading) bool {
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
	h.polled.fire()
	return true
}

// wakeIdle hands every idle client to the writers, in chunks so that a
// reading costs a few channel operations however many clients wait (one
// not subscribed to the new reading finds nothing and goes idle again).
// A writer puts a client on the list only after seeing head unchanged
// under idleMu, and head moves before this takes idleMu: no reading is
// missed.
func (h *hub) wakeIdle() {
	h.idleMu.Lock()
	batch := h.idle
	h.idle = nil
	for _, c := range batch {
		c.inIdle = false
	}
	h.idleMu.Unlock()
	for i := 0; i < len(batch); i += wakeChunk {
		h.chunks <- batch[i:min(i+wakeChunk, len(batch))] // see Supervisor.New for the capacity
	}
}

// wakeChunk is how many idle clients one writer takes at a time.
const wakeChunk = 32

// goIdle puts c on the idle list unless a reading came after cursor; it
// reports false then, and c should be written again.
func (h *hub) goIdle(c *client, cursor uint64) bool {
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
func (h *hub) after(c *client, seq, head uint64, out []*frame) []*frame {
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
		h.coalesced.Add(skipped - uint64(len(out)-start))
	}
	return out
}

// broadcast queues a control frame (status, hello…) for every client.
func (h *hub) broadcast(data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		c.queueControl(data)
	}
}

// setPlugin replaces the sensors and commands of plugin id (nil info
// removes it) and tells every client with a fresh hello when descriptors
// changed, after st (if any).
func (h *hub) setPlugin(id string, info *wire.PluginInfo, sensors []wire.Sensor, commands []wire.Command, st *wire.Status) {
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
			c.queueControl(stData)
		}
		if hello != nil {
			c.queueControl(c.hello(hello))
		}
	}
	h.mu.Unlock()
}

// setState records a plugin's state without touching its descriptors and
// tells every client.
func (h *hub) setState(st wire.Status) {
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

// descriptorsLocked is a comparable summary of one plugin's descriptors.
func (h *hub) descriptorsLocked(id string) string {
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

func (h *hub) helloLocked() wire.Hello {
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

// snapshotLocked returns the last value of every sensor c subscribes to.
func (h *hub) snapshotLocked(c *client, reason string) wire.Snapshot {
	s := wire.Snapshot{Type: wire.TypeSnapshot, Mode: wire.SnapshotFull, Reason: reason, Seq: h.seq, Readings: []wire.Reading{}}
	for id, st := range h.sensors {
		if st.last != nil && c.wants(id) {
			r := st.last.r
			r.Type = ""
			s.Readings = append(s.Readings, r)
		}
	}
	sort.Slice(s.Readings, func(i, j int) bool { return s.Readings[i].Sensor < s.Readings[j].Sensor })
	return s
}

// replayLocked returns the readings after seq that c subscribes to, or
// false when the history no longer reaches back that far.
func (h *hub) replayLocked(c *client, seq uint64) (wire.Snapshot, bool) {
	s := wire.Snapshot{Type: wire.TypeSnapshot, Mode: wire.SnapshotReplay, Seq: h.seq, Readings: []wire.Reading{}}
	if h.seq-seq > uint64(h.history) {
		return s, false
	}
	n := uint64(len(h.ring))
	for i := seq + 1; i <= h.seq; i++ {
		if f := h.ring[i%n].Load(); c.wants(f.sensor) {
			r := f.r
			r.Type = ""
			s.Readings = append(s.Readings, r)
		}
	}
	return s, true
}

// attach registers c and queues hello and a full snapshot for it, atomically
// with respect to publish so that no reading slips in before them. It
// returns false once the hub is shutting down.
func (h *hub) attach(c *client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	hello, _ := json.Marshal(h.helloLocked())
	snap, _ := json.Marshal(h.snapshotLocked(c, ""))
	c.cursor = h.seq // the snapshot covers everything up to here
	c.queueControl(c.hello(hello))
	c.queueControl(snap)
	h.clients[c] = struct{}{}
	h.demand.hold()
	return true
}

// shutdown refuses new clients and returns the current ones.
func (h *hub) shutdown() []*client {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	cs := make([]*client, 0, len(h.clients))
	for c := range h.clients {
		cs = append(cs, c)
	}
	return cs
}

func (h *hub) detach(c *client) {
	h.mu.Lock()
	if _, ok := h.clients[c]; ok {
		h.demand.release()
	}
	delete(h.clients, c)
	h.mu.Unlock()
}

func (h *hub) clientCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// command looks up a command descriptor by id.
func (h *hub) command(id string) (wire.Command, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	c, ok := h.commands[id]
	return c, ok
}

// resume answers a client's resume request.
func (h *hub) resume(c *client, epoch string, seq uint64) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s wire.Snapshot
	switch {
	case epoch != h.epoch:
		s = h.snapshotLocked(c, "epoch changed: the supervisor restarted")
	case seq > h.seq:
		s = h.snapshotLocked(c, "sequence ahead of the server")
	default:
		var ok bool
		if s, ok = h.replayLocked(c, seq); !ok {
			s = h.snapshotLocked(c, "history gone: more readings were missed than are kept")
		}
	}
	c.skipTo(h.seq) // the answer covers everything up to here
	b, _ := json.Marshal(s)
	return b
}

// subscribe answers a client's subscribe request with a full snapshot of
// its new selection; it returns the ids it did not know.
func (h *hub) subscribe(c *client, ids []string) (snap []byte, unknown []string) {
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
	b, _ := json.Marshal(h.snapshotLocked(c, "subscribed"))
	return b, unknown
}
