package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
	"github.com/livecgi/livecgi/proto/wire"
)

// pollDoc is a poll answer.
type pollDoc struct {
	Session string            `json:"session"`
	Seq     uint64            `json:"seq"`
	Frames  []json.RawMessage `json:"frames"`
	Error   string            `json:"error"`
	Reason  string            `json:"reason"`
}

// frameTypes lists the type and sensor of each frame.
func (d pollDoc) frameTypes(t *testing.T) (types, sensors []string) {
	t.Helper()
	for _, f := range d.Frames {
		var m struct{ Type, Sensor string }
		if err := json.Unmarshal(f, &m); err != nil {
			t.Fatalf("frame %s: %v", f, err)
		}
		types = append(types, m.Type)
		sensors = append(sensors, m.Sensor)
	}
	return types, sensors
}

// pollClient opens a connection per request: busybox httpd may close an
// idle one just as a POST is sent on it, which is not retried. A poll
// waits up to poll_timeout (25 s).
var pollClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}

// do sends one request to the stub with the given headers and decodes
// the answer's JSON.
func do(t *testing.T, method, u string, body []byte, header ...string) (int, pollDoc, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := pollClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var d pollDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s %s: %s: not JSON: %q", method, u, resp.Status, b)
	}
	return resp.StatusCode, d, b
}

// TestPoll speaks the long-poll protocol to the real stub under busybox
// httpd and the real supervisor with the system and leds plugins: the
// connect document lists the poll transport; its token opens a session
// (hello, snapshot); later polls wait for readings, newest per sensor;
// commands go through the role check, the schema and the audit trail; and
// every bad input gets its precise error.
func TestPoll(t *testing.T) {
	busybox := mustTool(t, "busybox")
	sysRoot := sdktest.CopyFixture(t, filepath.Join("..", "..", "plugins", "leds", "testdata", "sys"))
	e := mustEnvWith(t, "sys_root = "+sysRoot+"\ncommand_role = leds.set_brightness viewer\npoll_interval = 500ms\nmax_frame = 1024\n", "system", "leds")
	port := mustStartServer(t, busyboxServer(), busybox, e)
	base := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	logsOnFailure(t, e)

	doc, err := connect(base)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var pollURL string
	for _, tr := range doc.Transports {
		kinds = append(kinds, tr.Kind)
		if tr.Kind == control.TransportPoll {
			pollURL = tr.URL
		}
	}
	if strings.Join(kinds, ",") != "ws,poll" || doc.Transports[0].URL != doc.URL || !strings.HasPrefix(pollURL, "/cgi-bin/live.cgi?poll&token=") {
		t.Fatalf("transports %+v", doc.Transports)
	}
	first := "http://127.0.0.1:" + strconv.Itoa(port) + pollURL

	// A token of another origin does not open a session.
	if st, d, _ := do(t, "GET", first, nil, "Origin", "http://127.0.0.1:1"); st != 403 || d.Error != control.ErrCodeForbidden {
		t.Errorf("first poll from another origin: %d %+v, want 403 forbidden", st, d)
	}
	doc, _ = connect(base) // that try spent nothing, but take a fresh one anyway
	first = "http://127.0.0.1:" + strconv.Itoa(port) + doc.Transports[1].URL

	// The first poll: hello and snapshot at once.
	st, d, raw := do(t, "GET", first, nil)
	if st != 200 || d.Session == "" || len(d.Frames) < 2 {
		t.Fatalf("first poll: %d %s", st, raw)
	}
	types, _ := d.frameTypes(t)
	if types[0] != wire.TypeHello || types[1] != wire.TypeSnapshot {
		t.Fatalf("first poll frames %v, want hello, snapshot first", types)
	}
	// The token is single-use.
	if st, d, _ := do(t, "GET", first, nil); st != 403 || !strings.Contains(d.Reason, "already used") {
		t.Errorf("token used twice: %d %+v", st, d)
	}

	session, seq := d.Session, d.Seq
	next := func(since uint64, header ...string) (int, pollDoc) {
		t.Helper()
		st, d, _ := do(t, "GET", fmt.Sprintf("%s?poll&session=%s&since=%d", base, session, since), nil, header...)
		return st, d
	}
	// Later polls wait for readings after since, newest per sensor.
	for range 3 {
		st, d := next(seq)
		if st != 200 || d.Session != session {
			t.Fatalf("poll: %d %+v", st, d)
		}
		types, sensors := d.frameTypes(t)
		seen := map[string]bool{}
		for i, typ := range types {
			if typ == wire.TypeReading {
				if seen[sensors[i]] {
					t.Errorf("poll answered two readings of %s: not coalesced", sensors[i])
				}
				seen[sensors[i]] = true
			}
		}
		if len(seen) > 0 && d.Seq <= seq {
			t.Errorf("poll after %d answered seq %d", seq, d.Seq)
		}
		seq = d.Seq
	}
	// No since: hello and snapshot again; since ahead: a snapshot.
	if _, d := func() (int, pollDoc) {
		_, d, _ := do(t, "GET", base+"?poll&session="+session, nil)
		return 0, d
	}(); len(d.Frames) < 2 {
		t.Errorf("poll without since: %+v", d)
	} else if types, _ := d.frameTypes(t); types[0] != wire.TypeHello || types[1] != wire.TypeSnapshot {
		t.Errorf("poll without since: %v, want hello, snapshot", types)
	}
	if _, d := next(1 << 62); len(d.Frames) == 0 || !bytes.Contains(d.Frames[0], []byte(`"sequence ahead of the server"`)) {
		t.Errorf("poll with since ahead: %+v", d)
	}

	// Bad polls.
	for _, tt := range []struct {
		name, query string
		header      []string
		status      int
		code        string
	}{
		{"since garbage", "poll&session=" + session + "&since=abc", nil, 400, "bad_request"},
		{"since negative", "poll&session=" + session + "&since=-5", nil, 400, "bad_request"},
		{"since huge", "poll&session=" + session + "&since=99999999999999999999", nil, 400, "bad_request"},
		{"no token or session", "poll&since=1", nil, 400, "bad_request"},
		{"unknown session", "poll&session=AAAAAAAAAAAAAAAAAAAAAA&since=1", nil, 410, control.ErrCodeSession},
		{"forged token", "poll&token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil, 403, control.ErrCodeForbidden},
		{"another site", "poll&session=" + session, []string{"Origin", "http://evil.example"}, 403, "cross_site"},
		{"another origin on this host", "poll&session=" + session, []string{"Origin", "http://127.0.0.1:1"}, 403, control.ErrCodeForbidden},
		{"Sec-Fetch-Site cross-site", "poll&session=" + session, []string{"Sec-Fetch-Site", "cross-site"}, 403, "cross_site"},
		{"host not allowed", "poll&session=" + session, []string{"Host", "evil.example"}, 403, "host_not_allowed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"?"+tt.query, nil)
			for i := 0; i+1 < len(tt.header); i += 2 {
				if tt.header[i] == "Host" {
					req.Host = tt.header[i+1]
				} else {
					req.Header.Set(tt.header[i], tt.header[i+1])
				}
			}
			resp, err := pollClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var d pollDoc
			json.Unmarshal(b, &d)
			if resp.StatusCode != tt.status || d.Error != tt.code {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, b, tt.status, tt.code)
			}
		})
	}

	// Commands: POST with the WebSocket's command frame.
	cmdURL := base + "?command&session=" + session
	command := func(frame string, header ...string) (int, []byte) {
		t.Helper()
		st, _, b := do(t, "POST", cmdURL, []byte(frame), append([]string{"Content-Type", "application/json"}, header...)...)
		return st, b
	}
	brightness := filepath.Join(sysRoot, "class", "leds", "led0", "brightness")
	st, b := command(`{"type":"command","id":"c1","name":"leds.set_brightness","args":{"led":"led0","value":42}}`, "Origin", origin)
	var res wire.Result
	if json.Unmarshal(b, &res); st != 200 || res.Type != wire.TypeResult || res.ID != "c1" || !res.OK {
		t.Fatalf("command: %d %s", st, b)
	}
	if got, _ := os.ReadFile(brightness); strings.TrimSpace(string(got)) != "42" {
		t.Errorf("%s holds %q after the command, want 42", brightness, got)
	}
	audit, _ := os.ReadFile(filepath.Join(e.state, "audit-viewer.log")) // a viewer's command (command_role)
	if !bytes.Contains(audit, []byte(`"command":"leds.set_brightness","id":"c1"`)) || !bytes.Contains(audit, []byte(`"result":"ok"`)) {
		t.Errorf("audit trail lacks the poll's command:\n%s", audit)
	}
	for _, tt := range []struct {
		name, frame string
		header      []string
		status      int
		want        string
	}{
		{"forbidden for a viewer", `{"type":"command","id":"c2","name":"leds.set_trigger","args":{"led":"led0","trigger":"none"}}`, []string{"Origin", origin}, 200, `"code":"forbidden"`},
		{"bad args", `{"type":"command","id":"c3","name":"leds.set_brightness","args":{"led":"led0","value":"x"}}`, []string{"Origin", origin}, 200, `"code":"bad_args"`},
		{"bad JSON", `{"type":`, []string{"Origin", origin}, 200, `"code":"bad_json"`},
		{"not a command", `{"type":"subscribe","sensors":[]}`, []string{"Origin", origin}, 200, `"code":"bad_message"`},
		{"no Origin", `{"type":"command","id":"c4","name":"leds.set_brightness","args":{"led":"led0","value":1}}`, nil, 403, `"error":"cross_site"`},
		{"another site", `{"type":"command","id":"c5","name":"leds.set_brightness","args":{"led":"led0","value":1}}`, []string{"Origin", "http://evil.example"}, 403, `"error":"cross_site"`},
		{"over max_frame", `{"type":"command","id":"c6","name":"x","args":{"pad":"` + strings.Repeat("x", 1100) + `"}}`, []string{"Origin", origin}, 413, `"error":"bad_request"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, b := command(tt.frame, tt.header...)
			if st != tt.status || !bytes.Contains(b, []byte(tt.want)) {
				t.Errorf("%d %s, want %d %s", st, b, tt.status, tt.want)
			}
		})
	}
	if st, _, b := do(t, "GET", cmdURL, nil, "Origin", origin); st != 405 {
		t.Errorf("GET ?command: %d %s, want 405", st, b)
	}
	if got, _ := os.ReadFile(brightness); strings.TrimSpace(string(got)) != "42" {
		t.Errorf("%s holds %q after refused commands, want 42 still", brightness, got)
	}

	// A page polling in a tight loop: since=0 always has news, yet one
	// session gets at most one answer per poll_interval (500 ms).
	const window = 3 * time.Second
	n := 0
	for start := time.Now(); time.Since(start) < window; n++ {
		if st, d := next(0); st != 200 || len(d.Frames) == 0 {
			t.Fatalf("tight poll: %d %+v", st, d)
		}
	}
	if max := int(window/(500*time.Millisecond)) + 2; n > max {
		t.Errorf("a tight loop got %d answers in %v, want at most %d (poll_interval = 500ms)", n, window, max)
	}
	t.Logf("tight loop: %d answers in %v", n, window)

	// The supervisor killed: the session is gone; the stub starts a new
	// supervisor and says to fetch ?connect again, which works.
	pids := testkit.Supervisors(e.state)
	if len(pids) != 1 {
		t.Fatalf("supervisors %v", pids)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	testkit.KillAndReap(pids[0])
	if st, d := next(seq); st != 410 || d.Error != control.ErrCodeSession {
		t.Errorf("poll after the supervisor died: %d %+v, want 410 %s", st, d, control.ErrCodeSession)
	}
	if p := testkit.Supervisors(e.state); len(p) != 1 || p[0] == pids[0] {
		t.Errorf("supervisors after the poll: %v (the killed one was %d)", p, pids[0])
	}
	doc, err = connect(base)
	if err != nil {
		t.Fatal(err)
	}
	if st, d, raw := do(t, "GET", "http://127.0.0.1:"+strconv.Itoa(port)+doc.Transports[1].URL, nil); st != 200 || len(d.Frames) < 2 {
		t.Errorf("first poll after the restart: %d %s", st, raw)
	}
}

func busyboxServer() server {
	for _, s := range servers {
		if s.name == "busybox" {
			return s
		}
	}
	panic("no busybox server")
}
