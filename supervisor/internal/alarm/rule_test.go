package alarm

import (
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        Rule
	}{
		{"hot", "system.board_temp above 70", Rule{Name: "hot", Sensor: "system.board_temp", Value: 70, Clear: 70, Severity: Warning}},
		{"hot", "  system.board_temp\tabove 70.5 for 1m clear 65 critical ", Rule{Name: "hot", Sensor: "system.board_temp", Value: 70.5, Clear: 65, For: time.Minute, Severity: Critical}},
		{"low_batt", "ups.charge below 20 critical clear 25 for 30s", Rule{Name: "low_batt", Sensor: "ups.charge", Below: true, Value: 20, Clear: 25, For: 30 * time.Second, Severity: Critical}},
		{"cold", "exec.t below -5 warning", Rule{Name: "cold", Sensor: "exec.t", Below: true, Value: -5, Clear: -5, Severity: Warning}},
		{"door", "gpio.door_open above 0.5 for 0s", Rule{Name: "door", Sensor: "gpio.door_open", Value: 0.5, Clear: 0.5, Severity: Warning}},
	} {
		t.Run(tc.value, func(t *testing.T) {
			got, err := Parse(tc.name, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			again, err := Parse(tc.name, got.String())
			if err != nil || again != got {
				t.Fatalf("String %q parses to %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"hot", "", "alarm.hot: want `<sensor> above|below <value> [for <duration>] [clear <value>] [warning|critical]`, got \"\""},
		{"hot", "system.t over 70", "alarm.hot: want `<sensor> above|below <value>"},
		{"hot", "system.t above", "alarm.hot: want `"},
		{"Hot", "system.t above 70", `alarm."Hot": want a lower_snake alarm name`},
		{"hot", "board_temp above 70", `alarm.hot: sensor "board_temp": want <plugin>.<sensor>`},
		{"hot", "system.Temp above 70", `alarm.hot: sensor "system.Temp"`},
		{"hot", "system.t above warm", `alarm.hot: threshold: want a number, got "warm"`},
		{"hot", "system.t above NaN", `alarm.hot: threshold: want a number, got "NaN"`},
		{"hot", "system.t above 70 for", `alarm.hot: "for" wants a value`},
		{"hot", "system.t above 70 for soon", `alarm.hot: for "soon": want a duration`},
		{"hot", "system.t above 70 for -1s", `alarm.hot: for "-1s"`},
		{"hot", "system.t above 70 clear inf", `alarm.hot: clear: want a number, got "inf"`},
		{"hot", "system.t above 70 clear 75", "alarm.hot: clear 75 is above the threshold 70"},
		{"cold", "system.t below 5 clear 4", "alarm.cold: clear 4 is below the threshold 5"},
		{"hot", "system.t above 70 loud", `alarm.hot: unexpected "loud"`},
		{"hot", "system.t above 70 for 1m for 2m", "alarm.hot: for given twice"},
		{"hot", "system.t above 70 warning critical", "alarm.hot: severity given twice"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			_, err := Parse(tc.name, tc.value)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want %s…", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"system.board_temp above 70", "ups.charge below 20 critical clear 25 for 30s",
		"a.b above 1e300 clear -1e300", "a.b below -0 for 1h2m3.5s", "x.y above 1 warning warning",
	} {
		f.Add("hot", s)
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		r, err := Parse(name, value)
		if err != nil {
			if !strings.HasPrefix(err.Error(), KeyPrefix) {
				t.Fatalf("error %q does not start with the key", err)
			}
			return
		}
		if !proto.ValidID(name) {
			t.Fatalf("Parse accepted the name %q", name)
		}
		if r.Below && r.Clear < r.Value || !r.Below && r.Clear > r.Value || r.For < 0 ||
			(r.Severity != Warning && r.Severity != Critical) || !validSensor(r.Sensor) {
			t.Fatalf("Parse(%q, %q) = %+v: invalid rule", name, value, r)
		}
		again, err := Parse(name, r.String())
		if err != nil || again != r {
			t.Fatalf("String %q of %+v parses to %+v, %v", r.String(), r, again, err)
		}
	})
}
