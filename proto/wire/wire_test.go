package wire

import (
	"encoding/json"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestServerFramesGolden pins the JSON of every server message: field names
// are the protocol, and a change here is a protocol change.
func TestServerFramesGolden(t *testing.T) {
	lo, hi := 0.0, 255.0
	frames := map[string]any{
		"hello": Hello{Type: TypeHello, Version: Version, Server: "1.0.0", Epoch: "a1b2c3", Seq: 41,
			Sensors:  []Sensor{{ID: "system.cpu_percent", Plugin: "system", Title: "CPU", Unit: "%", ValueType: ValueNumber, IntervalMS: 1000}},
			Commands: []Command{{ID: "leds.set_brightness", Plugin: "leds", Title: "Set brightness", Args: []Arg{{Name: "led", Type: ValueText, Required: true, Enum: []string{"led0"}}, {Name: "value", Type: ValueNumber, Required: true, Min: &lo, Max: &hi}}}},
			Plugins:  []PluginInfo{{ID: "system", State: StateOnline, Version: "1.0.0"}}},
		"snapshot":     Snapshot{Type: TypeSnapshot, Mode: SnapshotFull, Seq: 41, Readings: []Reading{{Sensor: "system.cpu_percent", Value: 12.5, Unit: "%", Seq: 40, T: 1800000000000}}},
		"replay":       Snapshot{Type: TypeSnapshot, Mode: SnapshotReplay, Seq: 41, Readings: []Reading{{Sensor: "system.cpu_percent", Value: 12.5, Unit: "%", Seq: 41, T: 1800000000000}}},
		"history_gone": Snapshot{Type: TypeSnapshot, Mode: SnapshotFull, Reason: "history gone: more readings were missed than are kept", Seq: 41, Readings: []Reading{}},
		"reading":      Reading{Type: TypeReading, Sensor: "system.cpu_percent", Value: 12.5, Unit: "%", Seq: 42, T: 1800000000123},
		"failed":       Reading{Type: TypeReading, Sensor: "system.thermal_zone0_celsius", Value: nil, Unit: "°C", Seq: 43, T: 1800000000123, Error: "read thermal zone: no such file"},
		"status":       Status{Type: TypeStatus, Plugin: "system", State: StateSwapped, Version: "1.0.1", PreviousVersion: "1.0.0", T: 1800000000200},
		"result":       Result{Type: TypeResult, ID: "7", OK: true, Value: map[string]any{"brightness": 42}},
		"error":        Error{Type: TypeError, Code: ErrBadArgs, ID: "8", Message: `leds.set_brightness: argument "value": 300 out of range [0, 255]`},
	}
	for name, v := range frames {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if string(want) != string(got)+"\n" {
				t.Errorf("%s changed:\n%s\nwant:\n%s", name, got, want)
			}
		})
	}
}

func TestDecodeClient(t *testing.T) {
	tests := []struct {
		name, in string
		code     string // "" = ok
		check    func(any) bool
	}{
		{"command", `{"type":"command","id":"1","name":"leds.set_brightness","args":{"led":"led0","value":3}}`, "", func(m any) bool {
			c, ok := m.(*CommandMsg)
			return ok && c.ID == "1" && c.Args["value"] == json.Number("3")
		}},
		{"subscribe all", `{"type":"subscribe"}`, "", func(m any) bool { s, ok := m.(*Subscribe); return ok && s.Sensors == nil }},
		{"resume", `{"type":"resume","epoch":"e","seq":9}`, "", func(m any) bool { r, ok := m.(*Resume); return ok && r.Seq == 9 && r.Epoch == "e" }},
		{"malformed", `{"type":`, ErrBadJSON, nil},
		{"array", `[]`, ErrBadJSON, nil},
		{"empty", ``, ErrBadJSON, nil},
		{"no type", `{"id":"1"}`, ErrBadMessage, nil},
		{"type not a string", `{"type":1}`, ErrBadJSON, nil},
		{"unknown type", `{"type":"reboot"}`, ErrUnknownType, nil},
		{"unknown field", `{"type":"subscribe","sensors":[],"x":1}`, ErrBadMessage, nil},
		{"wrong field type", `{"type":"resume","epoch":"e","seq":"9"}`, ErrBadMessage, nil},
		{"command without name", `{"type":"command","id":"1"}`, ErrBadMessage, nil},
		{"long id", `{"type":"command","id":"` + string(make([]byte, 65)) + `","name":"x"}`, ErrBadJSON, nil},
		{"resume without seq", `{"type":"resume","epoch":"e"}`, ErrBadMessage, nil},
		{"resume with a null seq", `{"type":"resume","epoch":"e","seq":null}`, ErrBadMessage, nil},
		{"resume without epoch", `{"type":"resume","seq":3}`, ErrBadMessage, nil},
		{"resume from 0", `{"type":"resume","epoch":"e","seq":0}`, "", func(m any) bool { r, ok := m.(*Resume); return ok && r.Seq == 0 }},
		{"too long id", `{"type":"command","id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","name":"x"}`, ErrBadMessage, nil},
		{"longest name", `{"type":"command","id":"1","name":"` + strings.Repeat("p", 64) + "." + strings.Repeat("c", 64) + `"}`, "", func(m any) bool {
			c, ok := m.(*CommandMsg)
			return ok && len(c.Name) == 129
		}},
		{"name too long", `{"type":"command","id":"1","name":"` + strings.Repeat("p", 64) + "." + strings.Repeat("c", 65) + `"}`, ErrBadMessage, nil},
		{"name of 60 KB", `{"type":"command","id":"1","name":"p.` + strings.Repeat("c", 60<<10) + `"}`, ErrBadMessage, nil},
		{"name without plugin", `{"type":"command","id":"1","name":"set"}`, ErrBadMessage, nil},
		{"name not lower_snake", `{"type":"command","id":"1","name":"Leds.set"}`, ErrBadMessage, nil},
		{"name with two dots", `{"type":"command","id":"1","name":"a.b.c"}`, ErrBadMessage, nil},
		{"history", `{"type":"history","id":"h1","sensor":"system.load1","from":1,"to":2,"points":10}`, "", func(m any) bool {
			h, ok := m.(*HistoryRequest)
			return ok && *h == HistoryRequest{Type: TypeHistory, ID: "h1", Sensor: "system.load1", From: 1, To: 2, Points: 10}
		}},
		{"history with defaults", `{"type":"history","sensor":"system.load1"}`, "", func(m any) bool { h, ok := m.(*HistoryRequest); return ok && h.Points == 0 && h.To == 0 }},
		{"history of a bad sensor", `{"type":"history","sensor":"load1"}`, ErrBadMessage, nil},
		{"history of too many points", `{"type":"history","sensor":"a.b","points":2001}`, ErrBadMessage, nil},
		{"history backwards", `{"type":"history","sensor":"a.b","from":5,"to":4}`, ErrBadMessage, nil},
		{"history before 1970", `{"type":"history","sensor":"a.b","from":-5}`, ErrBadMessage, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeClient([]byte(tt.in))
			if tt.code == "" {
				if err != nil || !tt.check(m) {
					t.Fatalf("DecodeClient = %#v, %v", m, err)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Code != tt.code {
				t.Fatalf("err = %v, want code %s", err, tt.code)
			}
		})
	}
}

// TestDecodeErrorID: a command or history frame that fails to decode carries its id
// in the error whenever the id can be read, so that its answer reaches the
// client waiting for it; other frames, and ids that are no string or too
// long, carry none.
func TestDecodeErrorID(t *testing.T) {
	for _, tt := range []struct{ in, id string }{
		{`{"type":"command","id":"c1","name":"a.b","args":{},"extra":1}`, "c1"},
		{`{"type":"command","id":"c2","name":"a.b","args":5}`, "c2"},
		{`{"type":"command","id":"c3"}`, "c3"},
		{`{"type":"command","id":"c4","name":""}`, "c4"},
		{`{"type":"command","id":"c6","name":"p.` + strings.Repeat("x", 1000) + `"}`, "c6"},
		{`{"type":"command","id":7,"name":"a.b"}`, ""},
		{`{"type":"command","id":"","name":"a.b"}`, ""},
		{`{"type":"command","id":"` + strings.Repeat("a", 65) + `","name":"a.b"}`, ""},
		{`{"type":"resume","id":"r1","seq":1,"epoch":"e"}`, ""},
		{`{"type":"command","id":"c5",`, ""},
		{`{"type":"history","id":"h1","sensor":"a.b","extra":1}`, "h1"},
		{`{"type":"history","id":"h2","sensor":"a.b","points":"many"}`, "h2"},
		{`{"type":"history","id":"h3","sensor":"Bad"}`, "h3"},
		{`{"type":"history","id":"h4","sensor":"a.b","points":5000}`, "h4"},
		{`{"type":"history","id":"` + strings.Repeat("a", 65) + `","sensor":"a.b"}`, ""},
	} {
		_, err := DecodeClient([]byte(tt.in))
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("%s: err = %v, want a DecodeError", tt.in, err)
		}
		if de.ID != tt.id || de.Frame().ID != tt.id || de.Frame().Code != de.Code || de.Frame().Type != TypeError || len(de.Frame().Message) > 300 {
			t.Errorf("%s: id %q, frame %+v; want id %q", tt.in, de.ID, de.Frame(), tt.id)
		}
	}
}

// TestValidName: sensor and command names are <plugin>.<id>, both
// lower_snake ids of at most MaxID bytes.
func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"leds.set": true, "a.b": true, "_x.y_1": true, strings.Repeat("a", 64) + "." + strings.Repeat("b", 64): true,
		"": false, "leds": false, ".set": false, "leds.": false, "a.b.c": false, "Leds.set": false, "1a.b": false,
		strings.Repeat("a", 65) + ".b": false, "a." + strings.Repeat("b", 65): false, "a b.c": false,
	} {
		if ValidName(name) != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, !want, want)
		}
	}
}

func FuzzDecodeClient(f *testing.F) {
	f.Add([]byte(`{"type":"command","id":"1","name":"a.b","args":{"x":1}}`))
	f.Add([]byte(`{"type":"resume","epoch":"e","seq":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClient(b)
		if (m == nil) == (err == nil) {
			t.Fatalf("DecodeClient(%q) = %v, %v: want exactly one", b, m, err)
		}
		var de *DecodeError
		if err != nil && !errors.As(err, &de) {
			t.Fatalf("error %v is not a DecodeError", err)
		}
	})
}

// TestAppendNumber: a bare number is written exactly as a frame's JSON
// writes it; integers never get an exponent.
func TestAppendNumber(t *testing.T) {
	for v, want := range map[float64]string{
		17489920: "17489920", 0: "0", -3: "-3", 12.5: "12.5", 0.1: "0.1", 1e20: "100000000000000000000",
		1e21: "1e+21", 1e-6: "0.000001", 1e-7: "1e-7", -2.5e-10: "-2.5e-10", 1 << 53: "9007199254740992",
		4294967296: "4294967296", 123456789012: "123456789012", 1.5e300: "1.5e+300",
	} {
		if got := string(AppendNumber(nil, v)); got != want {
			t.Errorf("AppendNumber(%v) = %s, want %s", v, got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 100000 {
		var v float64
		switch i % 4 {
		case 0:
			v = math.Float64frombits(r.Uint64())
		case 1:
			v = float64(r.Int64N(1<<53)) * float64(1-2*(i/4%2))
		case 2:
			v = r.Float64() * math.Pow(10, float64(r.IntN(50)-25))
		default:
			v = float64(r.IntN(1e6)) / 100
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		js, _ := json.Marshal(Reading{Value: v})
		var frame struct {
			Value json.RawMessage `json:"value"`
		}
		json.Unmarshal(js, &frame)
		if got := string(AppendNumber([]byte("x"), v)); got != "x"+string(frame.Value) {
			t.Fatalf("AppendNumber(%v) = %s, a frame carries %s", v, got[1:], frame.Value)
		}
	}
}
