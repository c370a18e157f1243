package supervisor

import (
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// readings is where every reading is published, the plugins' (the
// plugin host's Publisher) and livecgid's own figures: the alarms and the
// history see it, then the hub sends it to the clients.
type readings struct {
	*fanout.Hub
	s *Supervisor
}

// SetPlugin sets a plugin's descriptors on the hub, then tells the
// alarms (their sensors' units and heartbeats).
func (p readings) SetPlugin(id string, info *wire.PluginInfo, sensors []wire.Sensor, commands []wire.Command, st *wire.Status) {
	p.Hub.SetPlugin(id, info, sensors, commands, st)
	p.s.alarms.describe()
}

// Publish observes r and publishes it on the hub.
func (p readings) Publish(r wire.Reading) bool {
	p.s.alarms.observe(r)
	p.s.records.observe(r)
	return p.Hub.Publish(r)
}
