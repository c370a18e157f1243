package leds

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
)

// fixture is the sysfs tree of testdata/, its names URL-escaped (see
// sdktest.CopyFixture).
const fixture = "testdata/sys"

// MustCopyFixture copies testdata/sys into a fresh directory, unescaping
// the names, and returns that sys root. Tests write to the copy only.
func MustCopyFixture(tb testing.TB) string {
	tb.Helper()
	return sdktest.CopyFixture(tb, fixture)
}

func classDir(sysRoot string) string { return filepath.Join(sysRoot, "class/leds") }

func TestFindLEDs(t *testing.T) {
	leds, err := findLEDs(classDir(MustCopyFixture(t)))
	if err != nil {
		t.Fatal(err)
	}
	want := []led{
		{name: "input0::capslock", id: "input0_capslock", max: 1},
		{name: "led0", id: "led0", max: 255},
		{name: "mt7621:green:wlan", id: "mt7621_green_wlan", max: 1},
	}
	if len(leds) != len(want) {
		t.Fatalf("got %+v, want %+v", leds, want)
	}
	for i, w := range want {
		l := leds[i]
		if l.name != w.name || l.id != w.id || l.max != w.max || filepath.Base(l.dir) != w.name {
			t.Errorf("[%d] got %+v, want %+v", i, l, w)
		}
	}
}

func TestFindLEDsErrors(t *testing.T) {
	empty := t.TempDir()
	if _, err := findLEDs(filepath.Join(empty, "nope")); !os.IsNotExist(err) {
		t.Errorf("missing dir: got %v, want not-exist", err)
	}
	if err := os.Mkdir(filepath.Join(empty, "not-an-led"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := findLEDs(empty); err == nil || err.Error() != "no LEDs in "+empty {
		t.Errorf("no LEDs: got %v", err)
	}
}

func TestFindLEDsDuplicateIDs(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a:b", "a::b", "A-B"} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "max_brightness"), []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	leds, err := findLEDs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range leds {
		ids = append(ids, l.id)
	}
	if got := strings.Join(ids, " "); got != "a_b a_b_2 a_b_3" {
		t.Errorf("ids = %s", got)
	}
}

func TestLEDID(t *testing.T) {
	tests := map[string]string{
		"led0":                  "led0",
		"input0::capslock":      "input0_capslock",
		"mt7621:green:wlan":     "mt7621_green_wlan",
		"tpacpi::thinklight":    "tpacpi_thinklight",
		"mmc0::":                "mmc0",
		":white:status":         "white_status",
		"0:green:power":         "led_0_green_power",
		"ACT":                   "act",
		"::":                    "led",
		strings.Repeat("x", 80): strings.Repeat("x", 50),
		"platform::micmute":     "platform_micmute",
	}
	for in, want := range tests {
		if got := ledID(in); got != want {
			t.Errorf("ledID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseTrigger(t *testing.T) {
	tests := []struct {
		name, in, active string
		all              []string
	}{
		{name: "none active", in: "[none] timer heartbeat\n", active: "none", all: []string{"none", "timer", "heartbeat"}},
		{name: "middle", in: "none [mmc0] mmc1", active: "mmc0", all: []string{"none", "mmc0", "mmc1"}},
		{name: "last", in: "none timer [default-on]\n", active: "default-on", all: []string{"none", "timer", "default-on"}},
		{name: "no brackets", in: "none timer\n", all: []string{"none", "timer"}},
		{name: "empty", in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			active, all := parseTrigger(tt.in)
			if active != tt.active || strings.Join(all, " ") != strings.Join(tt.all, " ") {
				t.Errorf("got %q %q, want %q %q", active, all, tt.active, tt.all)
			}
		})
	}
}

func TestSetBrightness(t *testing.T) {
	leds := mustLEDs(t)
	tests := []struct {
		name    string
		led     led
		value   float64
		wantErr string
	}{
		{name: "on", led: leds["input0::capslock"], value: 1},
		{name: "off", led: leds["input0::capslock"], value: 0},
		{name: "pwm half", led: leds["led0"], value: 128},
		{name: "pwm max", led: leds["led0"], value: 255},
		{name: "over own max", led: leds["input0::capslock"], value: 2,
			wantErr: "brightness of input0::capslock must be a whole number from 0 to 1, not 2"},
		{name: "negative", led: leds["led0"], value: -1, wantErr: "from 0 to 255, not -1"},
		{name: "fraction", led: leds["led0"], value: 1.5, wantErr: "from 0 to 255, not 1.5"},
		{name: "huge", led: leds["led0"], value: 1e300, wantErr: "from 0 to 255, not 1e+300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(tt.led.dir, "brightness")
			before, _ := os.ReadFile(path)
			got, err := tt.led.setBrightness(tt.value)
			after, _ := os.ReadFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				if string(after) != string(before) {
					t.Errorf("rejected value was written: %q → %q", before, after)
				}
				return
			}
			if err != nil || got != int(tt.value) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.value)
			}
			if string(after) != formatInt(tt.value) {
				t.Errorf("file holds %q, want %q", after, formatInt(tt.value))
			}
		})
	}
}

func TestSetTrigger(t *testing.T) {
	tests := []struct {
		name, led, trigger, wantErr string
	}{
		{name: "timer", led: "led0", trigger: "timer"},
		{name: "none", led: "mt7621:green:wlan", trigger: "none"},
		{name: "netdev", led: "mt7621:green:wlan", trigger: "netdev"},
		{name: "other LED's trigger", led: "mt7621:green:wlan", trigger: "mmc0",
			wantErr: `mt7621:green:wlan has no trigger "mmc0"; it has: none timer default-on netdev`},
		{name: "brackets", led: "led0", trigger: "[mmc0]", wantErr: `led0 has no trigger "[mmc0]"`},
		{name: "empty", led: "led0", trigger: "", wantErr: `led0 has no trigger ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustLEDs(t)[tt.led]
			path := filepath.Join(l.dir, "trigger")
			before, _ := os.ReadFile(path)
			got, err := l.setTrigger(tt.trigger)
			after, _ := os.ReadFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				if string(after) != string(before) {
					t.Errorf("rejected trigger was written: %q", after)
				}
				return
			}
			if err != nil || got != tt.trigger {
				t.Fatalf("got %q, %v; want %q", got, err, tt.trigger)
			}
			// A plain file is no sysfs: it now holds just the name where
			// the kernel would show the list with the new one in brackets.
			if string(after) != tt.trigger {
				t.Errorf("file holds %q, want %q", after, tt.trigger)
			}
		})
	}
}

// TestCommands calls the commands' Do funcs as the SDK would.
func TestCommands(t *testing.T) {
	leds, err := findLEDs(classDir(MustCopyFixture(t)))
	if err != nil {
		t.Fatal(err)
	}
	p := newPlugin(leds)
	do := map[string]func(context.Context, map[string]any) (any, error){}
	for _, c := range p.Commands {
		do[c.ID] = c.Do
	}
	tests := []struct {
		name, cmd string
		args      map[string]any
		want      any
		wantErr   string
	}{
		{name: "set", cmd: "set_brightness", args: map[string]any{"led": "led0", "value": 42.0}, want: 42},
		{name: "unknown led", cmd: "set_brightness", args: map[string]any{"led": "led9", "value": 1.0},
			wantErr: `no LED "led9"; there are: input0::capslock, led0, mt7621:green:wlan`},
		{name: "missing led", cmd: "set_trigger", args: map[string]any{"trigger": "none"}, wantErr: `no LED ""`},
		{name: "text value", cmd: "set_brightness", args: map[string]any{"led": "led0", "value": "1"},
			wantErr: "value must be a number, not 1"},
		{name: "missing trigger", cmd: "set_trigger", args: map[string]any{"led": "led0"}, wantErr: `led0 has no trigger ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := do[tt.cmd](context.Background(), tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}

	var max *float64
	for _, a := range p.Commands[0].Args {
		if a.Name == "value" {
			max = a.Max
		}
	}
	if max == nil || *max != 255 {
		t.Errorf("set_brightness value max = %v, want the largest max_brightness, 255", max)
	}
}

func mustLEDs(t *testing.T) map[string]led {
	t.Helper()
	leds, err := findLEDs(classDir(MustCopyFixture(t)))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]led{}
	for _, l := range leds {
		m[l.name] = l
	}
	return m
}

func formatInt(v float64) string { return strconv.Itoa(int(v)) }
