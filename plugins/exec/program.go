package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk"
	"github.com/livecgi/livecgi/proto"
)

// Limits of what a program's output can do.
var (
	minGap        = sdk.MinInterval // between two readings of one sensor (at most 100/s, as the fastest Go sensor); newest wins
	restartMin    = 250 * time.Millisecond
	restartMax    = 30 * time.Second
	restartReset  = 30 * time.Second // a stream up this long restarts at restartMin again
	logEveryError = time.Second      // a program's errors are logged at most this often
)

// program is one conf's program and the state of its sensors. Its
// goroutine (periodic runs or the stream) starts with start and ends
// with stop; Do runs a command's program per call.
type program struct {
	spec   *spec
	x      *runner
	log    *slog.Logger
	broken error  // the conf or program is unusable: every sensor and the command say so
	retype func() // a sensor's type was learnt from its output: describe again

	slots map[string]*slot // by sensor key

	cancel context.CancelFunc
	done   chan struct{}

	logMu   sync.Mutex
	lastLog string
	loggedT time.Time
}

// slot is the current state of one sensor: its last good value and its
// error, if any. Watchers wait on wake, which is closed and replaced on
// every change; ver counts changes.
type slot struct {
	mu    sync.Mutex
	spec  sensorSpec // typ may be learnt from the output
	val   sdk.Reading
	has   bool
	err   string
	ver   uint64
	wake  chan struct{}
	fixed bool // typ is known (set in the conf, or learnt)
}

func newProgram(s *spec, x *runner, log *slog.Logger, broken error, retype func()) *program {
	p := &program{spec: s, x: x, log: log, broken: broken, retype: retype, slots: map[string]*slot{}, done: make(chan struct{})}
	for _, ss := range s.sensors {
		sl := &slot{spec: ss, wake: make(chan struct{}), fixed: ss.typSet}
		p.slots[ss.key] = sl
		if broken != nil {
			sl.fail(broken.Error())
		}
	}
	return p
}

// start runs the program's sensors until stop.
func (p *program) start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	if p.broken != nil || p.spec.command != nil {
		close(p.done)
		return
	}
	go func() {
		defer close(p.done)
		if p.spec.stream {
			p.streamLoop(ctx)
		} else {
			p.periodicLoop(ctx)
		}
	}()
}

// stop kills the running program, if any, and waits for it.
func (p *program) stop() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
}

// sensors returns the SDK sensors of the program. A periodic sensor
// declares the longer of its interval and timeout: a run may take that
// long, and livecgid judges a plugin silent for 3 intervals hung.
func (p *program) sensors() []sdk.Sensor {
	every := p.spec.interval
	if !p.spec.stream {
		every = max(every, p.spec.timeout)
	}
	var out []sdk.Sensor
	for _, ss := range p.spec.sensors {
		sl := p.slots[ss.key]
		sl.mu.Lock()
		typ := sl.spec.typ
		sl.mu.Unlock()
		out = append(out, sdk.Sensor{
			ID: ss.id, Title: ss.title, Unit: ss.unit, Type: typ, Interval: every, Deadband: ss.deadband, Heartbeat: ss.heartbeat,
			Watch: func(ctx context.Context, send func(sdk.Reading, error)) { sl.watch(ctx, typ, send) },
		})
	}
	return out
}

// command returns the SDK command of the program.
func (p *program) command() sdk.Command {
	c := p.spec.command
	return sdk.Command{ID: c.id, Title: c.title, Args: c.args, Do: p.do}
}

func (sl *slot) change() {
	sl.ver++
	close(sl.wake)
	sl.wake = make(chan struct{})
}

// fail records an error; the last good value stays.
func (sl *slot) fail(msg string) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.err = msg
	sl.change()
}

// watch sends the slot's readings as they change, at most one per minGap
// (the newest wins), while they are of type typ (the one described).
func (sl *slot) watch(ctx context.Context, typ proto.ValueType, send func(sdk.Reading, error)) {
	var seen uint64
	var last time.Time
	for {
		sl.mu.Lock()
		ver, wake, val, has, msg, cur := sl.ver, sl.wake, sl.val, sl.has, sl.err, sl.spec.typ
		sl.mu.Unlock()
		if ver != seen {
			if wait := minGap - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
					continue // take the newest
				}
			}
			seen, last = ver, time.Now()
			switch {
			case cur != typ:
				// Learnt another type: the plugin is being described
				// again, and this watcher restarted.
			case msg != "" && has:
				send(sdk.Last(val), errors.New(msg))
			case msg != "":
				send(sdk.Reading{}, errors.New(msg))
			default:
				send(val, nil)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
	}
}

// value records a line of output for the sensor: a value, or an error
// quoting the line. It returns the error.
func (p *program) value(sl *slot, line string) error {
	line = strings.TrimSpace(line)
	sl.mu.Lock()
	typ, fixed := sl.spec.typ, sl.fixed
	if !fixed {
		typ = infer(line)
	}
	v, err := parseValue(line, typ, sl.spec)
	learnt := false
	if err == nil {
		sl.val, sl.has, sl.err = v, true, ""
		if !fixed {
			sl.fixed = true
			learnt = typ != sl.spec.typ
			sl.spec.typ = typ
		}
	} else {
		sl.err = err.Error()
	}
	sl.change()
	sl.mu.Unlock()
	if learnt && p.retype != nil {
		p.retype()
	}
	return err
}

// infer guesses a value's type: a number, true or false, else text.
func infer(s string) proto.ValueType {
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return sdk.Number
	}
	if s == "true" || s == "false" {
		return sdk.Bool
	}
	return sdk.Text
}

// parseValue reads one value of type typ, within the sensor's min and max.
func parseValue(s string, typ proto.ValueType, ss sensorSpec) (sdk.Reading, error) {
	switch typ {
	case sdk.Text:
		return sdk.String(s), nil
	case sdk.Bool:
		switch s {
		case "true":
			return sdk.Flag(true), nil
		case "false":
			return sdk.Flag(false), nil
		}
		return sdk.Reading{}, fmt.Errorf("want true or false, got %q", trunc(s))
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return sdk.Reading{}, fmt.Errorf("want a number, got %q", trunc(s))
	}
	if ss.min != nil && f < *ss.min {
		return sdk.Reading{}, fmt.Errorf("%v is below min %v", f, *ss.min)
	}
	if ss.max != nil && f > *ss.max {
		return sdk.Reading{}, fmt.Errorf("%v is above max %v", f, *ss.max)
	}
	return sdk.Gauge(f), nil
}

// line handles one line of output: a bare value for a program with one
// sensor, "SENSOR VALUE" for one that declares several.
func (p *program) line(line string, long bool) {
	if long {
		p.failAll(fmt.Sprintf("line longer than %d bytes dropped", maxLine))
		return
	}
	if len(p.spec.sensors) == 1 && p.spec.sensors[0].key == "" {
		if err := p.value(p.slots[""], line); err != nil {
			p.logError("bad output", err)
		}
		return
	}
	key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
	sl := p.slots[key]
	if sl == nil {
		p.logError("bad output", fmt.Errorf("want \"SENSOR VALUE\" with SENSOR one of sensors =, got %q", trunc(line)))
		return
	}
	if err := p.value(sl, val); err != nil {
		p.logError("bad output", fmt.Errorf("%s: %w", key, err))
	}
}

// failAll records msg as every sensor's error and logs it.
func (p *program) failAll(msg string) {
	for _, sl := range p.slots {
		sl.fail(msg)
	}
	p.logError("program failed", errors.New(msg))
}

// logError logs a program's error when it differs from the last one,
// at most once per logEveryError: a flood of garbage must not flood the
// log.
func (p *program) logError(what string, err error) {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	msg := err.Error()
	if msg == p.lastLog || time.Since(p.loggedT) < logEveryError {
		return
	}
	p.lastLog, p.loggedT = msg, time.Now()
	p.log.Warn(what, "err", msg)
}

// periodicLoop runs the program at once and then every interval; runs
// never overlap (a late run skips the ticks it missed).
func (p *program) periodicLoop(ctx context.Context) {
	t := time.NewTicker(p.spec.interval)
	defer t.Stop()
	for {
		p.runOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runOnce is one periodic run: the first line of stdout is the value
// (every line, "SENSOR VALUE", when the conf has several sensors).
func (p *program) runOnce(ctx context.Context) {
	single := len(p.spec.sensors) == 1 && p.spec.sensors[0].key == ""
	got := false
	err := p.x.run(ctx, p.spec.argv, nil, nil, p.spec.timeout, func(line string, long bool) {
		if single && got {
			return
		}
		got = true
		p.line(line, long)
	})
	switch {
	case ctx.Err() != nil:
	case err != nil:
		p.failAll(err.Error())
	case !got:
		p.failAll("program printed nothing")
	}
}

// streamLoop keeps the program running, restarting it with backoff when
// it exits; each line it prints is a reading.
func (p *program) streamLoop(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		started := time.Now()
		err := p.runStream(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > restartReset {
			backoff = 0
		}
		if backoff == 0 {
			backoff = restartMin
		} else {
			backoff = min(2*backoff, restartMax)
		}
		why := "exited"
		if err != nil {
			why = err.Error()
		}
		p.failAll(fmt.Sprintf("program %s; restart in %v", why, backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// runStream runs the stream program once. With an interval set in the
// conf, a program silent for longer gets an error (its process is left
// alone).
func (p *program) runStream(ctx context.Context) error {
	var mu sync.Mutex
	lastLine := time.Now()
	silent := make(chan struct{})
	if p.spec.interval != streamStaleAfter {
		go func() {
			t := time.NewTicker(p.spec.interval / 2)
			defer t.Stop()
			for {
				select {
				case <-silent:
					return
				case <-t.C:
					mu.Lock()
					quiet := time.Since(lastLine)
					mu.Unlock()
					if quiet > p.spec.interval {
						p.failAll(fmt.Sprintf("no line for %v", quiet.Round(time.Second)))
					}
				}
			}
		}()
	}
	defer close(silent)
	return p.x.run(ctx, p.spec.argv, nil, nil, 0, func(line string, long bool) {
		mu.Lock()
		lastLine = time.Now()
		mu.Unlock()
		p.line(line, long)
	})
}

// do runs the command's program with the validated arguments as
// LIVECGI_ARG_<NAME> variables and as a JSON object on stdin. The first
// line of stdout is the result: JSON if it parses as JSON, else text.
func (p *program) do(ctx context.Context, args map[string]any) (any, error) {
	if p.broken != nil {
		return nil, p.broken
	}
	var env []string
	for _, a := range p.spec.command.args {
		v, ok := args[a.Name]
		if !ok {
			continue
		}
		var s string
		switch v := v.(type) {
		case float64:
			s = strconv.FormatFloat(v, 'f', -1, 64)
		case bool:
			s = strconv.FormatBool(v)
		case string:
			if strings.IndexByte(v, 0) >= 0 {
				return nil, fmt.Errorf("argument %s holds a NUL byte", a.Name)
			}
			s = v
		default:
			return nil, fmt.Errorf("argument %s: unexpected %T", a.Name, v)
		}
		env = append(env, "LIVECGI_ARG_"+strings.ToUpper(a.Name)+"="+s)
	}
	env = append(env, "LIVECGI_COMMAND="+p.spec.command.id)
	stdin, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	var first string
	got := false
	err = p.x.run(ctx, p.spec.argv, env, stdin, p.spec.timeout, func(line string, long bool) {
		if !got {
			first, got = line, !long
		}
	})
	if err != nil {
		p.logError("command failed", err)
		return nil, err
	}
	first = strings.TrimSpace(first)
	if !got || first == "" {
		return nil, nil
	}
	if json.Valid([]byte(first)) {
		return json.RawMessage(first), nil
	}
	return first, nil
}
