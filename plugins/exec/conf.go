package exec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/rbe"
)

// Defaults and limits of a conf.
const (
	defaultInterval   = 2 * time.Second
	minTimeout        = 50 * time.Millisecond
	commandTimeout    = 5 * time.Second
	streamStaleAfter  = 24 * time.Hour // the interval a stream sensor declares without one
	defaultHeartbeat  = time.Minute    // an unchanged value is sent again after this long (deadband 0: every change)
	maxLine           = 4 << 10        // longer stdout lines are dropped
	maxSensorsPerConf = 64
)

// spec is one NAME.conf: one program and what it provides, either
// sensors (periodic or streaming) or one command.
type spec struct {
	name     string   // NAME of NAME.conf: the sensor id, or its prefix
	argv     []string // argv[0] is the program's path
	stream   bool     // mode = stream
	interval time.Duration
	timeout  time.Duration // a periodic run or a command
	sensors  []sensorSpec  // none for a command
	command  *commandSpec
}

// sensorSpec is one sensor of a conf. key is its name in `sensors` and
// in the program's "SENSOR VALUE" lines ("" for the conf's only sensor).
type sensorSpec struct {
	key, id, title, unit string
	typ                  proto.ValueType
	typSet               bool // type given: never inferred from the output
	min, max             *float64
	deadband             float64       // report by exception: numbers sent when they move by more
	heartbeat            time.Duration // and every value again after this long (0: never)
}

// commandSpec is a conf's command and its argument schema.
type commandSpec struct {
	id, title string
	args      []sdk.Arg
}

// confLine is one "key = value" line.
type confLine struct {
	n    int
	k, v string
}

// parseConf reads the conf called name (NAME.conf in dir). Errors name
// the file, the line and the key.
func parseConf(dir, name string, b []byte) (*spec, error) {
	file := name + ".conf"
	var lines []confLine
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want key = value, got %q", file, n, trunc(line))
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if seen[k] != 0 {
			return nil, fmt.Errorf("%s:%d: %s set twice (first on line %d)", file, n, k, seen[k])
		}
		seen[k] = n
		lines = append(lines, confLine{n, k, v})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	s := &spec{name: name}
	bad := func(l confLine, format string, a ...any) error {
		return fmt.Errorf("%s:%d: %s: %s", file, l.n, l.k, fmt.Sprintf(format, a...))
	}
	// Per-sensor keys (unit.temp) wait until `sensors` is known.
	per := map[string]map[string]confLine{} // key → sensor → line
	defaults := map[string]confLine{}
	var modeLine, intervalLine, sensorsLine confLine
	for _, l := range lines {
		base, sub, qualified := strings.Cut(l.k, ".")
		switch {
		case l.k == "run":
			argv, err := splitArgs(l.v)
			if err != nil {
				return nil, bad(l, "%v", err)
			}
			if len(argv) == 0 {
				return nil, bad(l, "empty: want a program and its arguments")
			}
			argv[0] = resolve(dir, argv[0])
			s.argv = argv
		case l.k == "mode":
			modeLine = l
			switch l.v {
			case "stream":
				s.stream = true
			case "periodic":
			default:
				return nil, bad(l, "want periodic or stream, got %q", l.v)
			}
		case l.k == "interval" || l.k == "timeout":
			d, err := time.ParseDuration(l.v)
			if err != nil || d < sdk.MinInterval {
				return nil, bad(l, "want a duration of at least %v with a unit, e.g. 2s, got %q", sdk.MinInterval, l.v)
			}
			if l.k == "interval" {
				s.interval, intervalLine = d, l
			} else {
				s.timeout = d
			}
		case l.k == "sensors":
			sensorsLine = l
			for _, key := range strings.Fields(l.v) {
				if !validKey(key) || slices.ContainsFunc(s.sensors, func(x sensorSpec) bool { return x.key == key }) {
					return nil, bad(l, "%q: want unique lower_snake names", key)
				}
				if len(name)+1+len(key) > 64 {
					return nil, bad(l, "%q: sensor id %s_%s longer than 64 bytes", key, name, key)
				}
				s.sensors = append(s.sensors, sensorSpec{key: key, id: name + "_" + key})
			}
			if len(s.sensors) == 0 || len(s.sensors) > maxSensorsPerConf {
				return nil, bad(l, "want 1 to %d names", maxSensorsPerConf)
			}
		case l.k == "command":
			if !validKey(l.v) {
				return nil, bad(l, "%q: want a lower_snake id", l.v)
			}
			if s.command == nil {
				s.command = &commandSpec{}
			}
			s.command.id = l.v
		case base == "arg" && qualified:
			if !validKey(sub) {
				return nil, bad(l, "argument name %q: want lower_snake", sub)
			}
			a, err := parseArg(sub, l.v)
			if err != nil {
				return nil, bad(l, "%v", err)
			}
			if s.command == nil {
				s.command = &commandSpec{}
			}
			s.command.args = append(s.command.args, a)
		case base == "title" || base == "unit" || base == "type" || base == "min" || base == "max" || base == "deadband" || base == "heartbeat":
			if !qualified {
				defaults[base] = l
				continue
			}
			if per[base] == nil {
				per[base] = map[string]confLine{}
			}
			per[base][sub] = l
		default:
			return nil, fmt.Errorf("%s:%d: unknown key %s", file, l.n, l.k)
		}
	}
	if s.argv == nil {
		return nil, fmt.Errorf("%s: no run = line: want the program to run", file)
	}
	if s.command != nil {
		for _, l := range []confLine{modeLine, intervalLine, sensorsLine} {
			if l.n != 0 {
				return nil, bad(l, "a command conf runs its program per command: no %s", l.k)
			}
		}
		for _, k := range []string{"unit", "type", "min", "max", "deadband", "heartbeat"} {
			if l, ok := defaults[k]; ok {
				return nil, bad(l, "a command has no %s", k)
			}
		}
		for _, m := range per {
			for _, l := range m {
				return nil, bad(l, "a command has no sensors")
			}
		}
		if s.command.id == "" {
			return nil, fmt.Errorf("%s: arg lines without a command = line", file)
		}
		s.command.title = defaults["title"].v
		if s.timeout == 0 {
			s.timeout = commandTimeout
		}
		return s, nil
	}
	if s.sensors == nil {
		s.sensors = []sensorSpec{{id: name}}
	}
	if s.interval == 0 {
		s.interval = defaultInterval
		if s.stream {
			s.interval = streamStaleAfter
		}
	}
	if s.stream && s.timeout != 0 {
		return nil, fmt.Errorf("%s:%d: timeout: a stream runs until it exits: no timeout", file, seen["timeout"])
	}
	if s.timeout == 0 {
		s.timeout = max(s.interval, minTimeout)
	}
	for _, m := range per {
		for key, l := range m {
			if !slices.ContainsFunc(s.sensors, func(x sensorSpec) bool { return x.key == key && key != "" }) {
				return nil, bad(l, "no sensor %q in sensors =", key)
			}
		}
	}
	for i := range s.sensors {
		x := &s.sensors[i]
		get := func(k string) (confLine, bool) {
			if l, ok := per[k][x.key]; ok {
				return l, true
			}
			l, ok := defaults[k]
			return l, ok
		}
		if l, ok := get("title"); ok {
			x.title = l.v
		} else if x.key != "" {
			x.title = name + " " + x.key
		}
		if l, ok := get("unit"); ok {
			x.unit = l.v
		}
		x.typ = sdk.Number
		if l, ok := get("type"); ok {
			switch l.v {
			case "number":
			case "text":
				x.typ = sdk.Text
			case "bool":
				x.typ = sdk.Bool
			default:
				return nil, bad(l, "want number, text or bool, got %q", l.v)
			}
			x.typSet = true
		}
		for _, k := range []string{"min", "max"} {
			l, ok := get(k)
			if !ok {
				continue
			}
			f, err := strconv.ParseFloat(l.v, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, bad(l, "want a number, got %q", l.v)
			}
			if k == "min" {
				x.min = &f
			} else {
				x.max = &f
			}
			if x.typSet && x.typ != sdk.Number {
				return nil, bad(l, "only a number sensor has a %s", k)
			}
			x.typ, x.typSet = sdk.Number, true
		}
		if x.min != nil && x.max != nil && *x.min > *x.max {
			return nil, fmt.Errorf("%s: min above max", file)
		}
		x.heartbeat = defaultHeartbeat
		if l, ok := get("deadband"); ok {
			f, err := strconv.ParseFloat(l.v, 64)
			if r := (rbe.Filter{Deadband: f}); err != nil || r.Check() != nil {
				return nil, bad(l, "want a number, 0 or more, got %q", l.v)
			}
			x.deadband = f
		}
		if l, ok := get("heartbeat"); ok {
			d, err := time.ParseDuration(l.v)
			if r := (rbe.Filter{Heartbeat: d}); err != nil || r.Check() != nil {
				return nil, bad(l, "want 0 (never) or a duration with a unit, e.g. 60s, got %q", l.v)
			}
			x.heartbeat = d
		}
	}
	return s, nil
}

// parseArg reads an argument schema: "TYPE [required] [min=N] [max=N]
// [enum=a,b,c] [title=Words_with_underscores]".
func parseArg(name, v string) (sdk.Arg, error) {
	a := sdk.Arg{Name: name}
	f := strings.Fields(v)
	if len(f) == 0 {
		return a, errors.New("want a type: number, text or bool")
	}
	switch f[0] {
	case "number":
		a.Type = sdk.Number
	case "text":
		a.Type = sdk.Text
	case "bool":
		a.Type = sdk.Bool
	default:
		return a, fmt.Errorf("want a type (number, text or bool) first, got %q", f[0])
	}
	for _, w := range f[1:] {
		k, val, _ := strings.Cut(w, "=")
		switch k {
		case "required":
			a.Required = true
		case "min", "max":
			x, err := strconv.ParseFloat(val, 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || a.Type != sdk.Number {
				return a, fmt.Errorf("%s: want a number for a number argument, got %q", k, val)
			}
			if k == "min" {
				a.Min = &x
			} else {
				a.Max = &x
			}
		case "enum":
			if a.Type != sdk.Text || val == "" {
				return a, fmt.Errorf("enum: want comma-separated values of a text argument, got %q", val)
			}
			a.Enum = strings.Split(val, ",")
		case "title":
			a.Title = strings.ReplaceAll(val, "_", " ")
		default:
			return a, fmt.Errorf("unknown word %q: want required, min=, max=, enum= or title=", w)
		}
	}
	if a.Min != nil && a.Max != nil && *a.Min > *a.Max {
		return a, errors.New("min above max")
	}
	return a, nil
}

// splitArgs splits a run = line into words: blanks separate; '…' keeps
// everything literally; "…" keeps all but \" and \\, which it unescapes;
// a backslash outside quotes keeps the next character. No shell: no
// variables, globs, pipes or redirections.
func splitArgs(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	in := false // inside a word
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words, in = append(words, w.String()), false
				w.Reset()
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i, in = i+1+j, true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated \" quote")
			}
			in = true
		case c == '\\':
			if i+1 < len(s) {
				i++
				w.WriteByte(s[i])
			}
			in = true
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words, nil
}

// programPath is where programs named without a slash are looked for.
const programPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// resolve makes a program name a path: relative to the exec dir when it
// has a slash, looked up in programPath when it has none.
func resolve(dir, prog string) string {
	if filepath.IsAbs(prog) {
		return prog
	}
	if strings.Contains(prog, "/") {
		return filepath.Join(dir, prog)
	}
	for _, d := range filepath.SplitList(programPath) {
		p := filepath.Join(d, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return filepath.Join("/usr/bin", prog) // missing: the run says so
}

// validKey reports whether k is lower_snake (sensor names, commands,
// arguments).
func validKey(k string) bool {
	if k == "" || len(k) > 48 {
		return false
	}
	for i, r := range k {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// trunc shortens a line quoted in an error.
func trunc(s string) string {
	const n = 120
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
