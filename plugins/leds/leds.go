package leds

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// led is one directory of the LED class: dir/brightness, dir/max_brightness
// and dir/trigger.
type led struct {
	name string // as in sysfs: "input0::capslock"
	id   string // lower_snake: "input0_capslock"
	dir  string
	max  int
}

// findLEDs lists the LEDs under classDir (normally /sys/class/leds, whose
// entries are symlinks), sorted by name. Entries without a readable
// max_brightness are not LEDs and are skipped.
func findLEDs(classDir string) ([]led, error) {
	entries, err := os.ReadDir(classDir)
	if err != nil {
		return nil, err
	}
	var leds []led
	ids := map[string]bool{}
	for _, e := range entries {
		l := led{name: e.Name(), dir: filepath.Join(classDir, e.Name())}
		if l.max, err = readInt(filepath.Join(l.dir, "max_brightness")); err != nil {
			continue
		}
		l.id = ledID(l.name)
		for n := 2; ids[l.id]; n++ { // "a:b" and "a::b" sanitize alike
			l.id = ledID(l.name) + "_" + strconv.Itoa(n)
		}
		ids[l.id] = true
		leds = append(leds, l)
	}
	if len(leds) == 0 {
		return nil, fmt.Errorf("no LEDs in %s", classDir)
	}
	return leds, nil
}

// ledID makes the lower_snake id of an LED name: lower-case letters and
// digits kept, every other run becomes one '_'; a name that would start
// with a digit or be empty gets "led_" in front. Long names are cut so the
// sensor ids stay within the SDK's 64 bytes.
func ledID(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	id := strings.TrimSuffix(b.String(), "_")
	if id == "" || id[0] >= '0' && id[0] <= '9' {
		id = "led_" + id
	}
	const maxLen = 64 - len("_brightness") - len("_99")
	if len(id) > maxLen {
		id = strings.TrimSuffix(id[:maxLen], "_")
	}
	return strings.TrimSuffix(id, "_")
}

// readInt reads a file holding one decimal integer.
func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return n, nil
}

// readTrigger reads an LED's trigger file: the triggers it accepts and the
// active one, written in brackets ("" when none is).
func readTrigger(dir string) (active string, all []string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "trigger"))
	if err != nil {
		return "", nil, err
	}
	active, all = parseTrigger(string(b))
	return active, all, nil
}

// parseTrigger parses "none timer [heartbeat] default-on".
func parseTrigger(s string) (active string, all []string) {
	for _, f := range strings.Fields(s) {
		if t, ok := strings.CutPrefix(f, "["); ok {
			f, _ = strings.CutSuffix(t, "]")
			active = f
		}
		all = append(all, f)
	}
	return active, all
}

// writeFile writes s to an existing sysfs attribute (never creating one).
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// setBrightness writes v to l's brightness after checking it against l's
// own max_brightness, and returns the brightness read back. The kernel
// turns the LED's trigger off when it is set to 0.
func (l led) setBrightness(v float64) (int, error) {
	if v < 0 || v > float64(l.max) || v != math.Trunc(v) {
		return 0, fmt.Errorf("brightness of %s must be a whole number from 0 to %d, not %v", l.name, l.max, v)
	}
	path := filepath.Join(l.dir, "brightness")
	if err := writeFile(path, strconv.Itoa(int(v))); err != nil {
		return 0, fmt.Errorf("set brightness of %s: %w", l.name, err)
	}
	return readInt(path)
}

// setTrigger makes t the active trigger of l after checking that l lists
// it, and returns t.
func (l led) setTrigger(t string) (string, error) {
	_, all, err := readTrigger(l.dir)
	if err != nil {
		return "", err
	}
	if !slices.Contains(all, t) {
		return "", fmt.Errorf("%s has no trigger %q; it has: %s", l.name, t, strings.Join(all, " "))
	}
	if err := writeFile(filepath.Join(l.dir, "trigger"), t); err != nil {
		return "", fmt.Errorf("set trigger of %s: %w", l.name, err)
	}
	return t, nil
}

// heartbeat is the longest silence of an LED's sensors when livecgid asks
// for readings by exception: every change is sent (deadband 0; a
// brightness is a whole number), an unchanged value once a minute.
const heartbeat = time.Minute

// newPlugin describes the sensors and commands over leds.
func newPlugin(leds []led) sdk.Plugin {
	p := sdk.Plugin{Name: "leds"}
	names := make([]string, len(leds))
	byName := map[string]led{}
	maxMax := 0
	for i, l := range leds {
		names[i], byName[l.name], maxMax = l.name, l, max(maxMax, l.max)
		p.Sensors = append(p.Sensors,
			sdk.Sensor{
				ID: l.id + "_brightness", Title: l.name + " brightness", Interval: time.Second, Heartbeat: heartbeat,
				Read: func(context.Context) (sdk.Reading, error) {
					n, err := readInt(filepath.Join(l.dir, "brightness"))
					return sdk.Gauge(float64(n)), err
				},
			},
			sdk.Sensor{
				ID: l.id + "_trigger", Title: l.name + " trigger", Type: sdk.Text, Interval: 2 * time.Second, Heartbeat: heartbeat,
				Read: func(context.Context) (sdk.Reading, error) {
					active, _, err := readTrigger(l.dir)
					if err == nil && active == "" {
						err = fmt.Errorf("no active trigger in brackets in %s", filepath.Join(l.dir, "trigger"))
					}
					return sdk.String(active), err
				},
			})
	}
	ledArg := sdk.Arg{Name: "led", Title: "LED", Type: sdk.Text, Required: true, Enum: names}
	lookup := func(args map[string]any) (led, error) {
		name, _ := args["led"].(string)
		l, ok := byName[name]
		if !ok {
			return led{}, fmt.Errorf("no LED %q; there are: %s", name, strings.Join(names, ", "))
		}
		return l, nil
	}
	p.Commands = []sdk.Command{
		{
			ID: "set_brightness", Title: "Set brightness",
			// Max is the largest of all LEDs; Do checks the LED's own.
			Args: []sdk.Arg{ledArg, {Name: "value", Title: "Brightness", Type: sdk.Number, Required: true, Min: sdk.Range(0), Max: sdk.Range(float64(maxMax))}},
			Do: func(_ context.Context, args map[string]any) (any, error) {
				l, err := lookup(args)
				if err != nil {
					return nil, err
				}
				v, ok := args["value"].(float64)
				if !ok {
					return nil, fmt.Errorf("value must be a number, not %v", args["value"])
				}
				return l.setBrightness(v)
			},
		},
		{
			ID: "set_trigger", Title: "Set trigger",
			// No enum: the triggers differ per LED and grow as modules
			// load, so Do checks the LED's trigger file at call time.
			Args: []sdk.Arg{ledArg, {Name: "trigger", Title: "Trigger", Type: sdk.Text, Required: true}},
			Do: func(_ context.Context, args map[string]any) (any, error) {
				l, err := lookup(args)
				if err != nil {
					return nil, err
				}
				t, _ := args["trigger"].(string)
				return l.setTrigger(t)
			},
		},
	}
	return p
}
