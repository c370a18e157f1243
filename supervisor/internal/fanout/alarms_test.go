package fanout

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/livecgi/livecgi/proto/wire"
)

// sink collects a socketless client's control frames.
type sink struct {
	mu     sync.Mutex
	frames []string
}

func (s *sink) push(b []byte) {
	s.mu.Lock()
	s.frames = append(s.frames, string(b))
	s.mu.Unlock()
}

func (s *sink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.frames
	s.frames = nil
	return f
}

func snapshotAlarms(t *testing.T, frame string) (reason string, alarms []wire.Alarm) {
	t.Helper()
	var s wire.Snapshot
	if err := json.Unmarshal([]byte(frame), &s); err != nil || s.Type != wire.TypeSnapshot {
		t.Fatalf("not a snapshot: %s", frame)
	}
	return s.Reason, s.Alarms
}

// TestAlarmFrames: the alarms' states are in every snapshot (full,
// replay, a poll's first), each change reaches every client as an alarm
// frame, and a change of the set of alarms sends every client a full
// snapshot with the new list.
func TestAlarmFrames(t *testing.T) {
	h := newTestHub(t, Options{History: 100})
	var s sink
	c := h.NewClient(ClientOptions{Control: s.push})
	if err := h.Attach(c); err != nil {
		t.Fatal(err)
	}
	if fs := s.take(); len(fs) != 2 || strings.Contains(fs[1], `"alarms"`) {
		t.Fatalf("attach without alarms: %q", fs)
	}
	v := 72.5
	hot := wire.Alarm{Name: "hot", Sensor: "p.a", State: wire.AlarmOK, Severity: wire.AlarmCritical, Since: 1}
	cold := wire.Alarm{Name: "cold", Sensor: "p.b", State: wire.AlarmOK, Severity: wire.AlarmWarning, Since: 1}
	h.SetAlarms([]wire.Alarm{hot, cold})
	fs := s.take()
	if len(fs) != 1 {
		t.Fatalf("SetAlarms sent %q, want one snapshot", fs)
	}
	if reason, as := snapshotAlarms(t, fs[0]); reason != "alarms changed" || len(as) != 2 || as[0] != cold || as[1] != hot {
		t.Fatalf("snapshot %s", fs[0])
	}

	hot.State, hot.Value, hot.Since, hot.Message = wire.AlarmCritical, &v, 2, "p.a 72.5 above 70"
	h.SetAlarm(hot)
	h.SetAlarm(wire.Alarm{Name: "nope", State: wire.AlarmCritical}) // not configured: ignored
	fs = s.take()
	want := `{"type":"alarm","name":"hot","sensor":"p.a","state":"critical","severity":"critical","value":72.5,"since":2,"message":"p.a 72.5 above 70"}`
	if len(fs) != 1 || fs[0] != want {
		t.Fatalf("SetAlarm sent %q, want %s", fs, want)
	}

	// Every way in lists them: attach, resume (replay and full), a
	// socketless client's first collect, subscribe.
	pub(t, h, "p.a", 1)
	var s2 sink
	c2 := h.NewClient(ClientOptions{Control: s2.push})
	if err := h.Attach(c2); err != nil {
		t.Fatal(err)
	}
	seq := c2.Cursor()
	for name, frame := range map[string]string{
		"attach":      s2.take()[1],
		"replay":      string(h.Resume(c2, h.Epoch(), seq-1)),
		"full resume": string(h.Resume(c2, "other", 0)),
		"collect":     func() string { fs, _ := h.Collect(c2, nil); return string(fs[1]) }(),
		"subscribe":   func() string { b, _ := h.Subscribe(c2, []string{"p.c"}); return string(b) }(),
	} {
		if _, as := snapshotAlarms(t, frame); len(as) != 2 || as[1].State != wire.AlarmCritical || *as[1].Value != 72.5 {
			t.Errorf("%s: %s", name, frame)
		}
	}
	if !strings.Contains(string(h.Resume(c2, h.Epoch(), seq-1)), `"mode":"replay"`) {
		t.Error("resume did not replay")
	}

	// The same alarms, one state changed: an alarm frame of it only.
	cold.State = wire.AlarmStale
	h.SetAlarms([]wire.Alarm{hot, cold})
	if fs := s.take(); len(fs) != 1 || !strings.Contains(fs[0], `"type":"alarm","name":"cold","sensor":"p.b","state":"stale"`) {
		t.Fatalf("SetAlarms with one change sent %q", fs)
	}
	// One removed: a snapshot without it, to both.
	h.SetAlarms([]wire.Alarm{hot})
	for _, fs := range [][]string{s.take(), s2.take()} {
		if _, as := snapshotAlarms(t, fs[len(fs)-1]); len(as) != 1 || as[0].Name != "hot" {
			t.Fatalf("after a removal: %q", fs)
		}
	}
	// None left: a snapshot without "alarms".
	h.SetAlarms(nil)
	if fs := s.take(); len(fs) != 1 || strings.Contains(fs[0], `"alarms"`) || !strings.Contains(fs[0], `"alarms changed"`) {
		t.Fatalf("after removing all: %q", fs)
	}
	if as := h.Alarms(); as != nil {
		t.Fatalf("Alarms() = %v", as)
	}
}
