package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/control/ctlserver"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/history"
)

// The history (cmd/livecgid/README.md, "History"): the record.<id>
// sensors are kept in an internal/history Store, bounded by
// history_memory_kb as livecgid started. Every reading passes observe
// (readings.Publish): a number (a bool as 0 or 1) of a recorded sensor
// is recorded, text and readings with an error are not. Asked by a
// client's history frame (frames.go: history, answered from Query), or
// by the stub for a CSV download (serveHistoryCSV, the control socket's
// "history" request). With history_dir, the store is read back at start
// (load, before any plugin runs), saved at most every history_sync while
// it changed (syncHistory) and once more on a clean stop (Run).

// records keeps the record.<id> sensors' history (internal/history).
type records struct {
	store *history.Store // never nil after init; its bound is fixed
	log   *slog.Logger

	mu      sync.Mutex               // guards the fields below; apply holds it across the store's Add and Remove
	applied map[string]time.Duration // record.<id> as the store has it
	refused map[string]string        // record.<id> not recorded (over the bound): why
}

// init makes the store of cfg (history_memory_kb) and adds its
// record.<id> sensors (New).
func (h *records) init(cfg config.Sensors, log *slog.Logger) {
	h.store, h.log = history.New(cfg.HistoryMemoryKB), log
	h.apply(cfg.Record)
}

// apply makes the store record exactly the sensors of want: those gone
// are removed (their history freed), new ones added with empty history,
// one whose interval changed resized (keeping its history), the others
// left as they are. Sensors are added in id order; one over
// history_memory_kb is not recorded, with a log line naming its key and
// the bound, and tried again at the next apply.
func (h *records) apply(want map[string]time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.applied == nil {
		h.applied = map[string]time.Duration{}
	}
	for id := range h.applied {
		if _, ok := want[id]; !ok {
			h.store.Remove(id)
			delete(h.applied, id)
			h.log.Info("history: sensor no longer recorded: its history is dropped", "key", config.KeyRecord+id)
		}
	}
	h.refused = map[string]string{}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		every, was := want[id], h.applied[id]
		if every == was {
			continue
		}
		if err := h.store.Add(id, every); err != nil {
			_, limit := h.store.Memory()
			why := fmt.Sprintf("%s%s = %v is not recorded: %v; raise history_memory_kb (%d) or record fewer sensors", config.KeyRecord, id, every, err, limit>>10)
			h.refused[id] = why
			h.log.Error("history: "+why, "key", config.KeyRecord+id, "history_memory_kb", limit>>10)
			continue
		}
		h.applied[id] = every
		if was != 0 {
			h.log.Info("history: record interval changed, history kept", "key", config.KeyRecord+id, "interval", every, "was", was)
		}
	}
	used, limit := h.store.Memory()
	h.log.Debug("history: recording", "sensors", len(h.applied), "bytes", used, "history_memory_kb", limit>>10)
}

// observe records one reading.
func (h *records) observe(r wire.Reading) {
	if r.Error != "" || h.store == nil {
		return
	}
	var v float64
	switch x := r.Value.(type) {
	case float64:
		v = x
	case bool:
		if x {
			v = 1
		}
	default: // text, or none
		return
	}
	h.store.Record(r.Sensor, time.UnixMilli(r.T), v)
}

// why returns why sensor, which the store does not record, is not: the
// log's words for a record.<id> over the bound, "" when it has no
// record.<id>.
func (h *records) why(sensor string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refused[sensor]
}

// load reads the history saved in dir (history_dir; "" for none) into
// the store: Run calls it after the sensors are added and before any
// plugin runs. A file that cannot be read as a history is set aside (as
// history.gz.corrupt) and livecgid starts with empty history.
func (h *records) load(dir string) {
	if dir == "" {
		return
	}
	path := filepath.Join(dir, history.FileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		h.log.Info("history: none saved yet in history_dir", "file", path)
		return
	}
	err := h.store.Load(dir, time.Now())
	if err == nil {
		n := 0
		for id := range h.recorded() {
			if pts, _ := h.store.Query(id, time.UnixMilli(0), time.Now(), 1); len(pts) > 0 {
				n++
			}
		}
		h.log.Info(fmt.Sprintf("history: loaded %d sensors from %s", n, path))
		return
	}
	if f, openErr := os.Open(path); openErr == nil {
		f.Close()
		aside := path + ".corrupt"
		if mvErr := os.Rename(path, aside); mvErr == nil {
			h.log.Error("history: not loaded, set aside as "+aside+": starting with empty history", "err", err)
			return
		}
	}
	h.log.Error("history: not loaded: starting with empty history", "err", err)
}

// recorded returns the sensors recorded now.
func (h *records) recorded() map[string]time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]time.Duration, len(h.applied))
	for id, d := range h.applied {
		out[id] = d
	}
	return out
}

// save writes the history to dir (history_dir; "" for none) if it
// changed since the last save: atomically (Store.Save), creating dir if
// need be.
func (h *records) save(dir, why string) {
	if dir == "" || !h.store.Dirty() {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		h.log.Error("history: not saved", "history_dir", dir, "err", err)
		return
	}
	if err := h.store.Save(dir); err != nil {
		h.log.Error("history: not saved", "history_dir", dir, "err", err)
		return
	}
	level := slog.LevelDebug
	if why == "stop" {
		level = slog.LevelInfo
	}
	h.log.Log(context.Background(), level, "history: saved", "file", filepath.Join(dir, history.FileName), "by", why)
}

// syncHistory saves the history to history_dir at most every
// history_sync while it changes, as the configuration in force says,
// until ctx ends (one of Run's goroutines; Run saves once more when
// every reading is in).
func (s *Supervisor) syncHistory(ctx context.Context) {
	last := time.Now()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		sens := s.config().Sensors
		t.Stop()
		if sens.HistoryDir != "" {
			t.Reset(time.Until(last.Add(sens.HistorySync)))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.reloaded(): // history_dir or history_sync may have changed
		case <-t.C:
			s.records.save(sens.HistoryDir, "history_sync")
			last = time.Now()
		}
	}
}

// historyRestart holds history_memory_kb to the value livecgid started
// with (the store's bound is fixed): a reload that changes it returns
// its key, for the restart note (reload). history_dir, history_sync and
// record.<id> apply at once.
func historyRestart(cur, run *config.Config) []string {
	if run.Sensors.HistoryMemoryKB == cur.Sensors.HistoryMemoryKB {
		return nil
	}
	run.Sensors.HistoryMemoryKB = cur.Sensors.HistoryMemoryKB
	return []string{"history_memory_kb"}
}

// history answers a client's history request from snd, the one frame
// path's (frame): any signed-in role may ask. The range defaults to the
// hour before now, the points to wire.DefaultHistoryPoints; the answer,
// a history frame with the request's id, goes to snd only. A sensor not
// recorded is a not_recorded error, one that does not exist
// unknown_sensor, both with the id.
func (s *Supervisor) history(cfg *config.Config, snd *sender, m *wire.HistoryRequest) {
	if _, err := s.hold(cfg, snd.who, snd.setup); err != nil {
		snd.log.Info("history refused", "sensor", m.Sensor, "id", m.ID, "err", err)
		snd.send(wire.Error{Type: wire.TypeError, Code: wire.ErrForbidden, ID: m.ID, Message: err.Error()})
		return
	}
	from, to := historyRange(m.From, m.To, time.Now())
	points := m.Points
	if points == 0 {
		points = wire.DefaultHistoryPoints
	}
	pts, err := s.records.store.Query(m.Sensor, from, to, points)
	if err != nil {
		code, msg := s.notRecorded(m.Sensor, err)
		snd.send(wire.Error{Type: wire.TypeError, Code: code, ID: m.ID, Message: msg})
		return
	}
	snd.send(wire.History{Type: wire.TypeHistory, ID: m.ID, Sensor: m.Sensor, From: from.UnixMilli(), To: to.UnixMilli(), Points: pts})
}

// historyRange applies a history request's defaults at now: to 0 is now,
// from 0 an hour before to.
func historyRange(fromMs, toMs int64, now time.Time) (from, to time.Time) {
	to = now
	if toMs != 0 {
		to = time.UnixMilli(toMs)
	}
	from = to.Add(-time.Hour)
	if fromMs != 0 {
		from = time.UnixMilli(fromMs)
	}
	return from, to
}

// notRecorded is the error code and message for a history of sensor that
// Query or WriteCSV refused with err: not_recorded for a sensor the hub
// knows or a record.<id> over the bound, unknown_sensor for one that
// does not exist, bad_message for anything else (a range the wrong way
// round).
func (s *Supervisor) notRecorded(sensor string, err error) (code, msg string) {
	if !errors.Is(err, history.ErrNotRecorded) {
		return wire.ErrBadMessage, err.Error()
	}
	if why := s.records.why(sensor); why != "" {
		return wire.ErrNotRecorded, why
	}
	if slices.ContainsFunc(s.hub.Hello().Sensors, func(d wire.Sensor) bool { return d.ID == sensor }) {
		return wire.ErrNotRecorded, fmt.Sprintf("sensor %s is not recorded: set %s%s = 10s in the configuration file to keep its history", sensor, config.KeyRecord, sensor)
	}
	return wire.ErrUnknownSensor, fmt.Sprintf("unknown sensor %q", sensor)
}

// serveHistoryCSV answers the stub's request for a CSV download
// (control.KindHistory): the stub signed the person in and minted a
// token for them, which is checked as a poll's (check: origin, run,
// single use, a role: any role may download); the answer is
// history.Store.WriteCSV's CSV, at most about 8,000 lines (every stored
// point of one sensor: an hour of samples, a day of minutes, 30 days of
// quarter hours), or an error document (404 not_recorded or
// unknown_sensor).
func (s *Supervisor) serveHistoryCSV(ctx context.Context, arg []byte, _ io.Reader) ctlserver.Answer {
	var req control.HistoryRequest
	if err := ctlserver.DecodeRequest(arg, &req); err != nil {
		return ctlserver.ErrorAnswer(400, control.ErrCodeBad, err.Error())
	}
	cfg := s.config()
	e, err := s.check(cfg, ticket{via: viaHistory, stub: true, token: req.Token, origin: req.Origin, remote: req.Remote})
	if err != nil {
		return ctlserver.ErrorAnswer(403, control.ErrCodeForbidden, err.Error())
	}
	e.log.Debug("history download", "sensor", req.Sensor, "from", req.From, "to", req.To)
	if !wire.ValidName(req.Sensor) {
		return ctlserver.ErrorAnswer(400, control.ErrCodeBad, "history: want a sensor id, <plugin>.<sensor>")
	}
	from, to := historyRange(req.From, req.To, time.Now())
	var b bytes.Buffer
	if err := s.records.store.WriteCSV(&b, req.Sensor, from, to); err != nil {
		code, msg := s.notRecorded(req.Sensor, err)
		status := 404
		if code == wire.ErrBadMessage {
			status, code = 400, control.ErrCodeBad
		}
		return ctlserver.ErrorAnswer(status, code, msg)
	}
	return ctlserver.Answer{Status: 200, Body: b.Bytes()}
}
