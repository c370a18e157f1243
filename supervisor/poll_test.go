package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/control/ctlserver"
	"github.com/livecgi/livecgi/proto/wire"
)

// pollAns is a decoded poll answer.
type pollAns struct {
	status  int
	Session string            `json:"session"`
	Seq     uint64            `json:"seq"`
	Frames  []json.RawMessage `json:"frames"`
	Error   string            `json:"error"`
	Reason  string            `json:"reason"`
}

func (a pollAns) types() []string {
	var out []string
	for _, f := range a.Frames {
		var m struct{ Type string }
		json.Unmarshal(f, &m)
		out = append(out, m.Type)
	}
	return out
}

func (ts *testSup) poll(ctx context.Context, req control.PollRequest) pollAns {
	ts.t.Helper()
	b, _ := json.Marshal(req)
	a := ts.servePoll(ctx, b, nil)
	var p pollAns
	if err := json.Unmarshal(a.Body, &p); err != nil {
		ts.t.Fatalf("poll answer %q: %v", a.Body, err)
	}
	p.status = a.Status
	return p
}

func (ts *testSup) token(origin string, id auth.Identity) string {
	tok, _ := control.MintToken(ts.secret, origin, ts.Status().Epoch, time.Now(), time.Minute, id)
	return tok
}

// TestPollSession: a token opens a session with hello and snapshot; polls
// then get the readings after since, newest per sensor; since ahead of
// the server gets a snapshot; tokens are single-use and sessions bound to
// their origin; poll sessions count against max_clients.
func TestPollSession(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.MaxClients = 1; c.PollInterval = 0 }, "counter")
	ctx := context.Background()
	o := ts.origin()
	tok := ts.token(o, auth.Identity{})
	a := ts.poll(ctx, control.PollRequest{Token: tok, Origin: o})
	if a.status != 200 || a.Session == "" || strings.Join(a.types()[:2], ",") != "hello,snapshot" {
		t.Fatalf("open: %+v", a)
	}
	if b := ts.poll(ctx, control.PollRequest{Token: tok, Origin: o}); b.status != 403 || !strings.Contains(b.Reason, "already used") {
		t.Errorf("token used twice: %+v", b)
	}
	if b := ts.poll(ctx, control.PollRequest{Token: ts.token(o, auth.Identity{}), Origin: o}); b.status != 503 || b.Error != control.ErrCodeTooMany {
		t.Errorf("a second session with max_clients = 1: %+v", b)
	}
	if b := ts.poll(ctx, control.PollRequest{Session: a.Session, Origin: "http://127.0.0.1:1"}); b.status != 403 || b.Error != control.ErrCodeForbidden {
		t.Errorf("session from another origin: %+v", b)
	}
	if b := ts.poll(ctx, control.PollRequest{Session: "nope", Origin: o}); b.status != 410 || b.Error != control.ErrCodeSession {
		t.Errorf("unknown session: %+v", b)
	}
	seq := a.Seq
	for range 5 {
		a = ts.poll(ctx, control.PollRequest{Session: a.Session, Since: &seq, Origin: o})
		seen := map[string]bool{}
		for _, f := range a.Frames {
			var r wire.Reading
			json.Unmarshal(f, &r)
			if r.Type != wire.TypeReading {
				continue
			}
			if r.Seq <= seq || r.Seq > a.Seq {
				t.Errorf("reading seq %d after since %d, answer seq %d", r.Seq, seq, a.Seq)
			}
			if seen[r.Sensor] {
				t.Errorf("two readings of %s in one answer", r.Sensor)
			}
			seen[r.Sensor] = true
		}
		seq = a.Seq
	}
	ahead := seq + 1000
	if b := ts.poll(ctx, control.PollRequest{Session: a.Session, Since: &ahead, Origin: o}); len(b.Frames) == 0 || !strings.Contains(string(b.Frames[len(b.Frames)-1]), "sequence ahead") {
		t.Errorf("since ahead: %+v", b)
	}
	if b := ts.poll(ctx, control.PollRequest{Session: a.Session, Origin: o}); strings.Join(b.types(), ",") != "hello,snapshot" && !strings.HasSuffix(strings.Join(b.types(), ","), "hello,snapshot") {
		t.Errorf("no since: %v", b.types())
	}
	if n := ts.Status().Clients; n != 1 {
		t.Errorf("Status.Clients = %d with one poll session", n)
	}
}

// TestPollTakeover: a page needs one poll at a time; a new poll of a
// session answers the one still waiting at once, with no frames.
func TestPollTakeover(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.PollInterval = 40 * time.Second; c.PollTimeout = 50 * time.Second })
	o := ts.origin()
	a := ts.poll(context.Background(), control.PollRequest{Token: ts.token(o, auth.Identity{}), Origin: o})
	// The next poll is held for poll_interval after that answer.
	first := make(chan pollAns, 1)
	go func() {
		first <- ts.poll(context.Background(), control.PollRequest{Session: a.Session, Since: &a.Seq, Origin: o})
	}()
	waitFor(t, "the first poll waiting", func() bool {
		ts.polls.mu.Lock()
		s := ts.polls.sessions[a.Session]
		ts.polls.mu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.waiter != nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan pollAns, 1)
	go func() { second <- ts.poll(ctx, control.PollRequest{Session: a.Session, Since: &a.Seq, Origin: o}) }()
	b := <-first
	if b.status != 200 || len(b.Frames) != 0 || b.Seq != a.Seq {
		t.Errorf("the poll taken over answered %+v, want no frames and seq %d", b, a.Seq)
	}
	cancel() // the supervisor stopping
	if c := <-second; c.status != 503 || c.Error != control.ErrCodeStopping {
		t.Errorf("a poll when the supervisor stops: %+v", c)
	}
}

// TestPollCommand: a poll session's command goes through the role check,
// the schema and the audit trail as a WebSocket's does, over the control
// socket's framing.
func TestPollCommand(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.MaxFrame = 300 }, "counter")
	o := ts.origin()
	waitFor(t, "the counter plugin.s commands", func() bool { _, ok := ts.hub.Command("helper_counter.add"); return ok })
	viewer := ts.poll(context.Background(), control.PollRequest{Token: ts.token(o, auth.Identity{User: "v"}), Origin: o})
	operator := ts.poll(context.Background(), control.PollRequest{Token: ts.token(o, auth.Identity{User: "op", Role: auth.RoleOperator}), Origin: o})

	sock := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ctlserver.Serve(ctx, ln, ts.Status, ts.ControlHandlers()...)
	ask := func(session, frame string) (int, string) {
		t.Helper()
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b, _ := json.Marshal(control.CommandRequest{Session: session, Origin: o, Remote: "192.0.2.7", Len: len(frame)})
		io.WriteString(c, control.KindCommand+" "+string(b)+"\n"+frame)
		r := bufio.NewReader(c)
		line, _ := r.ReadString('\n')
		st, _ := strconv.Atoi(strings.TrimSpace(line))
		rest, _ := io.ReadAll(r)
		return st, string(rest)
	}
	add := `{"type":"command","id":"k1","name":"helper_counter.add","args":{"a":2,"b":3}}`
	if st, body := ask(operator.Session, add); st != 200 || !strings.Contains(body, `"type":"result","id":"k1","ok":true,"value":{"plugin":"counter","sum":5}`) {
		t.Errorf("operator's command: %d %s", st, body)
	}
	if st, body := ask(viewer.Session, add); st != 200 || !strings.Contains(body, `"code":"forbidden"`) {
		t.Errorf("viewer's command: %d %s", st, body)
	}
	if st, body := ask(operator.Session, `{"type":"command","id":"k2","name":"helper_counter.add","args":{"a":200}}`); st != 200 || !strings.Contains(body, `"code":"bad_args"`) {
		t.Errorf("bad args: %d %s", st, body)
	}
	if st, body := ask(operator.Session, `{"type":"command","id":"k3","name":"helper_counter.add","args":{"a":1,"pad":"`+strings.Repeat("x", 300)+`"}}`); st != 413 {
		t.Errorf("over max_frame: %d %s", st, body)
	}
	if st, body := ask("gone", add); st != 410 {
		t.Errorf("unknown session: %d %s", st, body)
	}
	audit, _ := os.ReadFile(filepath.Join(ts.config().StateDir, AuditFile))
	for _, want := range []string{`"user":"op","role":"operator","remote":"192.0.2.7","command":"helper_counter.add","id":"k1"`, `"user":"v","role":"viewer","remote":"192.0.2.7","command":"helper_counter.add","id":"k1"`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit trail lacks %s:\n%s", want, audit)
		}
	}
}
