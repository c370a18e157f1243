package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/brokertest"
	"github.com/livecgi/livecgi/supervisor/internal/alarm"
)

// Alarms end to end: the real exec plugin (built into livecgid) runs a
// program that prints what the test writes in a file, sensor exec.temp,
// and the test drives it across the thresholds.

// sensorRig is exec.temp's program and its files: each run prints the
// value file, or once the spike file (and removes it): a spike is one
// reading.
type sensorRig struct {
	t       *testing.T
	dir     string // the files the program reads; alarm_exec's runs
	execDir string // exec_dir, with temp.conf
}

func newSensorRig(t *testing.T) *sensorRig {
	t.Helper()
	dir := t.TempDir()
	r := &sensorRig{t: t, dir: dir, execDir: filepath.Join(dir, "exec.d")}
	if err := os.Mkdir(r.execDir, 0o700); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "temp.sh")
	if err := os.WriteFile(prog, fmt.Appendf(nil, "#!/bin/sh\nif [ -e %[1]s/spike ]; then cat %[1]s/spike; rm -f %[1]s/spike; exit 0; fi\nexec cat %[1]s/value\n", dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.execDir, "temp.conf"), fmt.Appendf(nil, "run = %s\ninterval = 100ms\ntimeout = 10s\ntype = number\nunit = °C\n", prog), 0o600); err != nil {
		t.Fatal(err)
	}
	r.set(20)
	return r
}

// write replaces file name with v, at once (never half written).
func (r *sensorRig) write(name string, v float64) {
	r.t.Helper()
	tmp := filepath.Join(r.dir, name+".tmp")
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%v\n", v), 0o600); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(r.dir, name)); err != nil {
		r.t.Fatal(err)
	}
}

// set makes exec.temp read v from now on.
func (r *sensorRig) set(v float64) { r.write("value", v) }

// spike makes exec.temp read v once, then the value again.
func (r *sensorRig) spike(v float64) { r.write("spike", v) }

// silence makes exec.temp fail (an error reading, no value) until set.
func (r *sensorRig) silence() {
	if err := os.Remove(filepath.Join(r.dir, "value")); err != nil {
		r.t.Fatal(err)
	}
}

// notifier writes an alarm_exec program that appends its LIVECGI_ALARM_*
// environment to file name of the rig's dir, and returns its path.
func (r *sensorRig) notifier(name string) string {
	r.t.Helper()
	p := filepath.Join(r.dir, name+".sh")
	if err := os.WriteFile(p, fmt.Appendf(nil, "#!/bin/sh\n{ echo ---; env | grep '^LIVECGI_ALARM_' | sort; echo end; } >>%s\n", filepath.Join(r.dir, name)), 0o700); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// runs returns the environments alarm_exec program name ran with, of
// the runs that are done.
func (r *sensorRig) runs(name string) []string {
	b, _ := os.ReadFile(filepath.Join(r.dir, name))
	var out []string
	for _, run := range strings.Split(string(b), "---\n")[1:] {
		if env, ok := strings.CutSuffix(run, "end\n"); ok {
			out = append(out, env)
		}
	}
	return out
}

// withSensor runs the exec plugin over the rig, with the alarms rules
// and exec.temp's heartbeat.
func withSensor(t *testing.T, r *sensorRig, heartbeat time.Duration, rules map[string]string, edit func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		buildBuiltin(t, "exec", c.PluginsDir)
		c.ExecDir = r.execDir
		c.Sensors.Alarms = rules
		c.Sensors.Heartbeat = map[string]time.Duration{"exec.temp": heartbeat}
		if edit != nil {
			edit(c)
		}
	}
}

// alarmWatch reads a client's frames and keeps its alarm frames.
type alarmWatch struct {
	c      *tclient
	alarms []map[string]any // every alarm frame so far
	taken  int              // alarms[:taken] were returned by alarm
}

// next waits for a frame match accepts, keeping the alarm frames on the
// way.
func (w *alarmWatch) next(what string, match func(map[string]any) bool) map[string]any {
	w.c.t.Helper()
	return w.c.next(what, func(m map[string]any) bool {
		if m["type"] == wire.TypeAlarm {
			w.alarms = append(w.alarms, m)
		}
		return match(m)
	})
}

// reading waits for a reading of exec.temp with value v.
func (w *alarmWatch) reading(v float64) map[string]any {
	w.c.t.Helper()
	return w.next(fmt.Sprintf("exec.temp %v", v), func(m map[string]any) bool {
		return m["type"] == wire.TypeReading && m["sensor"] == "exec.temp" && m["value"] == v
	})
}

// alarm returns the next alarm frame, which must be of alarm name in
// state.
func (w *alarmWatch) alarm(name, state string) map[string]any {
	w.c.t.Helper()
	if w.taken == len(w.alarms) {
		w.next("an alarm frame", is(wire.TypeAlarm))
	}
	m := w.alarms[w.taken]
	w.taken++
	if m["name"] != name || m["state"] != state {
		w.c.t.Fatalf("alarm frame %v, want %s %s", m, name, state)
	}
	return m
}

// noAlarm fails if an alarm frame came that alarm did not return.
func (w *alarmWatch) noAlarm(when string) {
	w.c.t.Helper()
	if w.taken < len(w.alarms) {
		w.c.t.Fatalf("%s: alarm frame %v", when, w.alarms[w.taken])
	}
}

// snapshotAlarms returns a snapshot frame's alarms by name.
func snapshotAlarms(m map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	as, _ := m["alarms"].([]any)
	for _, a := range as {
		a := a.(map[string]any)
		out[a["name"].(string)] = a
	}
	return out
}

// logLines returns alarms.log's records in state.
func logLines(t *testing.T, state string) []map[string]any {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(state, alarm.LogFile))
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("alarms.log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// events returns the "event state" of each alarms.log record of alarm
// name.
func events(lines []map[string]any, name string) []string {
	var out []string
	for _, l := range lines {
		if l["name"] == name {
			out = append(out, fmt.Sprint(l["event"], " ", l["state"]))
		}
	}
	return out
}

// TestAlarmTransitions drives exec.temp across the threshold of
//
//	alarm.hot = exec.temp above 70 for 1s clear 65 critical
//
// with a browser (operator) and a viewer connected: both get every alarm
// frame; a one-reading spike does not raise it, a value that holds for
// the second does (dated a second after it began); a value in the band
// between clear and the threshold keeps it; 65 clears it. alarm_exec
// runs on each transition with its LIVECGI_ALARM_* environment,
// alarms.log has a line per transition and per run, alarms.json the
// states. A value crossing the threshold over and over raises and clears
// a second alarm a bounded number of times (flapping).
func TestAlarmTransitions(t *testing.T) {
	r := newSensorRig(t)
	notify := r.notifier("runs")
	ts := startSup(t, withSensor(t, r, time.Hour, map[string]string{
		"hot":  "exec.temp above 70 for 1s clear 65 critical",
		"flap": "exec.temp above 90",
	}, func(c *config.Config) { c.Sensors.AlarmExec = notify }))
	state := ts.config().StateDir
	c := ts.dial(t)
	w := &alarmWatch{c: c}
	viewer, err := ts.tryDial(ts.urlFor(ts.origin(), auth.Identity{Role: auth.RoleViewer}), ts.origin())
	if err != nil {
		t.Fatal(err)
	}
	vw := &alarmWatch{c: viewer}
	snap := w.next("snapshot", is(wire.TypeSnapshot))
	hot := snapshotAlarms(snap)["hot"]
	if len(snapshotAlarms(snap)) != 2 || hot["state"] != wire.AlarmOK || hot["severity"] != wire.AlarmCritical || hot["sensor"] != "exec.temp" || hot["value"] != nil {
		t.Fatalf("first snapshot's alarms: %v", snap["alarms"])
	}
	w.reading(20)

	// A spike of one reading, shorter than the second.
	r.spike(80)
	w.reading(80)
	w.reading(20)
	w.noAlarm("after a spike shorter than for")

	// A value that holds: raised a second after it began.
	r.set(80)
	began := w.reading(80)["t"].(float64)
	raised := w.alarm("hot", wire.AlarmCritical)
	if since := raised["since"].(float64); since < began+1000 || raised["value"] != 80.0 || raised["severity"] != wire.AlarmCritical ||
		raised["message"] != "exec.temp 80 °C above 70 for 1s" {
		t.Errorf("raised %v, want since >= %v", raised, began+1000)
	}
	vw.alarm("hot", wire.AlarmCritical)

	// In the band: raised still. The alarm frame of a transition comes
	// before the reading that caused it.
	r.set(68)
	w.reading(68)
	w.noAlarm("at 68, between clear (65) and the threshold")
	r.set(65)
	cleared := w.alarm("hot", wire.AlarmOK)
	if cleared["value"] != 65.0 || cleared["message"] != "exec.temp 65 °C not above 65" {
		t.Errorf("cleared %v", cleared)
	}
	vw.alarm("hot", wire.AlarmOK)

	// alarm_exec ran on both, in order, with the environment.
	waitFor(t, "two runs of alarm_exec", func() bool { return len(r.runs("runs")) == 2 })
	runs := r.runs("runs")
	for _, want := range []string{"LIVECGI_ALARM_NAME=hot\n", "LIVECGI_ALARM_SENSOR=exec.temp\n", "LIVECGI_ALARM_STATE=critical\n",
		"LIVECGI_ALARM_PREVIOUS=ok\n", "LIVECGI_ALARM_SEVERITY=critical\n", "LIVECGI_ALARM_VALUE=80\n", "LIVECGI_ALARM_MESSAGE=exec.temp 80 °C above 70 for 1s\n",
		"LIVECGI_ALARM_SINCE=" + time.UnixMilli(int64(raised["since"].(float64))).UTC().Format(time.RFC3339) + "\n"} {
		if !strings.Contains(runs[0], want) {
			t.Errorf("first run lacks %q:\n%s", want, runs[0])
		}
	}
	if !strings.Contains(runs[1], "LIVECGI_ALARM_STATE=ok\n") || !strings.Contains(runs[1], "LIVECGI_ALARM_PREVIOUS=critical\n") {
		t.Errorf("second run:\n%s", runs[1])
	}
	// alarms.log: a line per transition and per run.
	waitFor(t, "alarms.log's lines", func() bool { return len(logLines(t, state)) == 4 })
	if got, want := strings.Join(events(logLines(t, state), "hot"), ","), "transition critical,exec critical,transition ok,exec ok"; got != want {
		t.Errorf("alarms.log: %s, want %s", got, want)
	}
	for _, l := range logLines(t, state) {
		if l["event"] == "exec" && l["result"] != "ok" {
			t.Errorf("alarm_exec: %v", l)
		}
	}
	b, err := os.ReadFile(filepath.Join(state, alarm.StateFile))
	if err != nil || !strings.Contains(string(b), `"name":"hot","sensor":"exec.temp","state":"ok"`) {
		t.Errorf("alarms.json: %s, %v", b, err)
	}

	// Flapping: 30 crossings of flap's threshold make at most
	// FlapLimit+1 transitions; it is held raised, and says so.
	for i := range 30 {
		v := 95.0 - float64(i%2)*10
		r.set(v)
		w.reading(v)
	}
	var flaps []map[string]any
	for _, m := range w.alarms {
		if m["name"] == "flap" {
			flaps = append(flaps, m)
		}
	}
	if len(flaps) != alarm.FlapLimit+1 {
		t.Fatalf("%d transitions of a value crossing 30 times, want %d", len(flaps), alarm.FlapLimit+1)
	}
	if last := flaps[len(flaps)-1]; last["state"] != wire.AlarmWarning || !strings.Contains(fmt.Sprint(last["message"]), "flapping") {
		t.Errorf("flap's last alarm frame %v, want it held as warning (flapping)", last)
	}
}

// TestAlarmPollStale: over long polling, the first answer's snapshot
// lists the alarms; a transition comes as an alarm frame; a sensor that
// fails (no good reading) for twice its heartbeat makes its alarm stale,
// and its return re-evaluates it; a new session gets the state in its
// snapshot.
func TestAlarmPollStale(t *testing.T) {
	r := newSensorRig(t)
	ts := startSup(t, withSensor(t, r, time.Second, map[string]string{"hot": "exec.temp above 70"},
		func(c *config.Config) { c.PollInterval = 0 }))
	ctx := context.Background()
	o := ts.origin()
	open := func() (pollAns, map[string]any) {
		t.Helper()
		a := ts.poll(ctx, control.PollRequest{Token: ts.token(o, auth.Identity{}), Origin: o})
		if a.status != 200 || len(a.Frames) < 2 {
			t.Fatalf("open: %+v", a)
		}
		var snap map[string]any
		json.Unmarshal(a.Frames[1], &snap)
		return a, snap
	}
	a, snap := open()
	if hot := snapshotAlarms(snap)["hot"]; hot["state"] != wire.AlarmOK {
		t.Fatalf("first answer's alarms: %v", snap["alarms"])
	}
	seq := a.Seq
	// until polls until an alarm frame of hot in state comes.
	until := func(st string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			a = ts.poll(ctx, control.PollRequest{Session: a.Session, Since: &seq, Origin: o})
			if a.status != 200 {
				t.Fatalf("poll: %+v", a)
			}
			seq = a.Seq
			for _, f := range a.Frames {
				var m map[string]any
				json.Unmarshal(f, &m)
				if m["type"] == wire.TypeAlarm {
					if m["name"] != "hot" || m["state"] != st {
						t.Fatalf("alarm frame %v, want hot %s", m, st)
					}
					return m
				}
			}
		}
		t.Fatalf("no alarm frame of hot %s over long polling within 15s", st)
		return nil
	}
	r.set(80)
	until(wire.AlarmWarning)
	r.silence()
	stale := until(wire.AlarmStale)
	if msg := fmt.Sprint(stale["message"]); !strings.Contains(msg, "exec.temp sent no reading for") || !strings.Contains(msg, "twice its 1s heartbeat") ||
		stale["value"] != 80.0 {
		t.Errorf("stale %v", stale)
	}
	_, snap = open()
	if hot := snapshotAlarms(snap)["hot"]; hot["state"] != wire.AlarmStale {
		t.Errorf("a new session's snapshot: %v", snap["alarms"])
	}
	r.set(60)
	until(wire.AlarmOK)
}

// TestAlarmReload: alarm.* keys changed in the file: the alarm that
// stays keeps its state (no transition), the one removed leaves the
// clients (a full snapshot, "alarms changed") and the broker (its
// retained state and Home Assistant config cleared), the one added
// starts ok; a new alarm_exec runs the next transition. A rule that does
// not parse keeps the last good configuration, and says why.
func TestAlarmReload(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	sub := b.Subscribe(t, []string{"livecgi/rl/#", "homeassistant/#"})
	r := newSensorRig(t)
	first, second := r.notifier("first"), r.notifier("second")
	conf := filepath.Join(t.TempDir(), "livecgi.conf")
	var base string
	write := func(text string) {
		tmp := conf + ".new"
		if err := os.WriteFile(tmp, []byte(base+text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	ts := startSupWith(t, nil, func(c *config.Config) {
		buildBuiltin(t, "exec", c.PluginsDir)
		base = fmt.Sprintf("state_dir = %s\nplugins_dir = %s\nlisten = %s\nexec_dir = %s\nheartbeat.exec.temp = 1h\n"+
			"mqtt_url = %s\ndevice_id = rl\nmqtt_homeassistant = on\n", c.StateDir, c.PluginsDir, c.Listen, r.execDir, b.URL)
		write("alarm.hot = exec.temp above 70 critical\nalarm.cold = exec.temp below 0\nalarm_exec = " + first + "\n")
		loaded, err := config.Load(conf)
		if err != nil {
			t.Fatal(err)
		}
		*c = loaded
	}, func(o *Options) { o.ConfigPath = conf })
	c := ts.dial(t)
	w := &alarmWatch{c: c}
	w.reading(20)
	sub.WaitFor(mqttWait, 0, "cold's state", topicIs("livecgi/rl/$alarm/cold"))
	sub.WaitFor(mqttWait, 0, "cold's discovery", topicIs("homeassistant/binary_sensor/rl/alarm-cold/config"))
	r.set(80)
	hot := w.alarm("hot", wire.AlarmCritical)
	sub.WaitFor(mqttWait, 0, "hot critical on the broker", func(m brokertest.Message) bool {
		return m.Topic == "livecgi/rl/$alarm/hot" && strings.Contains(m.Payload, `"state":"critical"`)
	})
	waitFor(t, "the first program's run", func() bool { return len(r.runs("first")) == 1 })

	from := len(sub.Messages())
	write("alarm.hot = exec.temp above 70 critical\nalarm.new = exec.temp below -10\nalarm_exec = " + second + "\n")
	snap := w.next("a snapshot of the new alarms", is(wire.TypeSnapshot, "reason", "alarms changed"))
	as := snapshotAlarms(snap)
	if len(as) != 2 || as["hot"]["state"] != wire.AlarmCritical || as["hot"]["since"] != hot["since"] || as["new"]["state"] != wire.AlarmOK {
		t.Fatalf("after the reload: %v", snap["alarms"])
	}
	sub.WaitFor(mqttWait, from, "cold cleared", func(m brokertest.Message) bool { return m.Topic == "livecgi/rl/$alarm/cold" && m.Payload == "" })
	sub.WaitFor(mqttWait, from, "cold's discovery cleared", func(m brokertest.Message) bool {
		return m.Topic == "homeassistant/binary_sensor/rl/alarm-cold/config" && m.Payload == ""
	})
	sub.WaitFor(mqttWait, from, "new's state", topicIs("livecgi/rl/$alarm/new"))

	// The next transition runs the new program.
	r.set(20)
	w.alarm("hot", wire.AlarmOK)
	waitFor(t, "the second program's run", func() bool { return len(r.runs("second")) == 1 })
	if n := len(r.runs("first")); n != 1 {
		t.Errorf("the first program ran %d times", n)
	}

	// A bad rule: the last good configuration runs on.
	write("alarm.hot = exec.temp above seventy\n")
	waitFor(t, "the bad rule in Status", func() bool { return ts.Status().ConfigError != "" })
	if st := ts.Status(); !strings.Contains(st.ConfigError, `alarm.hot: threshold: want a number, got "seventy"`) {
		t.Errorf("Status: %+v", st)
	}
	r.set(80)
	w.alarm("hot", wire.AlarmCritical)
}

// TestAlarmNewRefusesBadRule: a rule that does not parse stops New with
// its key.
func TestAlarmNewRefusesBadRule(t *testing.T) {
	cfg := config.Default()
	cfg.Sensors.Alarms = map[string]string{"hot": "exec.temp over 70"}
	_, err := New(Options{Config: cfg, Secret: []byte("0123456789abcdef0123456789abcdef")})
	if err == nil || !strings.HasPrefix(err.Error(), "config: alarm.hot: want `<sensor> above|below <value>") {
		t.Fatalf("New: %v", err)
	}
	if err := CheckAlarms(cfg); err == nil || !strings.HasPrefix(err.Error(), "alarm.hot:") {
		t.Fatalf("CheckAlarms: %v", err)
	}
}

// TestAlarmRestart: the real livecgid, killed (SIGKILL) once an alarm
// is raised, and started again: the first snapshot lists it raised, with
// its since, and no transition follows; readings in its band and above
// keep it. Stopped (SIGTERM) and started again, twice: the same. A reading past
// clear then clears it, as a transition: alarms.log has the raise and
// the clear, nothing else.
func TestAlarmRestart(t *testing.T) {
	r := newSensorRig(t)
	root := t.TempDir()
	bin, plugins, state := filepath.Join(root, "bin"), filepath.Join(root, "plugins"), filepath.Join(root, "state")
	buildDaemon(t, bin)
	if err := os.Mkdir(plugins, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(bin, "livecgid"), filepath.Join(plugins, "exec")); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "livecgi.conf")
	err := os.WriteFile(conf, fmt.Appendf(nil, "listen = 127.0.0.1:0\nstate_dir = %s\nplugins_dir = %s\nexec_dir = %s\nheartbeat.exec.temp = 1h\n"+
		"alarm.hot = exec.temp above 70 for 1s clear 65 critical\n", state, plugins, r.execDir), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	run := func() (*daemon, *alarmWatch, map[string]any) {
		t.Helper()
		d := startDaemon(t, filepath.Join(bin, "livecgid"), conf)
		var c *tclient
		waitFor(t, "livecgid serving", func() bool {
			var err error
			c, err = dialState(t, state)
			return err == nil
		})
		w := &alarmWatch{c: c}
		return d, w, w.next("snapshot", is(wire.TypeSnapshot))
	}
	stop := func(d *daemon, sig syscall.Signal) {
		t.Helper()
		d.cmd.Process.Signal(sig)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			t.Fatal("livecgid did not stop")
		}
	}

	d, w, _ := run()
	w.reading(20)
	r.set(80)
	raised := w.alarm("hot", wire.AlarmCritical)
	waitFor(t, "the raised state saved", func() bool {
		b, _ := os.ReadFile(filepath.Join(state, alarm.StateFile))
		return strings.Contains(string(b), `"state":"critical"`)
	})
	stop(d, syscall.SIGKILL)

	for range 2 {
		d, w, snap := run()
		if hot := snapshotAlarms(snap)["hot"]; hot["state"] != wire.AlarmCritical || hot["since"] != raised["since"] || hot["message"] != raised["message"] {
			t.Fatalf("after a restart: %v, want %v", hot, raised)
		}
		r.set(68) // in the band: raised still
		w.reading(68)
		w.noAlarm("at 68 after a restart")
		r.set(80)
		w.reading(80)
		w.noAlarm("at 80 after a restart")
		if n := len(logLines(t, state)); n != 1 {
			t.Errorf("alarms.log after a restart: %v", logLines(t, state))
		}
		stop(d, syscall.SIGTERM)
	}
	d, w, _ = run()
	r.set(60)
	w.alarm("hot", wire.AlarmOK)
	stop(d, syscall.SIGTERM)
	if got := events(logLines(t, state), "hot"); strings.Join(got, ",") != "transition critical,transition ok" {
		t.Errorf("alarms.log: %v", got)
	}
}

// dialState connects to the livecgid serving state dir, as an operator.
func dialState(t *testing.T, state string) (*tclient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := control.Probe(ctx, state)
	if err != nil {
		return nil, err
	}
	secret, err := os.ReadFile(filepath.Join(state, control.SecretFile))
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", st.Port)
	origin := "http://" + addr
	tok, _ := control.MintToken(secret, origin, st.Epoch, time.Now(), time.Minute, auth.Identity{User: "test", Role: auth.RoleOperator})
	return (&testSup{t: t}).tryDial("ws://"+addr+"/live?token="+tok, origin)
}
