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

// hub keeps the last value of every sensor and a bounded history, and fans
// frames out to clients. Publishing never blocks on a client: each client
// has a coalescing queue served by a small pool of writers.
type hub struct {
	epoch   string
	version string

	mu       sync.Mutex
	seq      uint64
	sensors  map[string]*sensorState
	commands map[string]wire.Command
	plugins  map[string]wire.PluginInfo
	history  []*frame // ring of the last cap(history) readings
	histNext int
	clients  map[*client]struct{}
	closed   bool // shutting down: attach refuses

	work chan *client // clients with something to write

	// counters for the built-in sensors
	delivered atomic.Uint64
	coalesced atomic.Uint64
	tooSlow   atomic.Uint64
}

func newHub(epoch, version string, history int) *hub {
	return &hub{
		epoch:    epoch,
		version:  version,
		sensors:  map[string]*sensorState{},
		commands: map[string]wire.Command{},
		plugins:  map[string]wire.PluginInfo{},
		history:  make([]*frame, 0, history),
		clients:  map[*client]struct{}{},
	}
}

// publish assigns the next sequence number to r, stores it as the sensor's
// last value and queues it for every subscribed client. It returns false
// if the sensor is unknown.
func (h *hub) publish(r wire.Reading) bool {
	r.Type = wire.TypeReading
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sensors[r.Sensor]
	if s == nil {
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
	if cap(h.history) > 0 {
		if len(h.history) < cap(h.history) {
			h.history = append(h.history, f)
		} else {
			h.history[h.histNext] = f
			h.histNext = (h.histNext + 1) % cap(h.history)
		}
	}
	for c := range h.clients {
		c.queueReading(f)
	}
	return true
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
			c.queueControl(hello)
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
	if seq == h.seq {
		return s, true
	}
	n := len(h.history)
	if n == 0 {
		return s, false
	}
	// histNext is the oldest entry once the ring is full, and 0 before.
	if h.history[h.histNext].seq > seq+1 {
		return s, false
	}
	for i := range n {
		f := h.history[(h.histNext+i)%n]
		if f.seq > seq && c.wants(f.sensor) {
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
	c.queueControl(hello)
	c.queueControl(snap)
	h.clients[c] = struct{}{}
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
	delete(h.clients, c)
	h.mu.Unlock()
}

func (h *hub) clientCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// command looks up a command descriptor by id.
func (h *hub) command(id string) (wire.Command, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
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
	b, _ := json.Marshal(h.snapshotLocked(c, "subscribed"))
	return b, unknown
}
