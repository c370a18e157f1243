package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/wire"
)

// TestPollAlarm: an alarm through the real stub under busybox httpd,
// over long polling. The exec plugin's sensor exec.temp prints a file
// the test writes; with alarm.hot = exec.temp above 70, the first poll's
// snapshot lists hot as ok, and once the file says 80 a later poll
// carries hot's alarm frame, raised; alarms.log in the state dir has the
// transition.
func TestPollAlarm(t *testing.T) {
	busybox := mustTool(t, "busybox")
	data := t.TempDir()
	execDir := filepath.Join(data, "exec.d")
	if err := os.Mkdir(execDir, 0o700); err != nil {
		t.Fatal(err)
	}
	value := filepath.Join(data, "value")
	set := func(v int) {
		t.Helper()
		if err := os.WriteFile(value+".tmp", []byte(strconv.Itoa(v)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(value+".tmp", value); err != nil {
			t.Fatal(err)
		}
	}
	set(20)
	if err := os.WriteFile(filepath.Join(execDir, "temp.conf"), []byte("run = /bin/cat "+value+"\ninterval = 100ms\ntimeout = 10s\ntype = number\nunit = °C\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := mustEnvWith(t, "exec_dir = "+execDir+"\nheartbeat.exec.temp = 1h\nalarm.hot = exec.temp above 70 critical\npoll_interval = 0s\n", "exec")
	port := mustStartServer(t, busyboxServer(), busybox, e)
	base := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port)
	logsOnFailure(t, e)

	doc, err := connect(base)
	if err != nil {
		t.Fatal(err)
	}
	st, d, raw := do(t, "GET", "http://127.0.0.1:"+strconv.Itoa(port)+doc.Transports[1].URL, nil)
	if st != 200 || len(d.Frames) < 2 {
		t.Fatalf("first poll: %d %s", st, raw)
	}
	var snap wire.Snapshot
	if err := json.Unmarshal(d.Frames[1], &snap); err != nil || snap.Type != wire.TypeSnapshot {
		t.Fatalf("first poll's second frame: %s", d.Frames[1])
	}
	if len(snap.Alarms) != 1 || snap.Alarms[0].Name != "hot" || snap.Alarms[0].State != wire.AlarmOK || snap.Alarms[0].Severity != wire.AlarmCritical {
		t.Fatalf("first snapshot's alarms: %+v", snap.Alarms)
	}

	set(80)
	session, seq := d.Session, d.Seq
	var raised *wire.Alarm
	for deadline := time.Now().Add(30 * time.Second); raised == nil && time.Now().Before(deadline); {
		st, d, raw := do(t, "GET", fmt.Sprintf("%s?poll&session=%s&since=%d", base, session, seq), nil)
		if st != 200 {
			t.Fatalf("poll: %d %s", st, raw)
		}
		seq = d.Seq
		for _, f := range d.Frames {
			var a wire.Alarm
			if json.Unmarshal(f, &a) == nil && a.Type == wire.TypeAlarm {
				raised = &a
				break
			}
		}
	}
	if raised == nil {
		t.Fatal("no alarm frame over long polling within 30s")
	}
	if raised.Name != "hot" || raised.State != wire.AlarmCritical || raised.Value == nil || *raised.Value != 80 || raised.Message != "exec.temp 80 °C above 70" {
		t.Fatalf("alarm frame %+v", *raised)
	}
	b, _ := os.ReadFile(filepath.Join(e.state, "alarms.log"))
	if !strings.Contains(string(b), `"event":"transition","name":"hot","sensor":"exec.temp","state":"critical","previous":"ok"`) {
		t.Errorf("alarms.log:\n%s", b)
	}
}
