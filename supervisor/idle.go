package supervisor

import (
	"context"
	"time"
)

// idleExit ends the supervisor, through stop, once no one has consumed
// readings (see demand) for idle_timeout: the stub starts it again on the
// next page load. idle_timeout 0, a broker bridge (mqtt_url: a consumer
// that must not go), recorded sensors (record.<id>) and alarms
// (alarm.<name>), which work with nobody watching, keep it running. The
// rule is the configuration's as it is now: a reload that changes it
// starts the wait again.
func (s *Supervisor) idleExit(ctx context.Context, stop context.CancelFunc) {
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	defer idle.Stop()
	for {
		active, changed := s.hub.Demand()
		reloaded := s.reloaded() // before config: a reload after it closes this
		idle.Stop()
		if cfg := s.config(); !active && cfg.IdleTimeout > 0 && cfg.MQTT.URL == "" && len(cfg.Sensors.Record) == 0 && len(cfg.Sensors.Alarms) == 0 {
			idle.Reset(cfg.IdleTimeout)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-reloaded: // idle_timeout, mqtt_url, record. or alarm. may have changed
		case <-idle.C:
			s.log.Info("no client for the idle timeout: stopping", "idle_timeout", s.config().IdleTimeout)
			stop()
			return
		}
	}
}
