package supervisor

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/alarm"
)

// Alarms (cmd/livecgid/README.md, "Alarms"): the alarm.<name> rules of
// the configuration, evaluated on every reading that passes
// readings.Publish (internal/alarm's Engine) and by a timer at the
// engine's Next (`for` windows, silent sensors). Each transition
//
//   - goes to every client as an alarm frame, and the hub lists every
//     alarm's state in each snapshot (fanout.Hub.SetAlarm, SetAlarms);
//     the broker bridge publishes it on $alarm/<name>;
//   - is a line of alarms.log in the state dir (alarm.LogFile), kept
//     under maxAlarmLog as livecgid's own log is (LogFile);
//   - is queued for alarm_exec (alarm.Runner), whose every run is a line
//     of alarms.log too;
//   - saves the states to alarms.json in the state dir (alarm.StateFile),
//     read back at start: a restart keeps an active alarm active until a
//     reading (or its sensor's silence) re-evaluates it.
//
// A reload that changes the alarm.* keys builds a new engine that keeps
// the state of the alarms that stay (alarm.Engine.Carry); the clients
// get a full snapshot when alarms came or went. A new alarm_exec or
// alarm_exec_timeout applies to the next transition: the runner in place
// runs what it has queued and ends. A rule that does not parse fails New
// and, at a reload, keeps the last good configuration running, with the
// error in the log, Status and livecgid -check.

// Alarm settings.
const (
	maxAlarmLog = 256 << 10 // bytes of alarms.log before it moves to alarms.log.1
	// alarmExecGrace is how long a stopping livecgid lets alarm_exec run
	// the transitions it has (those queued too) before it kills it.
	alarmExecGrace = 5 * time.Second
)

// alarms evaluates the alarm.<name> rules on every reading
// (internal/alarm). Its methods may be called concurrently.
type alarms struct {
	s    *Supervisor
	on   atomic.Bool   // an alarm is configured: observe has work
	wake chan struct{} // capacity 1: the engine changed, or its Next may be sooner
	save chan struct{} // capacity 1: the states changed, save them

	// runCtx is the runners' (cancelled at stop, after alarmExecGrace);
	// runs counts their Run goroutines.
	runCtx   context.Context
	stopRuns context.CancelFunc
	runs     sync.WaitGroup

	mu      sync.Mutex            // guards the fields below (doc.go, "Locking")
	eng     *alarm.Engine         // nil: no alarm configured
	rules   map[string]alarm.Rule // by name
	sensors map[string]bool       // the sensors the rules watch
	armed   time.Time             // when run's timer fires; zero: not armed
	argv    []string              // alarm_exec, split
	timeout time.Duration         // alarm_exec_timeout
	runner  *alarm.Runner         // nil without alarm_exec, or before start and after stop
	log     *alarm.Log            // alarms.log; nil before start, after stop, or when it did not open
	logFile *LogFile
	started bool // start ran: the files are the state dir's
	saveErr string
}

// parseAlarms parses the alarm.<name> keys, by name; an error names the
// key of the first rule that does not parse ("alarm.hot: want ...").
func parseAlarms(s config.Sensors) ([]alarm.Rule, error) {
	var rules []alarm.Rule
	for _, name := range slices.Sorted(maps.Keys(s.Alarms)) {
		r, err := alarm.Parse(name, s.Alarms[name])
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// AlarmSyntax is the form of an alarm rule, alarm.<name> = AlarmSyntax.
const AlarmSyntax = alarm.Syntax

// CheckAlarms reports the first alarm.<name> rule of cfg that livecgid
// would refuse (livecgid -check).
func CheckAlarms(cfg config.Config) error {
	_, err := parseAlarms(cfg.Sensors)
	return err
}

// init sets up the alarms of cfg (New): the rules and the states saved
// by the last run.
func (a *alarms) init(s *Supervisor, cfg config.Config) error {
	rules, err := parseAlarms(cfg.Sensors)
	if err != nil {
		return err
	}
	a.s = s
	a.wake, a.save = make(chan struct{}, 1), make(chan struct{}, 1)
	a.runCtx, a.stopRuns = context.WithCancel(context.Background())
	a.argv, a.timeout = cfg.Sensors.AlarmArgv(), cfg.Sensors.AlarmExecTimeout
	if err := a.setRulesLocked(rules); err != nil {
		return err
	}
	if a.eng != nil {
		path := a.path(alarm.StateFile)
		if err := a.eng.LoadFile(path); err != nil {
			s.log.Warn("alarms: saved states not read: every alarm starts ok", "file", path, "err", err)
		}
	}
	// The states from the start: a poll may come before Run.
	s.hub.SetAlarms(a.statesLocked())
	return nil
}

// setRulesLocked makes an engine for rules (none: nil), keeping the
// state of the alarms the current one has (Carry).
func (a *alarms) setRulesLocked(rules []alarm.Rule) error {
	var eng *alarm.Engine
	if len(rules) > 0 {
		var err error
		if eng, err = alarm.New(rules, nil); err != nil {
			return err
		}
		if a.eng != nil {
			eng.Carry(a.eng)
		}
	}
	a.eng = eng
	a.rules, a.sensors = map[string]alarm.Rule{}, map[string]bool{}
	for _, r := range rules {
		a.rules[r.Name] = r
		a.sensors[r.Sensor] = true
	}
	a.on.Store(eng != nil)
	return nil
}

// start opens alarms.log and starts alarm_exec's runner (Run, before
// the plugins).
func (a *alarms) start() {
	a.mu.Lock()
	a.started = true
	if a.eng != nil {
		a.openLogLocked()
	}
	a.startRunnerLocked()
	a.mu.Unlock()
}

// path is name in the state dir.
func (a *alarms) path(name string) string { return filepath.Join(a.s.config().StateDir, name) }

// openLogLocked opens alarms.log, once.
func (a *alarms) openLogLocked() {
	if a.log != nil || !a.started {
		return
	}
	f, err := OpenLog(a.path(alarm.LogFile), maxAlarmLog)
	if err != nil {
		a.s.log.Error("alarms: transition log not writable: transitions are in this log only", "err", err)
		return
	}
	a.logFile, a.log = f, alarm.NewLog(f)
}

// startRunnerLocked starts a runner for alarm_exec, if set.
func (a *alarms) startRunnerLocked() {
	if len(a.argv) == 0 || !a.started {
		return
	}
	x, err := alarm.NewRunner(alarm.RunnerConfig{Argv: a.argv, Timeout: a.timeout, Done: a.ran})
	if err != nil {
		a.s.log.Error("alarms: alarm_exec not run", "err", err)
		return
	}
	a.runner = x
	a.runs.Go(func() { x.Run(a.runCtx) })
}

// ran takes one run of alarm_exec (the runner's Done).
func (a *alarms) ran(r alarm.Result) {
	a.mu.Lock()
	l := a.log
	a.mu.Unlock()
	if l != nil {
		if err := l.Exec(r); err != nil {
			a.s.log.Warn("alarms: transition log", "err", err)
		}
	}
	tr := r.Transition
	args := []any{"alarm", tr.Name, "state", tr.State.State, "elapsed", r.Elapsed.Round(time.Millisecond)}
	if r.Dropped > 0 {
		a.s.log.Warn("alarm_exec: transitions dropped: the queue was full", "dropped", r.Dropped)
	}
	if r.Err != nil {
		a.s.log.Warn("alarm_exec failed", append(args, "err", r.Err, "output", r.Output)...)
		return
	}
	a.s.log.Debug("alarm_exec ran", args...)
}

// statesLocked is every alarm's state as the wire protocol says it.
func (a *alarms) statesLocked() []wire.Alarm {
	if a.eng == nil {
		return nil
	}
	sts := a.eng.States()
	out := make([]wire.Alarm, len(sts))
	for i, st := range sts {
		out[i] = a.wire(st)
	}
	return out
}

// wire is st as an alarm frame says it.
func (a *alarms) wire(st alarm.State) wire.Alarm {
	return wire.Alarm{
		Name: st.Name, Sensor: st.Sensor, State: st.State, Severity: a.rules[st.Name].Severity,
		Value: st.Value, Since: st.Since.UnixMilli(), Message: st.Message,
	}
}

// observe feeds one reading to the alarms: a number or a bool; an error
// reading (or text) is no sign of life.
func (a *alarms) observe(r wire.Reading) {
	if !a.on.Load() {
		return
	}
	v, ok := alarm.Number(r.Value)
	ok = ok && r.Error == ""
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.eng == nil || !a.sensors[r.Sensor] {
		return
	}
	a.handleLocked(a.eng.Observe(r.Sensor, v, ok))
	a.rearmLocked()
}

// handleLocked sends on each transition: to the clients (and so the
// bridge), to the logs and to alarm_exec; and has the states saved.
func (a *alarms) handleLocked(trs []alarm.Transition) {
	for _, tr := range trs {
		a.s.hub.SetAlarm(a.wire(tr.State))
		level := a.s.log.Warn
		if tr.State.State == alarm.OK {
			level = a.s.log.Info
		}
		level("alarm "+tr.State.State, "alarm", tr.Name, "previous", tr.Previous, "message", tr.Message)
		if a.log != nil {
			if err := a.log.Transition(tr); err != nil {
				a.s.log.Warn("alarms: transition log", "err", err)
			}
		}
		if a.runner != nil {
			a.runner.Submit(tr) // a drop is counted in the next run's result
		}
	}
	if len(trs) > 0 {
		signal(a.save)
	}
}

// rearmLocked wakes run when the engine's Next is sooner than its timer.
func (a *alarms) rearmLocked() {
	if n := a.eng.Next(); !n.IsZero() && (a.armed.IsZero() || n.Before(a.armed)) {
		signal(a.wake)
	}
}

// signal wakes whoever waits on ch (capacity 1), without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// describe tells the engine each watched sensor's unit and heartbeat
// (alarmHeartbeat), from the hub's descriptors: after every change of a
// plugin's descriptors, at start and at a reload.
func (a *alarms) describe() {
	if !a.on.Load() {
		return
	}
	descs := a.s.hub.Hello().Sensors
	cfg := a.s.config()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.eng == nil {
		return
	}
	for _, d := range descs {
		if a.sensors[d.ID] {
			a.eng.SetSensor(d.ID, d.Unit, alarmHeartbeat(d, cfg.Sensors))
		}
	}
	a.rearmLocked()
}

// alarmHeartbeat is the longest silence of sensor d: its heartbeat
// (heartbeat.<id>, else its descriptor's); with none, its interval when
// it sends every reading (deadband 0), else 0 (it may stay silent while
// its value holds: never stale).
func alarmHeartbeat(d wire.Sensor, s config.Sensors) time.Duration {
	hb := time.Duration(d.HeartbeatMS) * time.Millisecond
	if o, ok := s.Heartbeat[d.ID]; ok {
		hb = o
	}
	db := d.Deadband
	if o, ok := s.Deadband[d.ID]; ok {
		db = o
	}
	switch {
	case hb > 0:
		return hb
	case db == 0:
		return time.Duration(d.IntervalMS) * time.Millisecond
	}
	return 0
}

// unknownSensors names the sensors the rules watch that no plugin
// describes, for the log.
func (a *alarms) unknownSensors() []string {
	if !a.on.Load() {
		return nil
	}
	known := map[string]bool{}
	for _, d := range a.s.hub.Hello().Sensors {
		known[d.ID] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for id := range a.sensors {
		if !known[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// run runs the engine's timers until ctx ends, saves the states when
// they changed, and warns once the plugins have described themselves of
// the rules' sensors that none has.
func (a *alarms) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	// Closed once the plugins described themselves (a reload that adds
	// alarms warns by itself).
	var described chan struct{}
	if a.on.Load() {
		described = make(chan struct{})
		go func() { // Described's wait, on its own: the timers do not wait for it
			defer close(described)
			for {
				ok, changed := a.s.plugins.Described()
				if ok {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-changed:
				}
			}
		}()
	}
	for {
		a.mu.Lock()
		var next time.Time
		if a.eng != nil {
			next = a.eng.Next()
		}
		a.armed = next
		a.mu.Unlock()
		if !next.IsZero() {
			t.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-a.save:
			a.saveStates()
		case <-described:
			described = nil
			a.warnUnknown()
		case <-t.C:
			a.mu.Lock()
			if a.eng != nil {
				a.handleLocked(a.eng.Tick())
			}
			a.mu.Unlock()
		}
		t.Stop()
	}
}

// warnUnknown logs the rules' sensors that no plugin describes.
func (a *alarms) warnUnknown() {
	if ids := a.unknownSensors(); len(ids) > 0 {
		a.s.log.Warn("alarms: no plugin has these sensors: their alarms stay ok until one does (a typo in alarm.<name>?)", "sensors", strings.Join(ids, ","))
	}
}

// saveStates writes alarms.json, if an alarm is configured.
func (a *alarms) saveStates() {
	a.mu.Lock()
	eng := a.eng
	a.mu.Unlock()
	if eng == nil {
		return
	}
	err := eng.SaveFile(a.path(alarm.StateFile))
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if msg != a.saveErr {
		if err != nil {
			a.s.log.Error("alarms: states not saved: a restart would start every alarm ok", "err", err)
		} else {
			a.s.log.Info("alarms: states saved again")
		}
		a.saveErr = msg
	}
}

// reconfigure applies the alarm keys of cfg, in force now (reload;
// parseAlarms took them already): new rules, keeping the state of the
// alarms that stay; a new alarm_exec for the next transition; new
// heartbeats.
func (a *alarms) reconfigure(cfg *config.Config) {
	rules, err := parseAlarms(cfg.Sensors)
	if err != nil {
		return // reload refused the file
	}
	a.mu.Lock()
	want := map[string]alarm.Rule{}
	for _, r := range rules {
		want[r.Name] = r
	}
	if !maps.Equal(want, a.rules) {
		before := a.rules
		if err := a.setRulesLocked(rules); err != nil {
			a.s.log.Error("alarms: not reloaded", "err", err)
		} else {
			a.s.log.Info("alarms: rules reloaded", "alarms", len(rules), "added", nameDiff(want, before), "removed", nameDiff(before, want),
				"changed", changedRules(before, want))
			if a.eng != nil {
				a.openLogLocked()
			}
			a.s.hub.SetAlarms(a.statesLocked())
			signal(a.save)
		}
	}
	if argv := cfg.Sensors.AlarmArgv(); !slices.Equal(argv, a.argv) || cfg.Sensors.AlarmExecTimeout != a.timeout {
		if a.runner != nil {
			a.runner.Close() // it runs what it has queued, then ends
			a.runner = nil
		}
		a.argv, a.timeout = argv, cfg.Sensors.AlarmExecTimeout
		a.startRunnerLocked()
	}
	a.mu.Unlock()
	signal(a.wake)
	a.describe()
	if ok, _ := a.s.plugins.Described(); ok {
		a.warnUnknown()
	}
}

// nameDiff lists the names of a that b lacks.
func nameDiff(a, b map[string]alarm.Rule) string {
	var out []string
	for n := range a {
		if _, ok := b[n]; !ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// changedRules lists the names in both whose rules differ.
func changedRules(a, b map[string]alarm.Rule) string {
	var out []string
	for n, r := range a {
		if o, ok := b[n]; ok && o != r {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// stop ends alarm_exec (what it has queued may run for alarmExecGrace,
// then it is killed), saves the states and closes alarms.log (Run's
// shutdown, after the plugins stopped).
func (a *alarms) stop() {
	a.mu.Lock()
	if a.runner != nil {
		a.runner.Close()
		a.runner = nil
	}
	a.mu.Unlock()
	done := make(chan struct{})
	go func() {
		a.runs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(alarmExecGrace):
		a.s.log.Warn(fmt.Sprintf("alarm_exec still running %v after the stop: killed", alarmExecGrace))
		a.stopRuns()
		<-done
	}
	a.stopRuns()
	a.saveStates()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log = nil
	if a.logFile != nil {
		if err := a.logFile.Close(); err != nil {
			a.s.log.Warn("alarms: transition log", "err", err)
		}
		a.logFile = nil
	}
}
