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
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
)

// TestEndToEnd runs the plugin as a real go-plugin process: Describe,
// Stream, Do, and a conf added while streaming (a Reading with Changed,
// then the new sensor in Describe).
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "temp.conf"), "run = /bin/echo 21.5\ninterval = 100ms\nunit = °C\n")
	writeFile(t, filepath.Join(dir, "hello.conf"), "command = hello\nrun = /bin/sh -c 'echo \"\\\"hi $LIVECGI_ARG_NAME\\\"\"'\narg.name = text required\n")
	c, _ := sdktest.Start(t, sdktest.BuildBuiltin(t, "exec", "-X main.version=v1.2.3"), proto.EnvExecDir+"="+dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := c.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "exec" || d.Version != "v1.2.3" || !d.Dynamic || len(d.Sensors) != 1 || d.Sensors[0].Id != "temp" ||
		d.Sensors[0].Unit != "°C" || d.Sensors[0].IntervalMs != 100 || len(d.Commands) != 1 || d.Commands[0].Id != "hello" {
		t.Fatalf("Describe = %v", d)
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

// TestSupervisor runs livecgid with the exec plugin and a browser's
// WebSocket: sensors appear, change and disappear with their confs on the
// same connection, a command runs, and after livecgid is SIGKILLed
// nothing of it runs on: plugin, programs, their grandchildren.
func TestSupervisor(t *testing.T) {
	root := t.TempDir()
	plugins, state, execDir := filepath.Join(root, "plugins"), filepath.Join(root, "state"), filepath.Join(root, "exec.d")
	for _, d := range []string{plugins, execDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	livecgid := sdktest.Build(t, "../../cmd/livecgid", "")
	if err := os.Symlink(livecgid, filepath.Join(plugins, "exec")); err != nil { // built in, as make install lays it out
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(execDir, "fixture"), "21.5\n")
	writeFile(t, filepath.Join(execDir, "temp.conf"), "run = /bin/cat fixture\ninterval = 100ms\nunit = °C\n")
	writeFile(t, filepath.Join(execDir, "beat.sh"), "#!/bin/sh\necho $$ > beat.pid\n(sleep 300 & echo $! > beat.grandchild)\n"+
		"n=0; while :; do n=$((n+1)); echo $n; sleep 0.1; done\n")
	writeFile(t, filepath.Join(execDir, "beat.conf"), "run = ./beat.sh\nmode = stream\n")
	writeFile(t, filepath.Join(execDir, "greet.conf"), "command = greet\nrun = /bin/sh -c 'echo \"\\\"hi $LIVECGI_ARG_NAME\\\"\"'\narg.name = text required\n")
	conf := filepath.Join(root, "livecgi.conf")
	os.WriteFile(conf, []byte("listen = 127.0.0.1:0\nstate_dir = "+state+"\nplugins_dir = "+plugins+"\nexec_dir = "+execDir+"\n"), 0o600)

	logs := &logBuf{}
	sup := exec.Command(livecgid, "-config", conf, "-log", "-", "-log-level", "debug")
	sup.Stderr = logs
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sup.Process.Kill()
		sup.Wait()
		if t.Failed() {
			t.Logf("livecgid log:\n%s", logs)
		}
	}()
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
	origin := "http://127.0.0.1:" + strconv.Itoa(status.Port)
	tok, _ := control.MintToken(secret, origin, status.Epoch, time.Now(), time.Minute, control.Identity{User: "test", Role: control.RoleOperator})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://127.0.0.1:"+strconv.Itoa(status.Port)+"/live?token="+tok, &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol}, HTTPHeader: http.Header{"Origin": {origin}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	next := func(what string, match func(m map[string]any) bool) map[string]any {
		t.Helper()
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if match(m) {
				return m
			}
		}
	}
	// sensors gives the ids and units of a hello's exec sensors.
	sensors := func(m map[string]any) []string {
		var out []string
		for _, s := range m["sensors"].([]any) {
			s := s.(map[string]any)
			if s["plugin"] == "exec" {
				out = append(out, fmt.Sprint(s["id"], ":", s["unit"]))
			}
		}
		return out
	}
	hello := func(want ...string) {
		t.Helper()
		next("hello with "+strings.Join(want, " "), func(m map[string]any) bool {
			return m["type"] == wire.TypeHello && slices.Equal(sensors(m), want)
		})
	}
	reading := func(sensor string, value any) {
		t.Helper()
		next(fmt.Sprint(sensor, " = ", value), func(m map[string]any) bool {
			return m["type"] == wire.TypeReading && m["sensor"] == sensor && m["value"] == value
		})
	}
	hello("exec.beat:<nil>", "exec.temp:°C")
	reading("exec.temp", 21.5)

	writeFile(t, filepath.Join(execDir, "door.conf"), "run = /bin/echo open\ntype = text\n")
	hello("exec.beat:<nil>", "exec.door:<nil>", "exec.temp:°C")
	reading("exec.door", "open")

	writeFile(t, filepath.Join(execDir, "temp.conf"), "run = /bin/cat fixture\ninterval = 100ms\nunit = K\n")
	writeFile(t, filepath.Join(execDir, "fixture"), "294.65\n")
	hello("exec.beat:<nil>", "exec.door:<nil>", "exec.temp:K")
	reading("exec.temp", 294.65)

	os.Remove(filepath.Join(execDir, "door.conf"))
	hello("exec.beat:<nil>", "exec.temp:K")

	b, _ := json.Marshal(map[string]any{"type": "command", "id": "c1", "name": "exec.greet", "args": map[string]any{"name": "ann"}})
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	res := next("the command's result", func(m map[string]any) bool { return m["type"] == wire.TypeResult })
	if res["ok"] != true || res["value"] != "hi ann" {
		t.Errorf("result = %v", res)
	}

	// Everything that must die with livecgid.
	var pids []int
	for _, f := range []string{"beat.pid", "beat.grandchild"} {
		waitFor(t, f, func() bool { return len(readPIDs(t, filepath.Join(execDir, f))) == 1 })
		pids = append(pids, readPIDs(t, filepath.Join(execDir, f))...)
	}
	pids = append(pids, childrenOf(sup.Process.Pid)...)
	if len(pids) != 3 {
		t.Fatalf("pids %v: want the stream, its grandchild and the plugin", pids)
	}
	for _, pid := range pids {
		if gone(pid) {
			t.Fatalf("pid %d not running before the kill", pid)
		}
	}
	sup.Process.Kill()
	sup.Wait()
	for _, pid := range pids {
		waitFor(t, "pid "+strconv.Itoa(pid)+" gone after livecgid was killed", func() bool { return gone(pid) })
	}
}

// childrenOf returns the live processes whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
			out = append(out, child)
		}
	}
	return out
}
