package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/brokertest"
)

// TestAuditRecordBounded: whatever a client sends, one record is at most
// maxRecord bytes, one line of JSON, and says when something was cut.
func TestAuditRecordBounded(t *testing.T) {
	long := strings.Repeat("é", 50<<10)
	ctl := strings.Repeat("\x01", 10<<10)
	args, _ := json.Marshal(map[string]string{"x": strings.Repeat("y", 900)})
	for name, r := range map[string]auditRecord{
		"long fields":   {User: long, Role: long, Remote: long, Command: long, ID: long, Result: long},
		"escapes":       {User: ctl, Role: ctl, Remote: ctl, Command: ctl, ID: ctl, Result: ctl, Args: args},
		"args and more": {User: strings.Repeat("u", 129), Command: strings.Repeat("c", 129), ID: strings.Repeat("i", 64), Result: long, Args: args},
	} {
		line := r.encode()
		var back auditRecord
		if len(line) > maxRecord || bytes.Count(line, []byte("\n")) != 1 || json.Unmarshal(line, &back) != nil || !back.Cut {
			t.Errorf("%s: %d bytes, cut %v: %.200q", name, len(line), back.Cut, line)
		}
	}
	ok := auditRecord{User: "ann", Role: "operator", Command: "leds.set", ID: "1", Args: json.RawMessage(`{"a":1}`), Result: "ok"}
	if line := ok.encode(); !bytes.Contains(line, []byte(`"args":{"a":1}`)) || bytes.Contains(line, []byte("cut")) {
		t.Errorf("a plain record changed: %s", line)
	}
}

// testTrail opens an audit trail in a fresh directory.
func testTrail(t *testing.T, every time.Duration) (*trail, string) {
	dir := t.TempDir()
	tr := &trail{log: slog.New(slog.DiscardHandler)}
	tr.refused.every = every
	tr.open(dir)
	t.Cleanup(tr.close)
	return tr, dir
}

// TestRefusalsSummarised: one identity's refused commands get a record
// each up to refusalBurst; the rest are counted into one summary record,
// written refusalEvery after the first left out (or when the trail
// closes). Another identity, and commands that ran, are not held back.
func TestRefusalsSummarised(t *testing.T) {
	tr, dir := testTrail(t, 200*time.Millisecond)
	viewer := auth.Identity{Role: auth.RoleViewer}
	m := &wire.CommandMsg{ID: "x", Name: "leds.set"}
	for range 1000 {
		tr.record(viewer, "192.0.2.7:1000", m, "forbidden: no", true)
	}
	tr.record(viewer, "192.0.2.8:1000", m, "forbidden: no", true)
	for range refusalBurst + 5 {
		tr.record(viewer, "192.0.2.7:1000", &wire.CommandMsg{ID: "ok", Name: "leds.blink"}, "ok", false)
	}
	var recs []auditRecord
	waitFor(t, "the summary", func() bool {
		recs = readAudit(t, filepath.Join(dir, ViewerAuditFile))
		return len(recs) > 0 && recs[len(recs)-1].Refused > 0
	})
	byAddr := map[string]int{}
	ran := 0
	for _, r := range recs {
		switch {
		case r.Result == "ok":
			ran++
		case r.Refused > 0:
			if r.Refused != 1000-refusalBurst || r.Remote != "192.0.2.7:1000" || !strings.Contains(r.Result, "990 refused commands not recorded one by one") {
				t.Errorf("summary: %+v", r)
			}
		default:
			byAddr[r.Remote]++
		}
	}
	if byAddr["192.0.2.7:1000"] != refusalBurst || byAddr["192.0.2.8:1000"] != 1 || ran != refusalBurst+5 {
		t.Errorf("records one by one: %v refused, %d ran; want %d and 1 refused, %d ran", byAddr, ran, refusalBurst, refusalBurst+5)
	}
	// Once its bucket refills, the identity's refusals are written again.
	time.Sleep(250 * time.Millisecond)
	tr.record(viewer, "192.0.2.7:1000", m, "forbidden: again", true)
	if recs := readAudit(t, filepath.Join(dir, ViewerAuditFile)); recs[len(recs)-1].Result != "forbidden: again" {
		t.Errorf("after a pause: last record %+v", recs[len(recs)-1])
	}
}

// TestViewerFloodKeepsOperatorRecord: viewers' records, however many (of
// many identities, all run), rotate their own file only: the operator's
// record stays in AuditFile.
func TestViewerFloodKeepsOperatorRecord(t *testing.T) {
	tr, dir := testTrail(t, time.Hour)
	tr.record(auth.Identity{User: "otto", Role: auth.RoleOperator}, "192.0.2.1:1", &wire.CommandMsg{ID: "op1", Name: "leds.set"}, "ok", false)
	big := map[string]any{"pad": strings.Repeat("x", maxArgs-20)}
	for i := range 4 * maxAudit / maxArgs {
		tr.record(auth.Identity{Role: auth.RoleViewer}, fmt.Sprintf("192.0.2.%d:1", i%250), &wire.CommandMsg{ID: "v", Name: "leds.blink", Args: big}, "ok", false)
	}
	recs := readAudit(t, filepath.Join(dir, AuditFile))
	if len(recs) != 1 || recs[0].ID != "op1" {
		t.Errorf("%s after the flood: %+v", AuditFile, recs)
	}
	if _, err := os.Stat(filepath.Join(dir, ViewerAuditFile+".1")); err != nil {
		t.Errorf("the viewers' file never rotated: %v", err)
	}
}

// TestAuditSurvivesViewerFlood: an operator's record survives 1,000
// forbidden commands with long names from viewers, over each transport
// that takes commands: a name longer than a name can be is refused at
// decoding and never audited; the longest valid name is refused
// (forbidden), written refusalBurst times and then summarised, in the
// viewers' file.
func TestAuditSurvivesViewerFlood(t *testing.T) {
	huge := "p." + strings.Repeat("n", 60<<10)
	valid := strings.Repeat("p", 64) + "." + strings.Repeat("n", 64)
	flood := func(c *config.Config) { c.Rate, c.Burst = 1e6, 1_000_000 }
	// operator runs one command as an operator over a WebSocket and
	// returns the state dir.
	operator := func(t *testing.T, ts *testSup) string {
		op := ts.dial(t)
		online(op, "helper_counter")
		op.send(wire.CommandMsg{Type: "command", ID: "op1", Name: "helper_counter.add", Args: map[string]any{"a": 1}})
		if m := op.next("op1's result", func(m map[string]any) bool { return m["id"] == "op1" }); m["ok"] != true {
			t.Fatalf("operator's command: %v", m)
		}
		return ts.config().StateDir
	}
	// check looks at the trail after a flood that began at start: the
	// viewers' file holds the burst and a summary, and, for each
	// refusalEvery the flood lasted (a loaded machine is slow), one more
	// record and one more summary.
	check := func(t *testing.T, state string, start time.Time) {
		t.Helper()
		found := false
		for _, r := range readTrail(t, state) {
			found = found || r.ID == "op1" && r.Role == auth.RoleOperator && r.Result == "ok"
			if len(r.Command) > len(valid) {
				t.Errorf("a record of a name of %d bytes", len(r.Command))
			}
		}
		if !found {
			t.Error("the operator's record is gone")
		}
		if n := len(readAudit(t, filepath.Join(state, AuditFile))); n != 1 {
			t.Errorf("%d records in %s, want the operator's only", n, AuditFile)
		}
		refills := 2 * int(time.Since(start)/refusalEvery)
		if n := len(readAudit(t, filepath.Join(state, ViewerAuditFile))); n > refusalBurst+2+refills {
			t.Errorf("%d records of the flood, want at most %d and a summary (and %d for its %v)", n, refusalBurst+1, refills, time.Since(start).Round(time.Second))
		}
	}

	t.Run("websocket", func(t *testing.T) {
		ts := startSup(t, flood, "counter")
		state := operator(t, ts)
		v, err := ts.tryDial(ts.urlFor(ts.origin(), auth.Identity{User: "vera", Role: auth.RoleViewer}), ts.origin())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for i := range 1000 {
			name := huge
			if i%2 == 1 {
				name = valid
			}
			v.send(wire.CommandMsg{Type: "command", ID: fmt.Sprint(i), Name: name})
			v.next("an answer", func(m map[string]any) bool { return m["id"] == fmt.Sprint(i) })
		}
		check(t, state, start)
	})

	t.Run("poll", func(t *testing.T) {
		ts := startSup(t, flood, "counter")
		state := operator(t, ts)
		o := ts.origin()
		a := ts.poll(context.Background(), control.PollRequest{Token: ts.token(o, auth.Identity{}), Origin: o, Remote: "192.0.2.7"})
		start := time.Now()
		for i := range 1000 {
			name := huge
			if i%2 == 1 {
				name = valid
			}
			frame, _ := json.Marshal(wire.CommandMsg{Type: "command", ID: fmt.Sprint(i), Name: name})
			arg, _ := json.Marshal(control.CommandRequest{Session: a.Session, Origin: o, Remote: "192.0.2.7", Len: len(frame)})
			ans := ts.servePollCommand(context.Background(), arg, bytes.NewReader(frame))
			var e wire.Error
			if json.Unmarshal(ans.Body, &e); ans.Status != 200 || e.ID != fmt.Sprint(i) || e.Code != wire.ErrBadMessage && e.Code != wire.ErrForbidden {
				t.Fatalf("poll command %d: %d %.200s", i, ans.Status, ans.Body)
			}
		}
		check(t, state, start)
	})

	t.Run("mqtt", func(t *testing.T) {
		b := brokertest.Start(t, brokertest.Options{})
		ts := startSup(t, func(c *config.Config) { flood(c); withBridge(b, "f1", nil)(c) }, "counter")
		state := operator(t, ts)
		sub := b.Subscribe(t, []string{"livecgi/f1/$state"})
		sub.WaitFor(mqttWait, 0, "$state online", func(m brokertest.Message) bool { return m.Payload == "online" })
		start := time.Now()
		b.PublishMany(t, "livecgi/f1/cmd/"+huge, []byte("{}"), 500)
		b.PublishMany(t, "livecgi/f1/cmd/"+valid, []byte("{}"), 500)
		// Every command is answered (some at QoS 0, which a subscriber
		// may miss), and each answer that is no result is logged.
		waitWithin(t, mqttWait, "the flood's answers", func() bool {
			return strings.Count(ts.logs.String(), `msg="mqtt: request refused"`) >= 1000
		})
		check(t, state, start)
	})
}
