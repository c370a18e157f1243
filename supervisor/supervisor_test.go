package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
)

func TestHelloSnapshotReadings(t *testing.T) {
	ts := startSup(t, nil, "counter")
	c := ts.dial(t)
	hello := c.next("hello", is("hello"))
	if hello["version"] != float64(wire.Version) || hello["epoch"] == "" {
		t.Errorf("hello = %v", hello)
	}
	snap := c.next("snapshot", is("snapshot"))
	if snap["mode"] != wire.SnapshotFull {
		t.Errorf("snapshot mode = %v", snap["mode"])
	}
	// The helper may still be starting: wait for its online status or a
	// hello that lists it.
	r := c.next("reading", is("reading", "sensor", "helper_counter.count"))
	if r["unit"] != "n" || r["seq"].(float64) < 1 {
		t.Errorf("reading = %v", r)
	}
	if d := time.Since(time.UnixMilli(int64(r["t"].(float64)))); d < 0 || d > 10*time.Second {
		t.Errorf("reading t is %v off", d)
	}
	prev := r["seq"].(float64)
	for range 5 {
		r := c.next("reading", is("reading", "sensor", "helper_counter.count"))
		if r["seq"].(float64) <= prev {
			t.Fatalf("seq went from %v to %v", prev, r["seq"])
		}
		prev = r["seq"].(float64)
	}
	// A second client now gets descriptors and the last values at once.
	c2 := ts.dial(t)
	h2 := c2.next("hello", is("hello"))
	if !strings.Contains(fmt.Sprint(h2["sensors"]), "helper_counter.count") || !strings.Contains(fmt.Sprint(h2["commands"]), "helper_counter.add") {
		t.Errorf("hello lacks the helper's descriptors: %v", h2)
	}
	s2 := c2.next("snapshot", is("snapshot"))
	if !strings.Contains(fmt.Sprint(s2["readings"]), "helper_counter.count") {
		t.Errorf("snapshot lacks the last reading: %v", s2)
	}
}

func online(c *tclient, plugin string) {
	c.t.Helper()
	c.next(plugin+" online", func(m map[string]any) bool {
		if m["type"] == "status" && m["plugin"] == plugin && m["state"] == wire.StateOnline {
			return true
		}
		return m["type"] == "hello" && strings.Contains(fmt.Sprint(m["plugins"]), "id:"+plugin+" state:online")
	})
}

func TestCommands(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.CommandTimeout = 300 * time.Millisecond }, "counter")
	c, other := ts.dial(t), ts.dial(t)
	online(c, "helper_counter")

	c.send(wire.CommandMsg{Type: "command", ID: "1", Name: "helper_counter.add", Args: map[string]any{"a": 2, "b": 3.5, "mode": "double"}})
	res := c.next("result 1", is("result", "id", "1"))
	if res["ok"] != true || fmt.Sprint(res["value"]) != "map[plugin:counter sum:11]" {
		t.Errorf("result = %v", res)
	}

	tests := []struct {
		name string
		msg  wire.CommandMsg
		want string // error code, or "result" for a failed result
		text string
	}{
		{"unknown command", wire.CommandMsg{Name: "helper_counter.nope"}, wire.ErrUnknownCommand, "unknown command"},
		{"missing required", wire.CommandMsg{Name: "helper_counter.add", Args: map[string]any{}}, wire.ErrBadArgs, `"a" is required`},
		{"wrong type", wire.CommandMsg{Name: "helper_counter.add", Args: map[string]any{"a": "two"}}, wire.ErrBadArgs, "want a number, got text"},
		{"out of range", wire.CommandMsg{Name: "helper_counter.add", Args: map[string]any{"a": 101}}, wire.ErrBadArgs, "out of range"},
		{"not in enum", wire.CommandMsg{Name: "helper_counter.add", Args: map[string]any{"a": 1, "mode": "triple"}}, wire.ErrBadArgs, "not one of"},
		{"bool as text", wire.CommandMsg{Name: "helper_counter.add", Args: map[string]any{"a": 1, "neg": "yes"}}, wire.ErrBadArgs, "want true or false"},
		{"unknown arg", wire.CommandMsg{Name: "helper_counter.add", Args: map[string]any{"a": 1, "z": 1}}, wire.ErrBadArgs, `unknown argument "z"`},
		{"plugin error", wire.CommandMsg{Name: "helper_counter.fail"}, "result", "it failed, as asked"},
		{"blocks in Do", wire.CommandMsg{Name: "helper_counter.block"}, "result", "did not answer within 300ms"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.msg.Type, tt.msg.ID = "command", fmt.Sprint("t", i)
			c.send(tt.msg)
			m := c.next("answer to "+tt.msg.ID, func(m map[string]any) bool {
				return (m["type"] == "error" || m["type"] == "result") && m["id"] == tt.msg.ID
			})
			if tt.want == "result" {
				if m["type"] != "result" || m["ok"] != false || !strings.Contains(fmt.Sprint(m["error"]), tt.text) {
					t.Errorf("got %v, want a failed result with %q", m, tt.text)
				}
				return
			}
			if m["type"] != "error" || m["code"] != tt.want || !strings.Contains(fmt.Sprint(m["message"]), tt.text) {
				t.Errorf("got %v, want error %s with %q", m, tt.want, tt.text)
			}
		})
	}
	// Results go to the asker only; the other client still gets readings.
	other.next("a reading after the commands", is("reading", "sensor", "helper_counter.count"))
	for len(other.in) > 0 {
		if m := <-other.in; m["type"] == "result" || m["type"] == "error" {
			t.Errorf("other client got %v", m)
		}
	}
}

func TestBadFrames(t *testing.T) {
	ts := startSup(t, nil, "counter")
	c := ts.dial(t)
	bystander := ts.dial(t)
	online(c, "helper_counter")
	tests := []struct {
		name  string
		typ   websocket.MessageType
		frame string
		code  string
	}{
		{"malformed JSON", websocket.MessageText, `{"type":"command",`, wire.ErrBadJSON},
		{"not an object", websocket.MessageText, `[1,2]`, wire.ErrBadJSON},
		{"unknown type", websocket.MessageText, `{"type":"launch"}`, wire.ErrUnknownType},
		{"no type", websocket.MessageText, `{"id":"1"}`, wire.ErrBadMessage},
		{"unknown field", websocket.MessageText, `{"type":"resume","epoch":"x","seq":1,"extra":true}`, wire.ErrBadMessage},
		{"command without id", websocket.MessageText, `{"type":"command","name":"helper_counter.add"}`, wire.ErrBadMessage},
		{"binary frame", websocket.MessageBinary, `{"type":"resume"}`, wire.ErrBadMessage},
		{"unknown sensor", websocket.MessageText, `{"type":"subscribe","sensors":["nope.nothing"]}`, wire.ErrUnknownSensor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.sendRaw(tt.typ, []byte(tt.frame))
			m := c.next("error "+tt.code, is("error"))
			if m["code"] != tt.code || m["message"] == "" {
				t.Errorf("got %v, want code %s", m, tt.code)
			}
		})
	}
	// Still served after all that (re-subscribe to everything first).
	c.send(wire.Subscribe{Type: "subscribe"})
	c.next("reading", is("reading", "sensor", "helper_counter.count"))

	// An oversized frame closes that client with 1009, nobody else.
	c.sendRaw(websocket.MessageText, bytes.Repeat([]byte(" "), 70<<10))
	if got := c.closed(); got != websocket.StatusMessageTooBig {
		t.Errorf("close status after a 70 KiB frame = %v, want 1009", got)
	}
	bystander.next("reading after the other's oversized frame", is("reading", "sensor", "helper_counter.count"))
}

func TestSlowClientIsClosedOthersCarryOn(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.WriteTimeout = 500 * time.Millisecond }, "big")
	// A client that never reads, with a tiny receive buffer.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stuck, _, err := websocket.Dial(ctx, ts.url(ts.origin()), &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol}, HTTPHeader: http.Header{"Origin": {ts.origin()}},
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.CloseNow()
	healthy := ts.dial(t)
	waitFor(t, "the stuck client to be closed as too slow", func() bool { return ts.hub.Counters().TooSlow.Load() > 0 })
	waitFor(t, "the stuck client to be detached", func() bool { return ts.hub.ClientCount() == 1 })
	// The healthy client reads on, getting the newest values.
	healthy.next("reading after the stuck client went", is("reading", "sensor", "helper_big.label"))
	if !strings.Contains(ts.logs.String(), "client too slow") {
		t.Error("log does not say the client was too slow")
	}
}

func TestVanishedClientIsDropped(t *testing.T) {
	ts := startSup(t, nil, "counter")
	c := ts.dial(t)
	c.next("hello", is("hello"))
	waitFor(t, "client attached", func() bool { return ts.hub.ClientCount() == 1 })
	c.conn.CloseNow() // no close frame: the TCP connection just goes
	waitFor(t, "client detached", func() bool { return ts.hub.ClientCount() == 0 })
}

func TestDeadClientDroppedByPing(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.PingInterval = 200 * time.Millisecond }, "counter")
	// A raw TCP client that completes the upgrade and then never answers
	// anything, pings included.
	u := ts.url(ts.origin())
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: livecgi.v1\r\n\r\n",
		u[len("ws://")+len(ts.addr):], ts.addr, ts.origin())
	waitFor(t, "raw client attached", func() bool { return ts.hub.ClientCount() == 1 })
	waitFor(t, "dead client dropped", func() bool { return ts.hub.ClientCount() == 0 })
}

func TestTokens(t *testing.T) {
	ts := startSup(t, nil)
	o := ts.origin()
	expired, _ := control.MintToken(ts.secret, o, ts.Status().Epoch, time.Now().Add(-2*time.Minute), time.Minute, auth.Identity{})
	forged, _ := control.MintToken([]byte("another secret of enough length!"), o, ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{})
	good := ts.url(o)
	if _, err := ts.tryDial(good, o); err != nil {
		t.Fatalf("good token: %v", err)
	}
	tests := []struct {
		name, url, origin string
	}{
		{"missing", "ws://" + ts.addr + "/live", o},
		{"malformed", "ws://" + ts.addr + "/live?token=abc", o},
		{"expired", "ws://" + ts.addr + "/live?token=" + expired, o},
		{"forged", "ws://" + ts.addr + "/live?token=" + forged, o},
		{"other origin (cross-site hijack)", ts.url(o), "http://evil.example"},
		{"same host other port", ts.url(o), "http://127.0.0.1:1"},
		{"reused", good, o},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ts.tryDial(tt.url, tt.origin)
			if err == nil || !strings.Contains(err.Error(), "status 403") {
				t.Errorf("dial = %v, want 403", err)
			}
		})
	}
}

func TestMaxClients(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.MaxClients = 2 })
	ts.dial(t).next("hello", is("hello"))
	ts.dial(t).next("hello", is("hello"))
	third := ts.dial(t)
	if got := third.closed(); got != wire.CloseTooMany {
		t.Errorf("third client closed with %v, want %d", got, wire.CloseTooMany)
	}
}

func TestResume(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.History = 50 }, "counter")
	c := ts.dial(t)
	hello := c.next("hello", is("hello"))
	epoch := hello["epoch"].(string)
	r := c.next("reading", is("reading", "sensor", "helper_counter.count"))
	seq := uint64(r["seq"].(float64))

	// Within the history: the missed readings, in order.
	time.Sleep(100 * time.Millisecond)
	c.send(wire.Resume{Type: "resume", Epoch: epoch, Seq: seq})
	snap := c.next("replay", is("snapshot", "mode", wire.SnapshotReplay))
	rs := snap["readings"].([]any)
	if len(rs) == 0 {
		t.Fatal("replay is empty")
	}
	last := seq
	for _, x := range rs {
		s := uint64(x.(map[string]any)["seq"].(float64))
		if s <= last {
			t.Fatalf("replay out of order: %d after %d", s, last)
		}
		last = s
	}
	if first := uint64(rs[0].(map[string]any)["seq"].(float64)); first != seq+1 {
		t.Errorf("replay starts at %d, want %d", first, seq+1)
	}

	// Beyond the history (50 readings at 50+/s): a full snapshot, and why.
	time.Sleep(1500 * time.Millisecond)
	c.send(wire.Resume{Type: "resume", Epoch: epoch, Seq: seq})
	snap = c.next("full snapshot", is("snapshot", "mode", wire.SnapshotFull))
	if !strings.Contains(fmt.Sprint(snap["reason"]), "history gone") {
		t.Errorf("reason = %v", snap["reason"])
	}
	c.send(wire.Resume{Type: "resume", Epoch: "other", Seq: 1})
	snap = c.next("full snapshot", is("snapshot", "mode", wire.SnapshotFull))
	if !strings.Contains(fmt.Sprint(snap["reason"]), "epoch changed") {
		t.Errorf("reason = %v", snap["reason"])
	}
}

func TestSubscribe(t *testing.T) {
	ts := startSup(t, nil, "counter")
	c := ts.dial(t)
	online(c, "helper_counter")
	c.send(wire.Subscribe{Type: "subscribe", Sensors: []string{"helper_counter.label"}})
	c.next("snapshot", is("snapshot", "reason", "subscribed"))
	for range 5 {
		m := c.next("reading", is("reading"))
		if m["sensor"] != "helper_counter.label" {
			t.Fatalf("got a reading of %v after subscribing to label only", m["sensor"])
		}
	}
}

func TestBadPlugins(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Describe = 500 * time.Millisecond })
	ts := startSup(t, nil, "counter", "crash", "garbage", "nodescribe", "baddesc", "wrongtype", "undeclared")
	c := ts.dial(t)
	state := func(plugin, st, reason string) {
		t.Helper()
		c.next(plugin+" "+st, func(m map[string]any) bool {
			return m["type"] == "status" && m["plugin"] == plugin && m["state"] == st && strings.Contains(fmt.Sprint(m["reason"]), reason)
		})
	}
	state("helper_crash", wire.StateRestarting, "handshake")
	state("helper_garbage", wire.StateRestarting, "handshake")
	state("helper_nodescribe", wire.StateRestarting, "describe: no answer within 500ms")
	state("helper_baddesc", wire.StateRestarting, `sensor id "Bad-Id"`)
	m := c.next("wrong-type reading", is("reading", "sensor", "helper_wrongtype.count"))
	if m["value"] != nil || !strings.Contains(fmt.Sprint(m["error"]), "plugin sent a text for a number sensor") {
		t.Errorf("wrong-type reading = %v", m)
	}
	// The good plugin carries on through all of it.
	c.next("good reading", is("reading", "sensor", "helper_counter.count"))
	if strings.Count(ts.logs.String(), `reading for undeclared sensor \"nope\"`) != 1 {
		t.Error("undeclared sensor not logged exactly once")
	}
}

func TestCrashedPluginRestarts(t *testing.T) {
	ts := startSup(t, nil, "die")
	c := ts.dial(t)
	seen := []string{}
	for len(seen) < 4 {
		m := c.next("status", is("status", "plugin", "helper_die"))
		st := m["state"].(string)
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
	}
	want := []string{wire.StateOnline, wire.StateOffline, wire.StateRestarting, wire.StateOnline}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("states %v, want %v", seen, want)
	}
}

func TestHungPluginRestarts(t *testing.T) {
	ts := startSup(t, nil, "hang")
	c := ts.dial(t)
	c.next("hung", func(m map[string]any) bool {
		return m["type"] == "status" && m["state"] == wire.StateOffline && strings.Contains(fmt.Sprint(m["reason"]), "plugin hung")
	})
	online(c, "helper_hang")
}

func TestBuiltinSensors(t *testing.T) {
	ts := startSup(t, nil)
	c := ts.dial(t)
	// Each is sent once at first, then by exception: in either order.
	got := map[string]map[string]any{}
	c.next("rss and clients readings", func(m map[string]any) bool {
		if m["type"] == "reading" {
			got[fmt.Sprint(m["sensor"])] = m
		}
		return got["livecgid.rss_bytes"] != nil && got["livecgid.clients"] != nil
	})
	m := got["livecgid.rss_bytes"]
	if v, _ := m["value"].(float64); v < 1<<20 || m["unit"] != "B" {
		t.Errorf("rss = %v %v, want megabytes in B (proto/README.md, units)", m["value"], m["unit"])
	}
	if m := got["livecgid.clients"]; m["value"] != 1.0 {
		t.Errorf("clients = %v", m["value"])
	}
}

func TestShutdownLeavesNothing(t *testing.T) {
	base := runtime.NumGoroutine()
	ts := startSup(t, nil, "counter", "die")
	c := ts.dial(t)
	online(c, "helper_counter")
	if len(children()) == 0 {
		t.Fatal("no plugin process running")
	}
	ts.stop()
	if got := c.closed(); got != websocket.StatusGoingAway {
		t.Errorf("client closed with %v, want going away", got)
	}
	waitFor(t, "plugin processes to exit", func() bool { return len(children()) == 0 })
	waitFor(t, "goroutines to wind down", func() bool { return runtime.NumGoroutine() <= base+2 })
}

// rawUpgrade sends a WebSocket upgrade for path with the given Host and
// Origin headers over a plain TCP connection and returns the answer's
// status line and body.
func rawUpgrade(t *testing.T, addr, path, host, origin string) (status, body string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		path, host, origin, wire.Subprotocol)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.Status, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.Status, string(b)
}

// TestHostAllowed: an upgrade naming a host outside allowed_hosts (a page
// on a rebound name) is refused before its token is looked at, even with a
// valid token for its origin; IP literals and localhost get through.
func TestHostAllowed(t *testing.T) {
	ts := startSup(t, nil)
	_, port, _ := net.SplitHostPort(ts.addr)
	tok, _ := control.MintToken(ts.secret, "http://evil.example:"+port, ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{})
	status, body := rawUpgrade(t, ts.addr, "/live?token="+tok, "evil.example:"+port, "http://evil.example:"+port)
	if !strings.HasPrefix(status, "403") || !strings.Contains(body, `host "evil.example:`+port+`" is not in allowed_hosts`) {
		t.Fatalf("rebound host: %s %q, want 403 naming the host", status, body)
	}
	if !strings.Contains(ts.logs.String(), "upgrade refused: host not allowed") {
		t.Error("refusal not logged")
	}
	// IP literals and localhost are allowed by default.
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		o := "http://" + host
		tok, _ := control.MintToken(ts.secret, o, ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{})
		if status, body := rawUpgrade(t, ts.addr, "/live?token="+tok, host, o); !strings.HasPrefix(status, "101") {
			t.Errorf("Host %s: %s %q, want 101", host, status, body)
		}
	}
	// An allowed Host with an Origin elsewhere is refused too.
	tok, _ = control.MintToken(ts.secret, "http://evil.example", ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{})
	if status, _ := rawUpgrade(t, ts.addr, "/live?token="+tok, ts.addr, "http://evil.example"); !strings.HasPrefix(status, "403") {
		t.Errorf("origin on a refused host: %s, want 403", status)
	}
	ts.stop()

	// allowed_hosts = evil.example lets it in.
	ts = startSup(t, func(c *config.Config) { c.AllowedHosts = []string{"evil.example"} })
	_, port, _ = net.SplitHostPort(ts.addr)
	tok, _ = control.MintToken(ts.secret, "http://evil.example:"+port, ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{})
	if status, body := rawUpgrade(t, ts.addr, "/live?token="+tok, "evil.example:"+port, "http://evil.example:"+port); !strings.HasPrefix(status, "101") {
		t.Errorf("listed host: %s %q, want 101", status, body)
	}
}

// TestTokenAfterRestart: a token used once stays used after the supervisor
// restarts (its memory of used nonces is gone, but the token was minted for
// the previous run); a fresh token works.
func TestTokenAfterRestart(t *testing.T) {
	const origin = "http://127.0.0.1:8080"
	ts := startSup(t, nil)
	tok, _ := control.MintToken(ts.secret, origin, ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{})
	if _, err := ts.tryDial("ws://"+ts.addr+"/live?token="+tok, origin); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, err := ts.tryDial("ws://"+ts.addr+"/live?token="+tok, origin); err == nil || !strings.Contains(err.Error(), "status 403") {
		t.Fatalf("second use: %v, want 403", err)
	}
	ts.stop()

	ts = startSup(t, nil) // the same secret, as a restart on the same state dir
	_, err := ts.tryDial("ws://"+ts.addr+"/live?token="+tok, origin)
	if err == nil || !strings.Contains(err.Error(), "status 403") {
		t.Fatalf("used token after a restart: %v, want 403", err)
	}
	if !strings.Contains(ts.logs.String(), control.ErrTokenInvalid.Error()) {
		t.Errorf("refusal not logged as %q", control.ErrTokenInvalid)
	}
	if _, err := ts.tryDial(ts.url(origin), origin); err != nil {
		t.Fatalf("fresh token after a restart: %v", err)
	}
}
