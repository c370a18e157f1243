package config

import (
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/wire"
)

func TestSensorsConfig(t *testing.T) {
	c := Default()
	err := c.Parse([]byte(`
deadband.system.load1 = 0.05
heartbeat.system.load1 = 60s
heartbeat.leds.led0 = 0
alarm.hot = system.thermal_zone0 above 70 for 1m clear 65 critical
alarm.cold = system.thermal_zone0 below 5
alarm_exec = /usr/local/bin/notify  --to ops
record.system.thermal_zone0 = 10s
record.system.load1 = 1m
history_memory_kb = 256
history_dir = /var/lib/livecgi
history_sync = 5m
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sensors
	if s.Deadband["system.load1"] != 0.05 || s.Heartbeat["system.load1"] != time.Minute || len(s.Heartbeat) != 2 {
		t.Errorf("deadband %v heartbeat %v", s.Deadband, s.Heartbeat)
	}
	if s.Alarms["hot"] != "system.thermal_zone0 above 70 for 1m clear 65 critical" || len(s.Alarms) != 2 {
		t.Errorf("alarms %q", s.Alarms)
	}
	if got := strings.Join(s.AlarmArgv(), "|"); got != "/usr/local/bin/notify|--to|ops" {
		t.Errorf("alarm argv %q", got)
	}
	if s.Record["system.thermal_zone0"] != 10*time.Second || s.Record["system.load1"] != time.Minute {
		t.Errorf("record %v", s.Record)
	}
	if s.HistoryMemoryKB != 256 || s.HistoryDir != "/var/lib/livecgi" || s.HistorySync != 5*time.Minute {
		t.Errorf("history %+v", s)
	}
	if d := DefaultSensors(); d.HistoryMemoryKB != 1024 || d.HistorySync != 15*time.Minute {
		t.Errorf("defaults %+v", d)
	}
}

func TestSensorsConfigErrors(t *testing.T) {
	for line, want := range map[string]string{
		"deadband.load1 = 1":                         `sensor id "load1": want <plugin>.<sensor>`,
		"deadband.system.Load = 1":                   `want <plugin>.<sensor>`,
		"deadband.system.load1 = -1":                 "not below 0",
		"deadband.system.load1 = x":                  "want a number",
		"heartbeat.system.load1 = 5":                 "needs a unit",
		"record.system.load1 = 100ms":                "1s or more",
		"alarm.Hot = system.load1 above 1":           `alarm name "Hot"`,
		"alarm.hot =":                                "above|below",
		"history_memory_kb = 8":                      "at least 16",
		"history_sync = 10s":                         "at least 1m",
		"record.system.a = 1s\nrecord.system.a = 2s": "set twice",
	} {
		c := Default()
		err := c.Parse([]byte(line))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", line, err, want)
		}
	}
}

func TestValidIDMatchesWire(t *testing.T) {
	for _, id := range []string{"", "a", "_a", "a1", "1a", "A", "a-b", "a.b", "é", strings.Repeat("a", 64), strings.Repeat("a", 65), "a\x00"} {
		if validID(id) != wire.ValidID(id) {
			t.Errorf("validID(%q) = %v, wire.ValidID says %v", id, validID(id), wire.ValidID(id))
		}
	}
}
