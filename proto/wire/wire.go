// Package wire is the browser protocol of livecgi, version 1: JSON text
// frames over a WebSocket with subprotocol "livecgi.v1". The supervisor, the
// JavaScript client's tests and the load tool share these types. README.md
// in proto/ describes the protocol for front-end developers.
//
// Every frame is one JSON object with a "type" field. Decode a client frame
// with DecodeClient; server frames are plain structs marshalled with
// encoding/json.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/livecgi/livecgi/proto/control"
)

// Subprotocol is the WebSocket subprotocol a client must offer. The
// connect document names it too: the stub, which writes that document,
// links control but not this package (encoding/json).
const Subprotocol = control.Subprotocol

// Version is the protocol version sent in Hello.
const Version = 1

// Server → client message types.
const (
	TypeHello    = "hello"
	TypeSnapshot = "snapshot"
	TypeReading  = "reading"
	TypeStatus   = "status"
	TypeResult   = "result"
	TypeError    = "error"
	TypeAlarm    = "alarm"
	TypeHistory  = "history" // also a client request
)

// Client → server message types.
const (
	TypeCommand   = "command"
	TypeSubscribe = "subscribe"
	TypeResume    = "resume"
)

// Value types of sensors and command arguments.
const (
	ValueNumber = "number"
	ValueText   = "text"
	ValueBool   = "bool"
)

// Close codes the supervisor uses besides the standard ones (1001 going
// away, 1008 policy violation, 1009 message too big).
const (
	CloseTooSlow    = 4001 // the client did not read its frames in time
	CloseTooMany    = 4002 // the supervisor has max_clients clients already
	CloseRateLimits = 4003 // the client kept sending over its rate limit
	CloseSignedOut  = 4004 // the configuration changed and no longer lets the client's user in
)

// Hello is the first frame of every connection, and is sent again when a
// plugin's descriptors change.
type Hello struct {
	Type     string       `json:"type"` // "hello"
	Version  int          `json:"version"`
	Server   string       `json:"server"`   // supervisor version
	Epoch    string       `json:"epoch"`    // changes when the supervisor restarts
	Seq      uint64       `json:"seq"`      // last sequence number issued
	Sensors  []Sensor     `json:"sensors"`  // sorted by id
	Commands []Command    `json:"commands"` // sorted by id
	Plugins  []PluginInfo `json:"plugins"`  // sorted by id

	// User is who this connection is signed in as.
	User *User `json:"user,omitempty"`
}

// User is who a connection's token was minted for: Name is "" for an
// anonymous visitor; Role is viewer or operator.
type User struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// Sensor describes one sensor. ID is "<plugin>.<sensor>".
type Sensor struct {
	ID         string `json:"id"`
	Plugin     string `json:"plugin"`
	Title      string `json:"title"`
	Unit       string `json:"unit,omitempty"`
	ValueType  string `json:"value_type"` // number, text or bool
	IntervalMS int64  `json:"interval_ms"`
	// Report by exception: a reading is sent when it moved by more than
	// Deadband (in Unit) since the last one sent, or when HeartbeatMS
	// passed since then; 0 and 0 send every reading. A page marks a
	// sensor stale after twice its heartbeat (or interval) of silence.
	Deadband    float64 `json:"deadband,omitempty"`
	HeartbeatMS int64   `json:"heartbeat_ms,omitempty"`
	// RecordMS is how often livecgid keeps the sensor in its history
	// (record.<id>); 0: not recorded (a history request is refused).
	RecordMS int64 `json:"record_ms,omitempty"`
}

// Command describes one command. ID is "<plugin>.<command>".
type Command struct {
	ID     string `json:"id"`
	Plugin string `json:"plugin"`
	Title  string `json:"title"`
	Args   []Arg  `json:"args"`

	// Role is the role the command needs: viewer or operator.
	Role string `json:"role,omitempty"`
}

// Arg is one argument of a command: its type, whether it is required, its
// range (numbers) or accepted values (text).
type Arg struct {
	Name     string   `json:"name"`
	Title    string   `json:"title,omitempty"`
	Type     string   `json:"type"`
	Required bool     `json:"required,omitempty"`
	Min      *float64 `json:"min,omitempty"`
	Max      *float64 `json:"max,omitempty"`
	Enum     []string `json:"enum,omitempty"`
}

// PluginInfo is the state of one plugin.
type PluginInfo struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Version string `json:"version,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Title   string `json:"title,omitempty"` // the plugin's line about itself
}

// Plugin states, as in PluginInfo.State and Status.State.
const (
	StateStarting   = "starting"
	StateOnline     = "online"
	StateRestarting = "restarting"
	StateOffline    = "offline"
	StateSwapped    = "swapped"
	StateSwapFailed = "swap_failed"
	StateRefused    = "refused"
	StateRemoved    = "removed"
	// StateUnavailable: the plugin has nothing to serve on this machine
	// (Reason says why); it is tried again when its binary changes.
	StateUnavailable = "unavailable"
)

// Reading is one sensor value. Value is a float64, string or bool (null
// with Error set when the sensor could not be read). T is Unix time in
// milliseconds when the plugin read it. Seq orders readings across all
// sensors of one supervisor run (see Hello.Epoch).
type Reading struct {
	Type   string `json:"type,omitempty"` // "reading"; empty inside a Snapshot
	Sensor string `json:"sensor"`
	Value  any    `json:"value"`
	Unit   string `json:"unit,omitempty"`
	Seq    uint64 `json:"seq"`
	T      int64  `json:"t"`
	Error  string `json:"error,omitempty"`
	// Changed is when (Unix ms) the sensor's value last changed: a
	// heartbeat repeats the value and keeps it. 0: not known.
	Changed int64 `json:"changed,omitempty"`
}

// AppendNumber appends v to dst as the protocol's JSON frames carry a
// number (encoding/json's form, the one JavaScript prints too): an
// integer as an integer (17489920, not 1.748992e+07), any other value in
// the shortest decimal that reads back as v, with an exponent only below
// 1e-6 or from 1e21 on (1e-7, 1e+21). Transports that carry a bare value
// (the MQTT bridge) format it with this, so a subscriber reads the
// number a browser does. v must be finite: a reading that is not (NaN,
// ±Inf) carries an error instead.
func AppendNumber(dst []byte, v float64) []byte {
	format := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, v, format, -1, 64)
	if format == 'e' {
		// e-07 → e-7, as encoding/json and JavaScript write it.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// Snapshot modes.
const (
	SnapshotFull   = "full"   // Readings holds the last value of every sensor
	SnapshotReplay = "replay" // Readings holds every reading missed since the resumed sequence
)

// Snapshot follows Hello and answers Resume.
type Snapshot struct {
	Type     string    `json:"type"` // "snapshot"
	Mode     string    `json:"mode"` // full or replay
	Reason   string    `json:"reason,omitempty"`
	Seq      uint64    `json:"seq"`
	Readings []Reading `json:"readings"`
	// Alarms is the state of every alarm, sorted by name (in both modes);
	// absent when none is configured.
	Alarms []Alarm `json:"alarms,omitempty"`
}

// Alarm states, as in Alarm.State. An alarm's severity is warning or
// critical: the state it raises to.
const (
	AlarmOK       = "ok"
	AlarmWarning  = "warning"
	AlarmCritical = "critical"
	AlarmStale    = "stale" // its sensor sent no good reading for twice its heartbeat
)

// Alarm is the state of one alarm (alarm.<name> in the configuration):
// sent as a frame of its own on every transition, and listed in every
// Snapshot.
type Alarm struct {
	Type     string   `json:"type,omitempty"` // "alarm"; empty inside a Snapshot
	Name     string   `json:"name"`
	Sensor   string   `json:"sensor"`
	State    string   `json:"state"`    // ok, warning, critical or stale
	Severity string   `json:"severity"` // the rule's: warning or critical
	Value    *float64 `json:"value"`    // the sensor's value at Since; null before any reading
	Since    int64    `json:"since"`    // Unix ms of the last transition
	Message  string   `json:"message"`  // why, for people
}

// History answers a HistoryRequest, to the client that asked only.
type History struct {
	Type   string  `json:"type"`         // "history"
	ID     string  `json:"id,omitempty"` // the request's
	Sensor string  `json:"sensor"`
	From   int64   `json:"from"`
	To     int64   `json:"to"`
	Points []Point `json:"points"` // oldest first
}

// Point summarises a sensor's samples over one interval: JSON
// [t, min, avg, max], t the interval's start in Unix ms. Values are kept
// as float32 and written in its shortest form.
type Point struct {
	T             int64
	Min, Avg, Max float64
}

// MarshalJSON encodes p as [t,min,avg,max].
func (p Point) MarshalJSON() ([]byte, error) {
	b := strconv.AppendInt(append(make([]byte, 0, 48), '['), p.T, 10)
	for _, v := range [3]float64{p.Min, p.Avg, p.Max} {
		b = strconv.AppendFloat(append(b, ','), v, 'g', -1, 32)
	}
	return append(b, ']'), nil
}

// UnmarshalJSON decodes [t,min,avg,max].
func (p *Point) UnmarshalJSON(b []byte) error {
	var a [4]float64
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("history point: %w", err)
	}
	*p = Point{T: int64(a[0]), Min: a[1], Avg: a[2], Max: a[3]}
	return nil
}

// Status reports a change in a plugin's state.
type Status struct {
	Type            string `json:"type"` // "status"
	Plugin          string `json:"plugin"`
	State           string `json:"state"`
	Reason          string `json:"reason,omitempty"`
	Version         string `json:"version,omitempty"`
	PreviousVersion string `json:"previous_version,omitempty"`
	T               int64  `json:"t"`
}

// Result answers one Command, to the client that sent it only.
type Result struct {
	Type  string `json:"type"` // "result"
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Value any    `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// Error codes of Error.Code.
const (
	ErrBadJSON        = "bad_json"
	ErrUnknownType    = "unknown_type"
	ErrBadMessage     = "bad_message"
	ErrUnknownCommand = "unknown_command"
	ErrBadArgs        = "bad_args"
	ErrRateLimited    = "rate_limited"
	ErrUnknownSensor  = "unknown_sensor"
	ErrForbidden      = "forbidden"    // the connection's role may not run the command
	ErrNotRecorded    = "not_recorded" // a history request for a sensor without record.<id>
)

// Error reports a client frame the server could not act on. ID is the
// command id when the frame was a command.
type Error struct {
	Type    string `json:"type"` // "error"
	Code    string `json:"code"`
	Message string `json:"message"`
	ID      string `json:"id,omitempty"`
}

// CommandMsg asks for a command. ID is chosen by the client and comes back
// in the Result.
type CommandMsg struct {
	Type string         `json:"type"` // "command"
	ID   string         `json:"id"`
	Name string         `json:"name"`
	Args map[string]any `json:"args"`
}

// Subscribe selects the sensors the client receives; an empty list means
// all sensors (the default).
type Subscribe struct {
	Type    string   `json:"type"` // "subscribe"
	Sensors []string `json:"sensors"`
}

// History requests: Points is at most MaxHistoryPoints, and 0 means
// DefaultHistoryPoints.
const (
	DefaultHistoryPoints = 300
	MaxHistoryPoints     = 2000
)

// HistoryRequest asks for the history of a recorded sensor over
// [From, To] (Unix ms; To 0: now; From 0: an hour before To) as at most
// Points points. ID, chosen by the client, comes back in the answer.
type HistoryRequest struct {
	Type   string `json:"type"` // "history"
	ID     string `json:"id,omitempty"`
	Sensor string `json:"sensor"`
	From   int64  `json:"from"`
	To     int64  `json:"to"`
	Points int    `json:"points"`
}

// Resume asks for the readings missed since Seq of Epoch; both are
// required (a resume without them is a bad_message).
type Resume struct {
	Type  string `json:"type"` // "resume"
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// DecodeError is every error DecodeClient returns; Code tells which.
type DecodeError struct {
	Code string // ErrBadJSON, ErrUnknownType or ErrBadMessage
	// ID is the command's (or history request's) id when the frame is
	// one whose "id", a string of 1 to 64 bytes, could be read: the
	// answer carries it.
	ID  string
	Err error
}

// Frame returns the error frame that answers the bad frame.
func (e *DecodeError) Frame() Error {
	return Error{Type: TypeError, Code: e.Code, ID: e.ID, Message: e.Err.Error()}
}

func (e *DecodeError) Error() string { return e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// DecodeClient decodes one client frame into *CommandMsg, *Subscribe,
// *Resume or *HistoryRequest. Unknown fields are rejected so typos show up at once; a
// command's id is 1 to 64 bytes and its name ValidName, so that nothing
// long reaches a log or the audit trail from a command. A
// command that fails with its id readable gets it in the DecodeError, so
// that the client waiting for that id gets its answer.
func DecodeClient(frame []byte) (any, error) {
	var head struct {
		Type string          `json:"type"`
		ID   json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(frame, &head); err != nil {
		return nil, &DecodeError{Code: ErrBadJSON, Err: fmt.Errorf("malformed JSON: %w", err)}
	}
	var id string
	if (head.Type == TypeCommand || head.Type == TypeHistory) && json.Unmarshal(head.ID, &id) == nil && len(id) > 64 {
		id = ""
	}
	var msg any
	switch head.Type {
	case TypeCommand:
		msg = new(CommandMsg)
	case TypeSubscribe:
		msg = new(Subscribe)
	case TypeResume:
		msg = new(Resume)
	case TypeHistory:
		msg = new(HistoryRequest)
	case "":
		return nil, &DecodeError{Code: ErrBadMessage, Err: errors.New(`missing "type"`)}
	default:
		return nil, &DecodeError{Code: ErrUnknownType, Err: fmt.Errorf("unknown message type %q", head.Type)}
	}
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(msg); err != nil {
		return nil, &DecodeError{Code: ErrBadMessage, ID: id, Err: fmt.Errorf("%s: %w", head.Type, err)}
	}
	if c, ok := msg.(*CommandMsg); ok {
		if c.ID == "" || c.Name == "" {
			return nil, &DecodeError{Code: ErrBadMessage, ID: id, Err: errors.New(`command needs "id" and "name"`)}
		}
		if len(c.ID) > 64 {
			return nil, &DecodeError{Code: ErrBadMessage, Err: errors.New("command id longer than 64 bytes")}
		}
		if !ValidName(c.Name) {
			return nil, &DecodeError{Code: ErrBadMessage, ID: id, Err: fmt.Errorf("command name %s: want <plugin>.<command>, lower_snake ids of at most %d bytes each", quoteShort(c.Name), MaxID)}
		}
	}
	if h, ok := msg.(*HistoryRequest); ok {
		switch {
		case len(h.ID) > 64:
			return nil, &DecodeError{Code: ErrBadMessage, Err: errors.New("history id longer than 64 bytes")}
		case !ValidName(h.Sensor):
			return nil, &DecodeError{Code: ErrBadMessage, ID: h.ID, Err: fmt.Errorf("history sensor %s: want <plugin>.<sensor>", quoteShort(h.Sensor))}
		case h.Points < 0 || h.Points > MaxHistoryPoints:
			return nil, &DecodeError{Code: ErrBadMessage, ID: h.ID, Err: fmt.Errorf("history points %d: want 1 to %d (0: %d)", h.Points, MaxHistoryPoints, DefaultHistoryPoints)}
		case h.From < 0 || h.To < 0 || h.To != 0 && h.From > h.To:
			return nil, &DecodeError{Code: ErrBadMessage, ID: h.ID, Err: errors.New("history from and to: want Unix ms, from not after to")}
		}
	}
	if _, ok := msg.(*Resume); ok {
		// Without seq, resume would mean "from 0": the whole history.
		var has struct{ Epoch, Seq json.RawMessage }
		json.Unmarshal(frame, &has)
		if isNull(has.Epoch) || isNull(has.Seq) {
			return nil, &DecodeError{Code: ErrBadMessage, Err: errors.New(`resume needs "epoch" and "seq"`)}
		}
	}
	return msg, nil
}

// quoteShort quotes s, or its start when s is longer than a name can be:
// an error frame never echoes a long string back.
func quoteShort(s string) string {
	if len(s) <= 2*MaxID+1 {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:2*MaxID+1]) + fmt.Sprintf("… (%d bytes)", len(s))
}

// isNull reports whether a member was absent or null.
func isNull(v json.RawMessage) bool { return len(v) == 0 || string(v) == "null" }
