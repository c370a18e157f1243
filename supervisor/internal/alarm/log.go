package alarm

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Log writes the transition log: one JSON line per transition, and one
// per alarm_exec run. Give it a file that keeps itself small (livecgid's
// supervisor.OpenLog on LogFile in the state directory, which moves a
// full file to LogFile+".1"); this package cannot import that one.
// Its methods may be called concurrently.
type Log struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLog returns a Log writing to w.
func NewLog(w io.Writer) *Log { return &Log{w: w} }

// logRecord is one line of the log: a transition ("event": "transition")
// or a run of alarm_exec ("event": "exec").
type logRecord struct {
	Time     string   `json:"time"` // RFC 3339, UTC, milliseconds
	Event    string   `json:"event"`
	Name     string   `json:"name"`
	Sensor   string   `json:"sensor"`
	State    string   `json:"state"`
	Previous string   `json:"previous"`
	Severity string   `json:"severity"`
	Value    *float64 `json:"value,omitempty"`
	Message  string   `json:"message,omitempty"`
	// exec only
	Result    string `json:"result,omitempty"` // "ok", or why not
	ElapsedMS *int64 `json:"elapsed_ms,omitempty"`
	Output    string `json:"output,omitempty"`
	Cut       bool   `json:"output_cut,omitempty"`
	Dropped   int    `json:"dropped,omitempty"` // runs dropped before this one: the queue was full
}

const logTime = "2006-01-02T15:04:05.000Z07:00"

// Transition logs tr, dated by its Since.
func (l *Log) Transition(tr Transition) error {
	return l.write(logRecord{
		Time: tr.Since.UTC().Format(logTime), Event: "transition", Name: tr.Name, Sensor: tr.Sensor,
		State: tr.State.State, Previous: tr.Previous, Severity: tr.Severity, Value: tr.Value, Message: tr.Message,
	})
}

// Exec logs a run of alarm_exec, dated now.
func (l *Log) Exec(r Result) error {
	tr := r.Transition
	ms := r.Elapsed.Milliseconds()
	rec := logRecord{
		Time: time.Now().UTC().Format(logTime), Event: "exec", Name: tr.Name, Sensor: tr.Sensor,
		State: tr.State.State, Previous: tr.Previous, Severity: tr.Severity,
		Result: "ok", ElapsedMS: &ms, Output: r.Output, Cut: r.Cut, Dropped: r.Dropped,
	}
	if r.Err != nil {
		rec.Result = r.Err.Error()
	}
	return l.write(rec)
}

func (l *Log) write(r logRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = l.w.Write(append(b, '\n'))
	return err
}
