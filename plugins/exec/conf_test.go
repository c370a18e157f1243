package exec

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseConf(t *testing.T) {
	tests := []struct {
		name, conf string
		want       string // spec summary, or the error
	}{
		{"smallest", "run = /usr/bin/read-temp\ninterval = 2s\n", "[/usr/bin/read-temp] periodic 2s/2s sensors [t:NUMBER]"},
		{"defaults", "# a comment\n\nrun = ./prog 'a b' \"c \\\"d\\\"\" e\\ f\n", "[/etc/x/prog a b c \"d\" e f] periodic 2s/2s sensors [t:NUMBER]"},
		{"fast", "run = /bin/true\ninterval = 10ms\n", "[/bin/true] periodic 10ms/50ms sensors [t:NUMBER]"},
		{"typed", "run = /bin/true\ntype = bool\nunit = on\ntitle = Door\n", "[/bin/true] periodic 2s/2s sensors [t:BOOL:on:Door]"},
		{"stream", "run = /bin/true\nmode = stream\nsensors = a b\nunit.a = °C\nunit = %\ntype.b = text\n",
			"[/bin/true] stream 24h0m0s/24h0m0s sensors [t_a:NUMBER:°C:t a t_b:TEXT:%:t b]"},
		{"rule", "run = /bin/true\ndeadband = 0.5\nheartbeat = 5m\n", "[/bin/true] periodic 2s/2s sensors [t:NUMBER:rbe 0.5/5m0s]"},
		{"rule per sensor", "run = /bin/true\nsensors = a b c\ndeadband = 2\ndeadband.b = 0\nheartbeat.c = 0\n",
			"[/bin/true] periodic 2s/2s sensors [t_a:NUMBER::t a:rbe 2/1m0s t_b:NUMBER::t b t_c:NUMBER::t c:rbe 2/0s]"},
		{"rule off", "run = /bin/true\nheartbeat = 0\n", "[/bin/true] periodic 2s/2s sensors [t:NUMBER:rbe 0/0s]"},
		{"command", "command = set_relay\nrun = /bin/true\narg.relay = number required min=1 max=4\narg.state = text enum=on,off title=New_state\n",
			"[/bin/true] command set_relay relay:NUMBER:true:1:4 state:TEXT:false:New state:[on off]"},

		{"unknown key", "run = /bin/true\ncolour = blue\n", "t.conf:2: unknown key colour"},
		{"no run", "interval = 1s\n", "t.conf: no run = line: want the program to run"},
		{"twice", "run = /bin/true\nrun = /bin/false\n", "t.conf:2: run set twice (first on line 1)"},
		{"no equals", "run /bin/true\n", `t.conf:1: want key = value, got "run /bin/true"`},
		{"bad mode", "run = /bin/true\nmode = often\n", `t.conf:2: mode: want periodic or stream, got "often"`},
		{"no unit", "run = /bin/true\ninterval = 2\n", `t.conf:2: interval: want a duration of at least 10ms with a unit, e.g. 2s, got "2"`},
		{"quote", "run = /bin/echo 'a\n", "t.conf:1: run: unterminated ' quote"},
		{"bad type", "run = /bin/true\ntype = float\n", `t.conf:2: type: want number, text or bool, got "float"`},
		{"min on text", "run = /bin/true\ntype = text\nmin = 1\n", "t.conf:3: min: only a number sensor has a min"},
		{"unknown sensor", "run = /bin/true\nsensors = a\nunit.b = V\n", `t.conf:3: unit.b: no sensor "b" in sensors =`},
		{"stream timeout", "run = /bin/true\nmode = stream\ntimeout = 1s\n", "t.conf:3: timeout: a stream runs until it exits: no timeout"},
		{"command interval", "command = x\nrun = /bin/true\ninterval = 1s\n", "t.conf:3: interval: a command conf runs its program per command: no interval"},
		{"bad arg", "command = x\nrun = /bin/true\narg.n = number max=lots\n", `t.conf:3: arg.n: max: want a number for a number argument, got "lots"`},
		{"bad deadband", "run = /bin/true\ndeadband = -1\n", `t.conf:2: deadband: want a number, 0 or more, got "-1"`},
		{"NaN deadband", "run = /bin/true\ndeadband = NaN\n", `t.conf:2: deadband: want a number, 0 or more, got "NaN"`},
		{"deadband word", "run = /bin/true\ndeadband = lots\n", `t.conf:2: deadband: want a number, 0 or more, got "lots"`},
		{"bad heartbeat", "run = /bin/true\nheartbeat = 60\n", `t.conf:2: heartbeat: want 0 (never) or a duration with a unit, e.g. 60s, got "60"`},
		{"negative heartbeat", "run = /bin/true\nheartbeat = -1s\n", `t.conf:2: heartbeat: want 0 (never) or a duration with a unit, e.g. 60s, got "-1s"`},
		{"deadband of no sensor", "run = /bin/true\nsensors = a\ndeadband.b = 1\n", `t.conf:3: deadband.b: no sensor "b" in sensors =`},
		{"command deadband", "command = x\nrun = /bin/true\ndeadband = 1\n", "t.conf:3: deadband: a command has no deadband"},
		{"command heartbeat", "command = x\nrun = /bin/true\nheartbeat.x = 1s\n", "t.conf:3: heartbeat.x: a command has no sensors"},
		{"arg word", "command = x\nrun = /bin/true\narg.n = number optional\n", `t.conf:3: arg.n: unknown word "optional": want required, min=, max=, enum= or title=`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseConf("/etc/x", "t", []byte(tt.conf))
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = summary(s)
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// summary writes a spec on one line.
func summary(s *spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v ", s.argv)
	if c := s.command; c != nil {
		fmt.Fprintf(&b, "command %s", c.id)
		for _, a := range c.args {
			fmt.Fprintf(&b, " %s:%v:%v", a.Name, a.Type, a.Required)
			if a.Min != nil {
				fmt.Fprintf(&b, ":%v:%v", *a.Min, *a.Max)
			}
			if a.Title != "" {
				fmt.Fprintf(&b, ":%s", a.Title)
			}
			if a.Enum != nil {
				fmt.Fprintf(&b, ":%v", a.Enum)
			}
		}
		return b.String()
	}
	mode := "periodic"
	if s.stream {
		mode = "stream"
	}
	fmt.Fprintf(&b, "%s %v/%v sensors [", mode, s.interval, s.timeout)
	for i, x := range s.sensors {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%v", x.id, x.typ)
		if x.unit != "" || x.title != "" {
			fmt.Fprintf(&b, ":%s:%s", x.unit, x.title)
		}
		if x.deadband != 0 || x.heartbeat != defaultHeartbeat {
			fmt.Fprintf(&b, ":rbe %v/%v", x.deadband, x.heartbeat)
		}
	}
	b.WriteByte(']')
	return b.String()
}

// TestREADMEWeather: the README's weather station conf parses as written,
// with its report-by-exception rule.
func TestREADMEWeather(t *testing.T) {
	s, err := parseConf("/etc/x", "weather", []byte(readmeConf(t, "run = /usr/bin/weatherd --port /dev/ttyS1")))
	if err != nil {
		t.Fatal(err)
	}
	want := "[/usr/bin/weatherd --port /dev/ttyS1] stream 24h0m0s/24h0m0s sensors [weather_temp:NUMBER:°C:weather temp:rbe 0.2/5m0s weather_hum:NUMBER:%:weather hum:rbe 1/5m0s]"
	if got := summary(s); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
