package exec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
	"github.com/livecgi/livecgi/proto/wire"
)

// TestEndToEnd runs the plugin as a real go-plugin process: Describe,
// Stream, Do, and a conf added while streaming (a Reading with Changed,
// then the new sensor in Describe).
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "temp.conf"), "run = /bin/echo 21.5\ninterval = 100ms\nunit = °C\ndeadband = 0.5\n")
	writeFile(t, filepath.Join(dir, "hello.conf"), "command = hello\nrun = /bin/sh -c 'echo \"\\\"hi $LIVECGI_ARG_NAME\\\"\"'\narg.name = text required\n")
	c, _ := sdktest.Start(t, sdktest.BuildBuiltin(t, "exec", "-X main.version=v1.2.3"), proto.EnvExecDir+"="+dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := c.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "exec" || d.Version != "v1.2.3" || !d.Dynamic || len(d.Sensors) != 1 || d.Sensors[0].Id != "temp" ||
		d.Sensors[0].Unit != "°C" || d.Sensors[0].IntervalMs != 100 || len(d.Commands) != 1 || d.Commands[0].Id != "hello" ||
		d.Sensors[0].Deadband != 0.5 || d.Sensors[0].HeartbeatMs != 60000 {
		t.Fatalf("Describe = %v", d)
	}
	// By exception, the program's unchanged value is sent once a
	// heartbeat, here overridden to 500 ms (it runs every 100 ms).
	rbe, err := c.Stream(ctx, &proto.StreamRequest{Demand: []*proto.SensorDemand{{Id: "temp", HeartbeatMs: new(int64(500))}}})
	if err != nil {
		t.Fatal(err)
	}
	var prev int64
	for i := range 3 {
		r, err := rbe.Recv()
		if err != nil || r.Sensor != "temp" || r.GetNumber() != 21.5 {
			t.Fatalf("by exception: %v, %v; want temp 21.5", r, err)
		}
		if gap := r.TMs - prev; i > 0 && gap < 499 {
			t.Fatalf("by exception: readings %d ms apart, want the 500 ms heartbeat", gap)
		}
		prev = r.TMs
	}
	resp, err := c.Do(ctx, &proto.CommandRequest{Command: "hello", ArgsJson: []byte(`{"name":"bob"}`)})
	if err != nil || string(resp.ValueJson) != `"hi bob"` || resp.Error != "" {
		t.Errorf("Do = %v, %v", resp, err)
	}
	st, err := c.Stream(ctx, &proto.StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recv := func(what string, match func(*proto.Reading) bool) {
		t.Helper()
		for {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			if match(r) {
				return
			}
		}
	}
	recv("21.5", func(r *proto.Reading) bool { return r.Sensor == "temp" && r.GetNumber() == 21.5 })
	writeFile(t, filepath.Join(dir, "door.conf"), "run = /bin/echo open\ntype = text\n")
	recv("changed", func(r *proto.Reading) bool { return r.Changed })
	if d, err = c.Describe(ctx, &proto.DescribeRequest{}); err != nil || len(d.Sensors) != 2 || d.Sensors[0].Id != "door" {
		t.Fatalf("Describe after the change = %v, %v", d, err)
	}
	recv("open", func(r *proto.Reading) bool { return r.Sensor == "door" && r.GetText() == "open" })
}

// daemon is livecgid run from its binary for one test, over a plugins
// directory holding only the exec plugin (a link to livecgid).
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *testkit.Buffer
	state  string
	port   int
	secret []byte
	epoch  string
}

// startDaemon runs livecgid with execDir as its exec_dir.
func startDaemon(t *testing.T, execDir string) *daemon {
	t.Helper()
	root := t.TempDir()
	plugins, state := filepath.Join(root, "plugins"), filepath.Join(root, "state")
	if err := os.Mkdir(plugins, 0o700); err != nil {
		t.Fatal(err)
	}
	livecgid := sdktest.Build(t, "../../cmd/livecgid", "")
	if err := os.Symlink(livecgid, filepath.Join(plugins, "exec")); err != nil { // built in, as make install lays it out
		t.Fatal(err)
	}
	conf := filepath.Join(root, "livecgi.conf")
	os.WriteFile(conf, []byte("listen = 127.0.0.1:0\nstate_dir = "+state+"\nplugins_dir = "+plugins+"\nexec_dir = "+execDir+"\n"), 0o600)
	d := &daemon{t: t, logs: &testkit.Buffer{}}
	d.cmd = exec.Command(livecgid, "-config", conf, "-log", "-", "-log-level", "debug")
	d.cmd.Stderr = d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		d.cmd.Wait()
		if t.Failed() {
			t.Logf("livecgid log:\n%s", d.logs)
		}
	})
	var status control.Status
	waitFor(t, "livecgid to answer", func() bool {
		var err error
		status, err = control.Probe(context.Background(), state)
		return err == nil && status.Port != 0
	})
	secret, err := control.Secret(state)
	if err != nil {
		t.Fatal(err)
	}
	d.state, d.port, d.secret, d.epoch = state, status.Port, secret, status.Epoch
	return d
}

// alone waits until no browser is connected to d.
func (d *daemon) alone() {
	d.t.Helper()
	waitFor(d.t, "no browser connected", func() bool {
		st, err := control.Probe(context.Background(), d.state)
		return err == nil && st.Clients == 0
	})
}

// execUp waits until the exec plugin is online, as b sees it.
func (b *browser) execUp() {
	b.t.Helper()
	b.next("exec online", func(m map[string]any) bool {
		if m["type"] == wire.TypeStatus {
			return m["plugin"] == "exec" && m["state"] == wire.StateOnline
		}
		return m["type"] == wire.TypeHello && execOnline(m)
	})
}

// firstHello returns the exec sensors and commands in b's first hello.
func (b *browser) firstHello() []string {
	b.t.Helper()
	return execIDs(b.next("hello", func(m map[string]any) bool { return m["type"] == wire.TypeHello }))
}

// logged counts the lines of livecgid's log that hold every one of words.
func (d *daemon) logged(words ...string) int {
	n := 0
	for line := range strings.Lines(d.logs.String()) {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			n++
		}
	}
	return n
}

// browser is a WebSocket client of a daemon, as the page is.
type browser struct {
	t    *testing.T
	ctx  context.Context
	conn *websocket.Conn
}

// dial connects a browser (an operator) to d.
func (d *daemon) dial() *browser {
	d.t.Helper()
	origin := "http://127.0.0.1:" + strconv.Itoa(d.port)
	tok, _ := control.MintToken(d.secret, origin, d.epoch, time.Now(), time.Minute, auth.Identity{User: "test", Role: auth.RoleOperator})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	d.t.Cleanup(cancel)
	conn, _, err := websocket.Dial(ctx, "ws://127.0.0.1:"+strconv.Itoa(d.port)+"/live?token="+tok, &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol}, HTTPHeader: http.Header{"Origin": {origin}},
	})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { conn.CloseNow() })
	conn.SetReadLimit(1 << 20)
	return &browser{t: d.t, ctx: ctx, conn: conn}
}

// next returns the next frame for which match is true, skipping others.
func (b *browser) next(what string, match func(m map[string]any) bool) map[string]any {
	b.t.Helper()
	for {
		_, data, err := b.conn.Read(b.ctx)
		if err != nil {
			b.t.Fatalf("waiting for %s: %v", what, err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			b.t.Fatal(err)
		}
		if match(m) {
			return m
		}
	}
}

// execIDs gives the ids (and units, for sensors) of a hello's exec
// sensors and commands: "exec.temp:°C", "exec.greet".
func execIDs(m map[string]any) []string {
	var out []string
	for _, s := range m["sensors"].([]any) {
		s := s.(map[string]any)
		if s["plugin"] == "exec" {
			out = append(out, fmt.Sprint(s["id"], ":", s["unit"]))
		}
	}
	for _, c := range m["commands"].([]any) {
		c := c.(map[string]any)
		if c["plugin"] == "exec" {
			out = append(out, fmt.Sprint(c["id"]))
		}
	}
	return out
}

// execOnline reports whether a hello says the exec plugin is online.
func execOnline(m map[string]any) bool {
	for _, p := range m["plugins"].([]any) {
		p := p.(map[string]any)
		if p["id"] == "exec" && p["state"] == wire.StateOnline {
			return true
		}
	}
	return false
}

// hello waits for a hello whose exec sensors and commands are want.
func (b *browser) hello(want ...string) map[string]any {
	b.t.Helper()
	return b.next("hello with "+strings.Join(want, " "), func(m map[string]any) bool {
		return m["type"] == wire.TypeHello && slices.Equal(execIDs(m), want)
	})
}

// reading waits for a reading of sensor with value.
func (b *browser) reading(sensor string, value any) {
	b.t.Helper()
	b.next(fmt.Sprint(sensor, " = ", value), func(m map[string]any) bool {
		return m["type"] == wire.TypeReading && m["sensor"] == sensor && m["value"] == value
	})
}

// greet runs the command exec.greet with name and checks its result.
func (b *browser) greet(name string) {
	b.t.Helper()
	cmd, _ := json.Marshal(map[string]any{"type": "command", "id": "greet-" + name, "name": "exec.greet", "args": map[string]any{"name": name}})
	if err := b.conn.Write(b.ctx, websocket.MessageText, cmd); err != nil {
		b.t.Fatal(err)
	}
	res := b.next("the result of greet "+name, func(m map[string]any) bool { return m["type"] == wire.TypeResult && m["id"] == "greet-"+name })
	if res["ok"] != true || res["value"] != "hi "+name {
		b.t.Errorf("result = %v", res)
	}
}

// TestSupervisor runs livecgid with the exec plugin and a browser's
// WebSocket: sensors appear, change and disappear with their confs on the
// same connection, a command runs, and after livecgid is SIGKILLed
// nothing of it runs on: plugin, programs, their grandchildren.
func TestSupervisor(t *testing.T) {
	execDir := t.TempDir()
	writeFile(t, filepath.Join(execDir, "fixture"), "21.5\n")
	writeFile(t, filepath.Join(execDir, "temp.conf"), "run = /bin/cat fixture\ninterval = 100ms\nunit = °C\n")
	writeFile(t, filepath.Join(execDir, "beat.sh"), "#!/bin/sh\necho $$ > beat.pid\n(sleep 300 & echo $! > beat.grandchild)\n"+
		"n=0; while :; do n=$((n+1)); echo $n; sleep 0.1; done\n")
	writeFile(t, filepath.Join(execDir, "beat.conf"), "run = ./beat.sh\nmode = stream\n")
	writeFile(t, filepath.Join(execDir, "greet.conf"), "command = greet\nrun = /bin/sh -c 'echo \"\\\"hi $LIVECGI_ARG_NAME\\\"\"'\narg.name = text required\n")
	d := startDaemon(t, execDir)
	sup := d.cmd
	b := d.dial()
	b.hello("exec.beat:<nil>", "exec.temp:°C", "exec.greet")
	b.reading("exec.temp", 21.5)

	writeFile(t, filepath.Join(execDir, "door.conf"), "run = /bin/echo open\ntype = text\n")
	b.hello("exec.beat:<nil>", "exec.door:<nil>", "exec.temp:°C", "exec.greet")
	b.reading("exec.door", "open")

	writeFile(t, filepath.Join(execDir, "temp.conf"), "run = /bin/cat fixture\ninterval = 100ms\nunit = K\n")
	writeFile(t, filepath.Join(execDir, "fixture"), "294.65\n")
	b.hello("exec.beat:<nil>", "exec.door:<nil>", "exec.temp:K", "exec.greet")
	b.reading("exec.temp", 294.65)

	os.Remove(filepath.Join(execDir, "door.conf"))
	b.hello("exec.beat:<nil>", "exec.temp:K", "exec.greet")

	b.greet("ann")

	// Everything that must die with livecgid.
	var pids []int
	for _, f := range []string{"beat.pid", "beat.grandchild"} {
		waitFor(t, f, func() bool { return len(readPIDs(t, filepath.Join(execDir, f))) == 1 })
		pids = append(pids, readPIDs(t, filepath.Join(execDir, f))...)
	}
	pids = append(pids, testkit.Children(sup.Process.Pid)...)
	if len(pids) != 3 {
		t.Fatalf("pids %v: want the stream, its grandchild and the plugin", pids)
	}
	for _, pid := range pids {
		if !testkit.Alive(pid) {
			t.Fatalf("pid %d not running before the kill", pid)
		}
	}
	sup.Process.Kill()
	sup.Wait()
	for _, pid := range pids {
		waitFor(t, "pid "+strconv.Itoa(pid)+" gone after livecgid was killed", func() bool { return !testkit.Alive(pid) })
	}
}

// Confs for the tests over a directory that starts empty: a sensor and a
// command.
const (
	tempConf  = "run = /bin/echo 21.5\ninterval = 100ms\nunit = °C\n"
	greetConf = "command = greet\nrun = /bin/sh -c 'echo \"\\\"hi $LIVECGI_ARG_NAME\\\"\"'\narg.name = text required\n"
)

// TestFirstConfWhileWatched: the first confs dropped into an empty exec
// dir while a page is open reach it (a sensor and a command, from a
// plugin that had neither), and so does the removal of the last one;
// a page opened then has none.
func TestFirstConfWhileWatched(t *testing.T) {
	execDir := t.TempDir()
	d := startDaemon(t, execDir)
	b := d.dial()
	b.execUp()

	writeFile(t, filepath.Join(execDir, "greet.conf"), greetConf)
	b.hello("exec.greet")
	b.greet("bob")
	writeFile(t, filepath.Join(execDir, "temp.conf"), tempConf)
	b.hello("exec.temp:°C", "exec.greet")
	b.reading("exec.temp", 21.5)

	os.Remove(filepath.Join(execDir, "greet.conf"))
	b.hello("exec.temp:°C")
	os.Remove(filepath.Join(execDir, "temp.conf"))
	b.hello()
	if got := d.dial().firstHello(); len(got) != 0 {
		t.Errorf("a page opened after the last conf was removed gets %v", got)
	}
	if d.logged("undeclared") > 0 {
		t.Error("livecgid dropped readings of undeclared sensors")
	}
}

// TestConfAddedWhileNobodyWatches: confs added to an empty exec dir while
// no page is open are in the first hello of the next page, and the last
// conf removed while no page is open is gone from it.
func TestConfAddedWhileNobodyWatches(t *testing.T) {
	execDir := t.TempDir()
	d := startDaemon(t, execDir)
	b := d.dial()
	b.execUp()
	b.conn.Close(websocket.StatusNormalClosure, "")
	d.alone()

	writeFile(t, filepath.Join(execDir, "temp.conf"), tempConf)
	writeFile(t, filepath.Join(execDir, "greet.conf"), greetConf)
	waitFor(t, "livecgid to describe exec again with both", func() bool {
		return d.logged("plugin description changed", "sensors=1", "commands=1") > 0
	})
	b = d.dial()
	if got, want := b.firstHello(), []string{"exec.temp:°C", "exec.greet"}; !slices.Equal(got, want) {
		t.Errorf("first hello after confs were added lists %v, want %v", got, want)
	}
	b.reading("exec.temp", 21.5)
	b.greet("ann")
	b.conn.Close(websocket.StatusNormalClosure, "")
	d.alone()

	os.Remove(filepath.Join(execDir, "temp.conf"))
	os.Remove(filepath.Join(execDir, "greet.conf"))
	waitFor(t, "livecgid to describe exec again with nothing", func() bool {
		return d.logged("plugin description changed", "sensors=0", "commands=0") > 0
	})
	if got := d.dial().firstHello(); len(got) != 0 {
		t.Errorf("first hello after the last conf was removed lists %v", got)
	}
	if d.logged("undeclared") > 0 {
		t.Error("livecgid dropped readings of undeclared sensors")
	}
}
