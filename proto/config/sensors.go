package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sensors is what livecgid does with sensor readings on its own, with
// or without a browser watching (cmd/livecgid/README.md, "Alarms and
// history"). The key names are an interface: other tools write them.
type Sensors struct {
	// Report by exception: per sensor id (<plugin>.<sensor>), the
	// deadband (deadband.<id>, in the sensor's unit) and the heartbeat
	// (heartbeat.<id>, the longest silence) that replace what the
	// plugin declares.
	Deadband  map[string]float64
	Heartbeat map[string]time.Duration
	// Alarms: alarm.<name> = <rule>, the rule's text by name
	// (supervisor/internal/alarm parses it).
	Alarms map[string]string
	// AlarmExec is the program (and its arguments, split on spaces: no
	// shell) run on every alarm transition; "" = none.
	AlarmExec string
	// AlarmExecTimeout bounds one run of AlarmExec.
	AlarmExecTimeout time.Duration
	// Record: record.<id> = <interval>, the sensors kept in history and
	// how often each is sampled, with or without a browser.
	Record map[string]time.Duration
	// HistoryMemoryKB bounds the history in RAM.
	HistoryMemoryKB int
	// HistoryDir, if set, is where the history is saved (at most every
	// HistorySync, and on a clean stop) and read back at start.
	HistoryDir  string
	HistorySync time.Duration
}

// DefaultSensors is the sensor settings before the file.
func DefaultSensors() Sensors {
	return Sensors{HistoryMemoryKB: 1024, HistorySync: 15 * time.Minute, AlarmExecTimeout: 30 * time.Second}
}

// Per-sensor key prefixes of livecgi.conf.
const (
	KeyDeadband  = "deadband."
	KeyHeartbeat = "heartbeat."
	KeyAlarm     = "alarm."
	KeyRecord    = "record."
)

// setSensors applies the keys of Sensors.
func (c *Config) setSensors(k, v string) (bool, error) {
	s := &c.Sensors
	switch {
	case strings.HasPrefix(k, KeyDeadband):
		id, err := sensorKey(k, KeyDeadband)
		if err != nil {
			return true, err
		}
		f, err := parseFloat(v)
		if err == nil && f < 0 {
			err = valueError("want a number not below 0, in the sensor's unit")
		}
		setIn(&s.Deadband, id, f)
		return true, err
	case strings.HasPrefix(k, KeyHeartbeat):
		id, err := sensorKey(k, KeyHeartbeat)
		if err != nil {
			return true, err
		}
		d, err := parseDuration(v)
		if err == nil && d < 0 {
			err = valueError("want a duration not below 0 (0: none)")
		}
		setIn(&s.Heartbeat, id, d)
		return true, err
	case strings.HasPrefix(k, KeyRecord):
		id, err := sensorKey(k, KeyRecord)
		if err != nil {
			return true, err
		}
		d, err := parseDuration(v)
		if err == nil && d < time.Second {
			err = valueError("want an interval of 1s or more, e.g. 10s")
		}
		setIn(&s.Record, id, d)
		return true, err
	case strings.HasPrefix(k, KeyAlarm):
		name := strings.TrimPrefix(k, KeyAlarm)
		if !validID(name) {
			return true, fmt.Errorf("alarm name %q: want lower_snake, at most 64 bytes", name)
		}
		if v == "" {
			return true, valueError("want <sensor> above|below <value> [for <duration>] [clear <value>] [warning|critical]")
		}
		setIn(&s.Alarms, name, v)
		return true, nil
	}
	switch k {
	case "alarm_exec":
		s.AlarmExec = v
	case "history_dir":
		s.HistoryDir = v
	case "history_memory_kb":
		i, err := parseInt(v, "1024")
		s.HistoryMemoryKB = int(i)
		return true, err
	case "history_sync":
		d, err := parseDuration(v)
		s.HistorySync = d
		return true, err
	case "alarm_exec_timeout":
		d, err := parseDuration(v)
		s.AlarmExecTimeout = d
		return true, err
	default:
		return false, nil
	}
	return true, nil
}

func setIn[V any](m *map[string]V, k string, v V) {
	if *m == nil {
		*m = map[string]V{}
	}
	(*m)[k] = v
}

// sensorKey returns the sensor id of a per-sensor key.
func sensorKey(k, prefix string) (string, error) {
	id := strings.TrimPrefix(k, prefix)
	p, s, ok := strings.Cut(id, ".")
	if !ok || !validID(p) || !validID(s) {
		return "", fmt.Errorf("sensor id %q: want <plugin>.<sensor>, e.g. %ssystem.load1", id, prefix)
	}
	return id, nil
}

// validID is wire.ValidID (lower_snake: a letter or _ first, then
// letters, digits and _, at most 64 bytes), written again here because
// wire pulls in encoding/json, which the stub does without.
// TestValidIDMatchesWire keeps the two the same.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i, r := range id {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// validateSensors checks the sensor settings together.
func (c *Config) validateSensors() error {
	s := c.Sensors
	switch {
	case s.HistoryMemoryKB < 16:
		return errors.New("history_memory_kb must be at least 16")
	case s.HistorySync < time.Minute:
		return errors.New("history_sync must be at least 1m (flash wears)")
	case s.AlarmExecTimeout <= 0:
		return errors.New("alarm_exec_timeout must be positive")
	}
	return nil
}

// AlarmArgv returns alarm_exec split into program and arguments; nil
// without it.
func (s Sensors) AlarmArgv() []string { return strings.Fields(s.AlarmExec) }
