package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
	"github.com/livecgi/livecgi/proto/wire"
)

// csvRows checks a history CSV and returns its rows after the header:
// an RFC 3339 UTC time and three numbers each.
func csvRows(t *testing.T, body string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if lines[0] != "time,min,avg,max" {
		t.Fatalf("CSV header %q in %q", lines[0], body)
	}
	var rows [][]string
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) != 4 {
			t.Fatalf("CSV line %q", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil || !strings.HasSuffix(f[0], "Z") {
			t.Fatalf("CSV time %q: %v", f[0], err)
		}
		for _, v := range f[1:] {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				t.Fatalf("CSV value %q: %v", v, err)
			}
		}
		rows = append(rows, f)
	}
	return rows
}

// TestHistoryCSV: under busybox httpd, with the real stub, supervisor and
// system plugin, a recorded sensor's history is a CSV download
// (live.cgi?history=…, the last hour by default, or from and to), and a
// history frame through the poll transport's POST ?command; the errors
// are the stub's JSON ones, readable by the page; history_dir keeps the
// history across a stop and the start the next request makes; the auth
// mode applies as to a poll.
func TestHistoryCSV(t *testing.T) {
	busybox := mustTool(t, "busybox")
	const sensor = "system.uptime_seconds" // always there, always a number
	hdir := filepath.Join(t.TempDir(), "history")
	e := mustEnvWith(t, fmt.Sprintf("record.%s = 5s\nhistory_dir = %s\npoll_interval = 100ms\n", sensor, hdir), "system")
	port := mustStartServer(t, busyboxServer(), busybox, e)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	base := origin + "/cgi-bin/live.cgi"
	logsOnFailure(t, e)

	// A page watching: the system plugin runs and its readings are
	// recorded.
	doc, err := connect(base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, doc.URL, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}, Subprotocols: []string{doc.Protocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	go func() { // read, so the supervisor's frames do not pile up
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				return
			}
		}
	}()

	var hdr http.Header
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st int
		st, hdr, body = fetch(t, base+"?history="+sensor, nil)
		if st != 200 {
			t.Fatalf("history download: %d %s", st, body)
		}
		if len(csvRows(t, body)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recorded row within 30 s: %q", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ct := hdr.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	cd := hdr.Get("Content-Disposition")
	name, ok := strings.CutPrefix(cd, `attachment; filename="`+sensor+"-")
	if from, err := time.Parse("20060102T150405Z.csv\"", name); !ok || err != nil || time.Since(from) < 59*time.Minute || time.Since(from) > 62*time.Minute {
		t.Errorf("Content-Disposition %q: want %s-<an hour ago>.csv", cd, sensor)
	}
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", hdr.Get("Cache-Control"))
	}
	rows := csvRows(t, body)
	first, _ := time.Parse(time.RFC3339Nano, rows[0][0])

	// A range: from and to in Unix ms, both ends taken.
	from, to := first.UnixMilli(), first.Add(time.Hour).UnixMilli()
	st, hdr, body := fetch(t, fmt.Sprintf("%s?history=%s&from=%d&to=%d", base, sensor, from, to), nil)
	if st != 200 || hdr.Get("Content-Disposition") != `attachment; filename="`+sensor+"-"+first.UTC().Format("20060102T150405Z")+`.csv"` {
		t.Fatalf("history of a range: %d %v %s", st, hdr, body)
	}
	if r := csvRows(t, body); len(r) == 0 || r[0][0] != rows[0][0] {
		t.Errorf("history of a range from the first row: %v, want it to start at %s", r, rows[0][0])
	}
	if st, _, body := fetch(t, fmt.Sprintf("%s?history=%s&to=%d", base, sensor, from-1), nil); st != 200 || len(csvRows(t, body)) != 0 {
		t.Errorf("history of the hour before the first row: %d %q", st, body)
	}

	// The same history over the poll transport: a history frame POSTed
	// as a command is.
	var pollURL string
	doc2, err := connect(base) // a fresh token for the poll transport
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range doc2.Transports {
		if tr.Kind == control.TransportPoll {
			pollURL = origin + tr.URL
		}
	}
	st, pd, raw := do(t, "GET", pollURL, nil)
	if st != 200 || pd.Session == "" {
		t.Fatalf("first poll: %d %s", st, raw)
	}
	frame := `{"type":"history","id":"h1","sensor":"` + sensor + `","points":50}`
	st, _, raw = do(t, "POST", base+"?command&session="+pd.Session, []byte(frame), "Origin", origin, "Content-Type", "application/json")
	var h wire.History
	if err := json.Unmarshal(raw, &h); st != 200 || err != nil || h.Type != wire.TypeHistory || h.ID != "h1" || h.Sensor != sensor || len(h.Points) == 0 || len(h.Points) > 50 {
		t.Errorf("history frame over the poll transport: %d %s", st, raw)
	}
	frame = `{"type":"history","id":"h2","sensor":"system.load5"}`
	if st, _, raw = do(t, "POST", base+"?command&session="+pd.Session, []byte(frame), "Origin", origin); st != 200 || !strings.Contains(string(raw), `"code":"not_recorded"`) || !strings.Contains(string(raw), `"id":"h2"`) {
		t.Errorf("history frame of a sensor not recorded, over the poll transport: %d %s", st, raw)
	}

	// Errors: the stub's JSON, readable by the page that asked.
	for _, tt := range []struct {
		query  string
		header map[string]string
		status int
		code   string
	}{
		{"history=system.load5", nil, 404, wire.ErrNotRecorded},
		{"history=nope.nothing", nil, 404, wire.ErrUnknownSensor},
		{"history=load5", nil, 400, "bad_request"},
		{"history=" + sensor + "&from=2&to=1", nil, 400, "bad_request"},
		{"history=" + sensor, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross_site"},
		{"history=" + sensor, map[string]string{"Origin": "http://evil.example"}, 403, "cross_site"},
	} {
		hd := map[string]string{"Origin": origin}
		for k, v := range tt.header {
			hd[k] = v
		}
		st, h, body := fetch(t, base+"?"+tt.query, hd)
		var eb struct{ Error, Reason string }
		json.Unmarshal([]byte(body), &eb)
		if st != tt.status || eb.Error != tt.code || eb.Reason == "" || h.Get("Access-Control-Allow-Origin") != hd["Origin"] || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("?%s %v: %d %v %s, want %d %s readable by %s", tt.query, tt.header, st, h, body, tt.status, tt.code, hd["Origin"])
		}
	}

	// A clean stop saves the history; the next download starts the
	// supervisor again, which reads it back.
	ws.Close(websocket.StatusNormalClosure, "")
	pids := testkit.Supervisors(e.state)
	if len(pids) != 1 {
		t.Fatalf("supervisors %v", pids)
	}
	stopAndReap(pids[0])
	if _, err := os.Stat(filepath.Join(hdir, "history.gz")); err != nil {
		t.Fatalf("no history saved at the stop: %v", err)
	}
	st, _, body = fetch(t, fmt.Sprintf("%s?history=%s&from=%d&to=%d", base, sensor, from, to), nil)
	if st != 200 {
		t.Fatalf("history download after the stop: %d %s", st, body)
	}
	if r := csvRows(t, body); len(r) == 0 || r[0][0] != rows[0][0] {
		t.Errorf("history after a stop and start: %v, want it to start at %s", r, rows[0][0])
	}
	if p := testkit.Supervisors(e.state); len(p) != 1 || p[0] == pids[0] {
		t.Errorf("supervisors after the download: %v (the stopped one was %d)", p, pids[0])
	}

	// The auth mode applies as to a poll: auth = webserver under a
	// busybox that passes no REMOTE_USER signs nobody in.
	setConf(t, e, "auth = webserver\n")
	if st, h, body := fetch(t, base+"?history="+sensor, map[string]string{"Origin": origin}); st != 403 || !strings.Contains(body, `"error":"unauthorized"`) || h.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("history download not signed in: %d %s", st, body)
	}
}
