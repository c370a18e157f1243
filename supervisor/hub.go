package supervisor

import (
	"sync/atomic"

	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// hub is the plugin host's view of the fan-out (internal/fanout): publish a
// reading, set a plugin's descriptors, set its state, and the counters of
// the built-in sensors.
type hub struct {
	*fanout.Hub
	delivered, coalesced, tooSlow *atomic.Uint64
}

func newHub(o fanout.Options) *hub {
	h := fanout.New(o)
	c := h.Counters()
	return &hub{Hub: h, delivered: &c.Delivered, coalesced: &c.Coalesced, tooSlow: &c.TooSlow}
}

func (h *hub) publish(r wire.Reading) bool { return h.Publish(r) }

func (h *hub) setPlugin(id string, info *wire.PluginInfo, sensors []wire.Sensor, commands []wire.Command, st *wire.Status) {
	h.SetPlugin(id, info, sensors, commands, st)
}

func (h *hub) clientCount() int { return h.ClientCount() }
