package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/livecgi/livecgi/proto"
)

func readConst(r Reading) func(context.Context) (Reading, error) {
	return func(context.Context) (Reading, error) { return r, nil }
}

func TestValidate(t *testing.T) {
	ok := Sensor{ID: "temp_celsius", Interval: time.Second, Read: readConst(Gauge(1))}
	sensor := func(id string) Sensor { s := ok; s.ID = id; return s }
	do := func(context.Context, map[string]any) (any, error) { return nil, nil }
	tests := []struct {
		name    string
		p       Plugin
		wantErr string
	}{
		{name: "one sensor", p: Plugin{Sensors: []Sensor{ok}}},
		{name: "one command", p: Plugin{Commands: []Command{{ID: "reboot", Do: do}}}},
		{name: "digits and underscores", p: Plugin{Sensors: []Sensor{sensor("load15"), sensor("net_eth0_rx_bytes_per_second"), sensor("_x")}}},
		{name: "empty", p: Plugin{}, wantErr: "no sensors and no commands"},
		{name: "empty id", p: Plugin{Sensors: []Sensor{sensor("")}}, wantErr: `sensor id "": want a unique lower_snake id`},
		{name: "upper case", p: Plugin{Sensors: []Sensor{sensor("Temp")}}, wantErr: `sensor id "Temp"`},
		{name: "dash", p: Plugin{Sensors: []Sensor{sensor("cpu-temp")}}, wantErr: `sensor id "cpu-temp"`},
		{name: "dot", p: Plugin{Sensors: []Sensor{sensor("cpu.temp")}}, wantErr: `sensor id "cpu.temp"`},
		{name: "space", p: Plugin{Sensors: []Sensor{sensor("cpu temp")}}, wantErr: `sensor id "cpu temp"`},
		{name: "leading digit", p: Plugin{Sensors: []Sensor{sensor("1wire_celsius")}}, wantErr: `sensor id "1wire_celsius"`},
		{name: "non-ASCII", p: Plugin{Sensors: []Sensor{sensor("température")}}, wantErr: `sensor id "température"`},
		{name: "65 bytes", p: Plugin{Sensors: []Sensor{sensor(strings.Repeat("a", 65))}}, wantErr: "want a unique lower_snake id"},
		{name: "64 bytes", p: Plugin{Sensors: []Sensor{sensor(strings.Repeat("a", 64))}}},
		{name: "duplicate sensor", p: Plugin{Sensors: []Sensor{ok, ok}}, wantErr: `sensor id "temp_celsius": want a unique`},
		{name: "command reuses a sensor id", p: Plugin{Sensors: []Sensor{ok}, Commands: []Command{{ID: "temp_celsius", Do: do}}},
			wantErr: `command id "temp_celsius": want a unique`},
		{name: "bad command id", p: Plugin{Commands: []Command{{ID: "Reboot!", Do: do}}}, wantErr: `command id "Reboot!"`},
		{name: "no Read", p: Plugin{Sensors: []Sensor{{ID: "x", Interval: time.Second}}}, wantErr: "sensor x: needs Read or Watch and an Interval of at least 10ms"},
		{name: "no Interval", p: Plugin{Sensors: []Sensor{{ID: "x", Read: ok.Read}}}, wantErr: "sensor x: needs Read or Watch and an Interval of at least 10ms"},
		{name: "negative Interval", p: Plugin{Sensors: []Sensor{{ID: "x", Read: ok.Read, Interval: -time.Second}}}, wantErr: "Interval of at least 10ms"},
		{name: "Interval below the minimum", p: Plugin{Sensors: []Sensor{{ID: "x", Read: ok.Read, Interval: 9 * time.Millisecond}}}, wantErr: "Interval of at least 10ms"},
		{name: "Interval at the minimum", p: Plugin{Sensors: []Sensor{{ID: "x", Read: ok.Read, Interval: 10 * time.Millisecond}}}},
		{name: "no Do", p: Plugin{Commands: []Command{{ID: "reboot"}}}, wantErr: "command reboot: needs Do"},
		{name: "deadband and heartbeat", p: Plugin{Sensors: []Sensor{{ID: "x", Read: ok.Read, Interval: time.Second, Deadband: 0.5, Heartbeat: time.Minute}}}},
		{name: "negative deadband", p: Plugin{Sensors: []Sensor{{ID: "x", Read: ok.Read, Interval: time.Second, Deadband: -0.5}}},
			wantErr: "sensor x: invalid report-by-exception rule: deadband -0.5"},
		{name: "NaN deadband", p: Plugin{Sensors: []Sensor{{ID: "x", Read: ok.Read, Interval: time.Second, Deadband: math.NaN()}}}, wantErr: "deadband NaN"},
		{name: "negative heartbeat", p: Plugin{Sensors: []Sensor{{ID: "x", Read: ok.Read, Interval: time.Second, Heartbeat: -time.Second}}}, wantErr: "heartbeat -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestLogger checks the JSON lines the supervisor's go-plugin client
// parses: "@level" and "@message", attributes kept, no "time".
func TestLogger(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	log := Logger()
	os.Stderr = stderr

	log.Debug("polling", "every", "1s")
	log.Info("started", "sensors", 3)
	log.Warn("slow read", slog.Group("sensor", "id", "cpu_percent", "level", "x"))
	log.Error("read failed", "err", errors.New("no such file"))
	log.Log(context.Background(), slog.LevelError+4, "worse than error")
	log.Log(context.Background(), slog.LevelDebug-4, "trace") // below debug: dropped
	w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}

	want := []map[string]any{
		{"@level": "debug", "@message": "polling", "every": "1s"},
		{"@level": "info", "@message": "started", "sensors": 3.0},
		{"@level": "warn", "@message": "slow read", "sensor": map[string]any{"id": "cpu_percent", "level": "x"}},
		{"@level": "error", "@message": "read failed", "err": "no such file"},
		{"@level": "error", "@message": "worse than error"},
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, line := range lines {
		var got map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, line)
		}
		if _, ok := got["time"]; ok {
			t.Errorf("line %d has a time: %s", i, line)
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want[i])
		if !bytes.Equal(g, w) {
			t.Errorf("line %d:\n got %s\nwant %s", i, g, w)
		}
	}
}

// TestRead checks the Reading each outcome of a Read becomes.
func TestRead(t *testing.T) {
	tests := []struct {
		name string
		read func(context.Context) (Reading, error)
		want string // the Reading's value or error, as in proto text
	}{
		{name: "gauge", read: readConst(Gauge(-2.5)), want: "number:-2.5"},
		{name: "text", read: readConst(String("ok")), want: `text:"ok"`},
		{name: "flag", read: readConst(Flag(true)), want: "flag:true"},
		{name: "zero Reading is a number", read: readConst(Reading{}), want: "number:0"},
		{name: "error", read: func(context.Context) (Reading, error) { return Gauge(1), errors.New("unplugged") }, want: `error:"unplugged"`},
		{name: "panic", read: func(context.Context) (Reading, error) { panic("boom") }, want: `error:"read panicked: boom"`},
		{name: "runtime error", read: func(context.Context) (Reading, error) { var s []int; return Gauge(float64(s[len(s)])), nil },
			want: `error:"read panicked: runtime error: index out of range [0] with length 0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().UnixMilli()
			r, _ := read(context.Background(), Sensor{ID: "x_count", Read: tt.read})
			if r.Sensor != "x_count" || r.TMs < before {
				t.Errorf("sensor, t_ms = %q, %d; want x_count, >= %d", r.Sensor, r.TMs, before)
			}
			if got := readingText(r); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// readingText shows a Reading's value or error compactly.
func readingText(r *proto.Reading) string {
	if r.Error != "" {
		if r.Value != nil {
			return "error with a value"
		}
		b, _ := json.Marshal(r.Error)
		return "error:" + string(b)
	}
	switch v := r.Value.(type) {
	case *proto.Reading_Number:
		b, _ := json.Marshal(v.Number)
		return "number:" + string(b)
	case *proto.Reading_Text:
		b, _ := json.Marshal(v.Text)
		return "text:" + string(b)
	case *proto.Reading_Flag:
		b, _ := json.Marshal(v.Flag)
		return "flag:" + string(b)
	}
	return "no value"
}

func TestRootPaths(t *testing.T) {
	t.Setenv(proto.EnvProcRoot, "")
	t.Setenv(proto.EnvSysRoot, "")
	if got := ProcPath("net", "dev"); got != "/proc/net/dev" {
		t.Errorf("ProcPath = %s", got)
	}
	if got := SysPath("class/leds"); got != "/sys/class/leds" {
		t.Errorf("SysPath = %s", got)
	}
	t.Setenv(proto.EnvProcRoot, "/tmp/fixture/proc/")
	t.Setenv(proto.EnvSysRoot, "testdata/sys")
	if got := ProcPath("loadavg"); got != "/tmp/fixture/proc/loadavg" {
		t.Errorf("ProcPath = %s", got)
	}
	if got := SysPath(); got != "testdata/sys" {
		t.Errorf("SysPath() = %s", got)
	}
}

func TestDescribe(t *testing.T) {
	s := &server{p: Plugin{
		Name: "demo", Version: "1.2",
		Sensors: []Sensor{
			{ID: "a_count", Interval: 1500 * time.Millisecond, Deadband: 0.25, Heartbeat: 90*time.Second + 999*time.Microsecond, Read: readConst(Gauge(1))},
			{ID: "b_text", Type: Text, Unit: "", Title: "B", Interval: time.Minute, Read: readConst(String(""))},
		},
		Commands: []Command{{ID: "go", Title: "Go", Args: []Arg{
			{Name: "speed", Min: Range(0), Max: Range(9)},
			{Name: "mode", Type: Text, Required: true, Enum: []string{"fast", "slow"}},
		}}},
	}}
	d, err := s.Describe(context.Background(), &proto.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(d)
	want := `{"name":"demo","version":"1.2",` +
		`"sensors":[{"id":"a_count","type":1,"interval_ms":1500,"deadband":0.25,"heartbeat_ms":90000},{"id":"b_text","title":"B","type":2,"interval_ms":60000}],` +
		`"commands":[{"id":"go","title":"Go","args":[{"name":"speed","type":1,"min":0,"max":9},{"name":"mode","type":2,"required":true,"enum":["fast","slow"]}]}],"demand":true}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestDo(t *testing.T) {
	s := &server{p: Plugin{Commands: []Command{
		{ID: "echo", Do: func(_ context.Context, args map[string]any) (any, error) { return args, nil }},
		{ID: "none", Do: func(context.Context, map[string]any) (any, error) { return nil, nil }},
		{ID: "fail", Do: func(context.Context, map[string]any) (any, error) { return nil, errors.New("jammed") }},
		{ID: "explode", Do: func(context.Context, map[string]any) (any, error) { panic("kaboom") }},
		{ID: "unencodable", Do: func(context.Context, map[string]any) (any, error) { return func() {}, nil }},
	}}}
	tests := []struct {
		name, cmd, args string
		value, errText  string
		code            codes.Code
	}{
		{name: "echo", cmd: "echo", args: `{"n":1.5,"s":"x","b":true}`, value: `{"b":true,"n":1.5,"s":"x"}`},
		{name: "no args", cmd: "echo", value: `{}`},
		{name: "nil result", cmd: "none", args: `{}`},
		{name: "error", cmd: "fail", errText: "jammed"},
		{name: "panic", cmd: "explode", errText: "command panicked: kaboom"},
		{name: "unencodable result", cmd: "unencodable", errText: "result: json: unsupported type: func()"},
		{name: "unknown", cmd: "nope", code: codes.NotFound},
		{name: "bad JSON", cmd: "echo", args: `{"n":`, code: codes.InvalidArgument},
		{name: "args not an object", cmd: "echo", args: `[1]`, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.Do(context.Background(), &proto.CommandRequest{Command: tt.cmd, ArgsJson: []byte(tt.args)})
			if tt.code != codes.OK {
				if status.Code(err) != tt.code {
					t.Errorf("err = %v, want code %v", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.ValueJson) != tt.value || resp.Error != tt.errText {
				t.Errorf("got %s, %q; want %s, %q", resp.ValueJson, resp.Error, tt.value, tt.errText)
			}
		})
	}
}

// failingStream is a Stream whose Send fails after ok readings while its
// context stays alive, as when a message can't be written.
type failingStream struct {
	grpc.ServerStream
	ctx context.Context
	ok  int
}

func (f *failingStream) Context() context.Context { return f.ctx }

func (f *failingStream) Send(*proto.Reading) error {
	if f.ok == 0 {
		return errors.New("send failed")
	}
	f.ok--
	return nil
}

// TestStreamSendError checks that Stream returns Send's error and stops its
// pollers, though the caller's context is still alive.
func TestStreamSendError(t *testing.T) {
	s := &server{p: Plugin{Sensors: []Sensor{
		{ID: "a", Interval: time.Millisecond, Read: readConst(Gauge(1))},
		{ID: "b", Interval: time.Millisecond, Read: readConst(Gauge(2))},
	}}}
	done := make(chan error, 1)
	go func() { done <- s.Stream(&proto.StreamRequest{}, &failingStream{ctx: context.Background(), ok: 10}) }()
	select {
	case err := <-done:
		if err == nil || err.Error() != "send failed" {
			t.Errorf("got %v, want send failed", err)
		}
	case <-time.After(30 * time.Second): // hang guard only
		t.Fatal("Stream did not return after Send failed")
	}
}

// recordingStream is a Stream that hands every reading to got.
type recordingStream struct {
	grpc.ServerStream
	ctx context.Context
	got chan *proto.Reading
}

func (r *recordingStream) Context() context.Context { return r.ctx }

func (r *recordingStream) Send(x *proto.Reading) error {
	r.got <- x
	return nil
}

// TestStreamReadsAtOnce: nothing is read before a Stream opens; when one
// opens, every sensor is read at once (their interval is an hour), and
// once it ends nothing is read any more.
func TestStreamReadsAtOnce(t *testing.T) {
	var reads [2]atomic.Int64
	sensor := func(i int, id string) Sensor {
		return Sensor{ID: id, Interval: time.Hour, Read: func(context.Context) (Reading, error) {
			reads[i].Add(1)
			return Gauge(float64(i)), nil
		}}
	}
	s := &server{p: Plugin{Sensors: []Sensor{sensor(0, "a"), sensor(1, "b")}}}
	if n := reads[0].Load() + reads[1].Load(); n != 0 {
		t.Fatalf("%d reads before any stream", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &recordingStream{ctx: ctx, got: make(chan *proto.Reading, 4)}
	done := make(chan error, 1)
	go func() { done <- s.Stream(&proto.StreamRequest{}, st) }()
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case r := <-st.got:
			seen[r.Sensor] = true
		case <-time.After(30 * time.Second): // hang guard only
			t.Fatalf("readings after opening a stream: %v, want a and b at once", seen)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a, b := reads[0].Load(), reads[1].Load()
	if a != 1 || b != 1 {
		t.Errorf("reads %d and %d, want one each", a, b)
	}
}

// TestReaders checks what each kind of Stream request asks of each
// sensor: which are read, how often, by which rule.
func TestReaders(t *testing.T) {
	sensors := []Sensor{
		{ID: "a", Interval: time.Second, Deadband: 0.5, Heartbeat: time.Minute, Read: readConst(Gauge(1))},
		{ID: "b", Interval: 5 * time.Second, Read: readConst(Gauge(1))},
		{ID: "c", Interval: 10 * time.Millisecond, Heartbeat: 1500 * time.Microsecond, Read: readConst(Gauge(1))},
	}
	f := func(v float64) *float64 { return &v }
	ms := func(v int64) *int64 { return &v }
	tests := []struct {
		name string
		req  *proto.StreamRequest
		want string
	}{
		{"empty: all, every reading", &proto.StreamRequest{}, "a 1s off; b 5s off; c 10ms off"},
		{"sensors: those, every reading", &proto.StreamRequest{Sensors: []string{"c", "a"}}, "a 1s off; c 10ms off"},
		{"all: declared rules", &proto.StreamRequest{All: true}, "a 1s 0.5/1m0s; b 5s off; c 10ms 0/1ms"},
		{"demand: only those", &proto.StreamRequest{Sensors: []string{"b"}, Demand: []*proto.SensorDemand{{Id: "a", IntervalMs: 60000}}},
			"a 1m0s 0.5/1m0s"},
		{"demand: not faster than its own", &proto.StreamRequest{Demand: []*proto.SensorDemand{{Id: "b", IntervalMs: 1000}}}, "b 5s off"},
		{"demand: overrides", &proto.StreamRequest{Demand: []*proto.SensorDemand{
			{Id: "a", Deadband: f(0), HeartbeatMs: ms(0)}, {Id: "b", Deadband: f(2)}, {Id: "c", HeartbeatMs: ms(20)}}},
			"a 1s off; b 5s 2/0s; c 10ms 0/20ms"},
		{"all and demand", &proto.StreamRequest{All: true, Demand: []*proto.SensorDemand{{Id: "b", IntervalMs: 30000, HeartbeatMs: ms(60000)}}},
			"a 1s 0.5/1m0s; b 30s 0/1m0s; c 10ms 0/1ms"},
		{"demand of a sensor that went: ignored", &proto.StreamRequest{Demand: []*proto.SensorDemand{{Id: "gone"}, {Id: "c"}}}, "c 10ms 0/1ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range readers(tt.req, sensors) {
				rule := "off"
				if !r.rule.Off() {
					rule = fmt.Sprintf("%v/%v", r.rule.Deadband, r.rule.Heartbeat)
				}
				got = append(got, fmt.Sprintf("%s %v %s", r.x.ID, r.every, rule))
			}
			if g := strings.Join(got, "; "); g != tt.want {
				t.Errorf("got  %s\nwant %s", g, tt.want)
			}
		})
	}
}
