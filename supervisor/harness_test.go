package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
)

// testSup is a supervisor running on a loopback port for one test.
type testSup struct {
	*Supervisor
	t       testing.TB
	addr    string
	secret  []byte
	dir     string // plugins dir
	cancel  context.CancelFunc
	done    chan error
	logs    *syncBuf
	stopped bool
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startSup runs a supervisor over a fresh plugins dir holding the helper
// plugins named by modes. edit may change the config first.
func startSup(t testing.TB, edit func(*config.Config), modes ...string) *testSup {
	t.Helper()
	return startSupOn(t, nil, edit, modes...)
}

// startSupOn is startSup with the listener passed through wrap (if not nil).
func startSupOn(t testing.TB, wrap func(net.Listener) net.Listener, edit func(*config.Config), modes ...string) *testSup {
	t.Helper()
	return startSupWith(t, wrap, edit, nil, modes...)
}

// startSupWith is startSupOn with the Options passed through opt (if not
// nil) before New.
func startSupWith(t testing.TB, wrap func(net.Listener) net.Listener, edit func(*config.Config), opt func(*Options), modes ...string) *testSup {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "plugins")
	state := filepath.Join(root, "state")
	for _, d := range []string{dir, state} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range modes {
		installHelper(t, dir, m)
	}
	cfg := config.Default()
	cfg.PluginsDir, cfg.StateDir, cfg.Listen = dir, state, "127.0.0.1:0"
	cfg.CommandTimeout = 2 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	logs := &syncBuf{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	secret := []byte("0123456789abcdef0123456789abcdef")
	opts := Options{Config: cfg, Secret: secret, Logger: log, Version: "test", Stats: 100 * time.Millisecond}
	if v, ok := testTimings.Load(t); ok {
		opts.timing = v.(*timing)
	}
	if opt != nil {
		opt(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testSup{Supervisor: s, t: t, addr: ln.Addr().String(), secret: secret, dir: dir, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { ts.done <- s.Run(ctx, ln) }()
	t.Cleanup(func() {
		ts.stop()
		if t.Failed() {
			t.Logf("supervisor log:\n%s", logs.String())
		}
	})
	return ts
}

// stop shuts the supervisor down and waits for Run to return.
func (ts *testSup) stop() {
	if ts.stopped {
		return
	}
	ts.stopped = true
	ts.cancel()
	select {
	case err := <-ts.done:
		if err != nil {
			ts.t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		ts.t.Error("supervisor did not stop within 20s")
	}
}

func (ts *testSup) origin() string { return "http://" + ts.addr }

// url returns a ws URL with a fresh token for origin, for an operator.
func (ts *testSup) url(origin string) string {
	return ts.urlFor(origin, auth.Identity{User: "test", Role: auth.RoleOperator})
}

// urlFor returns a ws URL with a fresh token for origin and id.
func (ts *testSup) urlFor(origin string, id auth.Identity) string {
	tok, _ := control.MintToken(ts.secret, origin, ts.Status().Epoch, time.Now(), time.Minute, id)
	return "ws://" + ts.addr + "/live?token=" + tok
}

// tclient is a test WebSocket client that reads every frame into a channel.
type tclient struct {
	t    testing.TB
	conn *websocket.Conn
	in   chan map[string]any
	err  chan error // the read error that ended the connection
}

func (ts *testSup) dial(t testing.TB) *tclient {
	t.Helper()
	c, err := ts.tryDial(ts.url(ts.origin()), ts.origin())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (ts *testSup) tryDial(url, origin string) (*tclient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol},
		HTTPHeader:   http.Header{"Origin": {origin}},
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: status %d: %w", resp.StatusCode, err)
		}
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	c := &tclient{t: ts.t, conn: conn, in: make(chan map[string]any, 4096), err: make(chan error, 1)}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.err <- err
				close(c.in)
				return
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				c.err <- fmt.Errorf("bad frame %q: %w", b, err)
				close(c.in)
				return
			}
			select {
			case c.in <- m:
			default: // test not reading: drop, like a slow consumer
			}
		}
	}()
	ts.t.Cleanup(func() { conn.CloseNow() })
	return c, nil
}

func (c *tclient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *tclient) sendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	if err := c.conn.Write(context.Background(), typ, b); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next frame for which match is true, skipping others.
func (c *tclient) next(what string, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				c.t.Fatalf("waiting for %s: connection ended: %v", what, <-c.err)
			}
			if match(m) {
				return m
			}
		case <-deadline:
			c.t.Fatalf("no %s within 15s", what)
		}
	}
}

func is(typ string, kv ...string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		if m["type"] != typ {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(m[kv[i]]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// closed waits for the connection to end and returns its close status.
func (c *tclient) closed() websocket.StatusCode {
	c.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				return websocket.CloseStatus(<-c.err)
			}
		case <-timeout:
			c.t.Fatal("connection still open after 20s")
		}
	}
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 15*time.Second, what, cond)
}

// waitWithin polls cond until it holds or limit passes: the limit only
// bounds a failing test.
func waitWithin(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting %v for %s", limit, what)
}

// children returns the pids of live processes whose parent is this one.
func children() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == me && f[0] != "Z" {
			pid, _ := strconv.Atoi(e.Name())
			out = append(out, pid)
		}
	}
	return out
}
