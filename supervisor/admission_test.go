package supervisor

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
)

// handOverServer is a web server that hands every connection over to ts
// as nph-live.cgi would (Supervisor.HandOver), once it has read the
// request's head; it returns its address.
func handOverServer(t *testing.T, ts *testSup) string {
	t.Helper()
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { web.Close() })
	go func() {
		for {
			c, err := web.Accept()
			if err != nil {
				return
			}
			var head []byte
			b := make([]byte, 1)
			for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
				if _, err := c.Read(b); err != nil {
					break
				}
				head = append(head, b[0])
			}
			if err := ts.HandOver(c, head); err != nil {
				c.Close()
			}
		}
	}()
	return web.Addr().String()
}

// TestOneAddressCannotLockOut: with max_clients = 50, one address that
// opens 60 long-poll sessions and never polls gets max_clients_per_addr
// of them, and a browser at another address still connects, over the
// WebSocket port and over long polling. An address's places are shared
// by every way in (poll sessions, the WebSocket port, hand-overs); a
// user signed in there has places of their own; a client that leaves
// gives its place back.
func TestOneAddressCannotLockOut(t *testing.T) {
	per := config.Default().MaxClientsPerAddr
	ts := startSup(t, func(c *config.Config) { c.MaxClients, c.MaxClientsPerAddr = 50, per; c.PollInterval = 0 })
	o := ts.origin()
	ctx := context.Background()
	open := func(remote string, id auth.Identity) pollAns {
		return ts.poll(ctx, control.PollRequest{Token: ts.token(o, id), Origin: o, Remote: remote})
	}
	opened, refused := 0, 0
	for range 60 {
		switch a := open("192.0.2.7", auth.Identity{}); {
		case a.status == 200:
			opened++
		case a.status == 503 && a.Error == control.ErrCodeTooMany && strings.Contains(a.Reason, "from your address"):
			refused++
		default:
			t.Fatalf("poll session from the flooding address: %+v", a)
		}
	}
	if opened != per || refused != 60-per {
		t.Fatalf("one address opened %d sessions, %d refused; want %d and %d", opened, refused, per, 60-per)
	}
	victim, err := ts.tryDialFrom("127.0.0.2", ts.url(o), o)
	if err != nil {
		t.Fatalf("a WebSocket from another address: %v", err)
	}
	victim.next("hello", is("hello"))
	if a := open("192.0.2.8", auth.Identity{}); a.status != 200 {
		t.Fatalf("a poll session from another address: %+v", a)
	}
	// 127.0.0.3: poll sessions, a WebSocket and a hand-over share its places.
	const addr = "127.0.0.3"
	web := handOverServer(t, ts)
	handOverURL := func() string {
		return "ws://" + web + "/live?token=" + ts.token("http://"+web, auth.Identity{})
	}
	for range per - 2 {
		if a := open(addr, auth.Identity{}); a.status != 200 {
			t.Fatalf("poll session from %s: %+v", addr, a)
		}
	}
	anon := func() string { return ts.urlFor(o, auth.Identity{}) }
	ws, err := ts.tryDialFrom(addr, anon(), o)
	if err != nil {
		t.Fatal(err)
	}
	ws.next("hello", is("hello"))
	ho, err := ts.tryDialFrom(addr, handOverURL(), "http://"+web)
	if err != nil {
		t.Fatalf("hand-over from %s: %v", addr, err)
	}
	ho.next("hello", is("hello"))
	for what, url := range map[string]string{"WebSocket": anon(), "hand-over": handOverURL()} {
		origin := o
		if what == "hand-over" {
			origin = "http://" + web
		}
		c, err := ts.tryDialFrom(addr, url, origin)
		if err != nil {
			t.Fatalf("%s past the cap: %v, want an upgrade closed with %d", what, err, wire.CloseTooMany)
		}
		if st := c.closed(); st != wire.CloseTooMany {
			t.Errorf("%s past the cap: closed with %d, want %d", what, st, wire.CloseTooMany)
		}
	}
	if a := open(addr, auth.Identity{}); a.status != 503 {
		t.Errorf("poll session past the cap: %+v", a)
	}
	if a := open(addr, auth.Identity{User: "ann", Role: auth.RoleOperator}); a.status != 200 {
		t.Errorf("a user signed in at a full address: %+v", a)
	}
	ws.conn.Close(1000, "")
	waitFor(t, "the WebSocket's place back", func() bool {
		c, err := ts.tryDialFrom(addr, anon(), o)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-c.in:
			return m["type"] == "hello"
		case <-time.After(5 * time.Second):
			return false
		}
	})
}

// TestPollNeverPolledEnds: a poll session that was opened and never
// polled again ends after pollUnused, and gives its place back; one
// that is polled lives on.
func TestPollNeverPolledEnds(t *testing.T) {
	ts := startSupWith(t, nil, func(c *config.Config) { c.PollInterval = 0; c.PollTimeout = time.Second },
		func(o *Options) { o.pollUnused = 300 * time.Millisecond })
	o := ts.origin()
	ctx := context.Background()
	idle := ts.poll(ctx, control.PollRequest{Token: ts.token(o, auth.Identity{}), Origin: o, Remote: "192.0.2.7"})
	used := ts.poll(ctx, control.PollRequest{Token: ts.token(o, auth.Identity{}), Origin: o, Remote: "192.0.2.7"})
	if idle.status != 200 || used.status != 200 {
		t.Fatalf("open: %+v, %+v", idle, used)
	}
	start := time.Now()
	seq := used.Seq
	ended := false
	for !ended {
		// The used one is polled (each poll waits up to poll_timeout).
		a := ts.poll(ctx, control.PollRequest{Session: used.Session, Since: &seq, Origin: o})
		if a.status != 200 {
			t.Fatalf("the polled session: %+v", a)
		}
		seq = a.Seq
		ts.polls.mu.Lock()
		_, left := ts.polls.sessions[idle.Session]
		ts.polls.mu.Unlock()
		ended = !left
		if time.Since(start) > 30*time.Second {
			t.Fatal("the session never polled is still there after 30s")
		}
	}
	if a := ts.poll(ctx, control.PollRequest{Session: idle.Session, Origin: o}); a.status != 410 {
		t.Errorf("a poll of the ended session: %+v, want 410", a)
	}
	// It leaves the sessions, then the hub: its place comes back.
	waitFor(t, "the polled session the only client", func() bool { return ts.Status().Clients == 1 })
}

func TestClientKey(t *testing.T) {
	for _, tt := range []struct{ user, remote, want string }{
		{"", "192.0.2.7", "192.0.2.7"},
		{"", "192.0.2.7:5555", "192.0.2.7"},
		{"ann", "192.0.2.7:5555", "192.0.2.7 ann"},
		{"", "[::ffff:192.0.2.7]:80", "192.0.2.7"},
		{"", "[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::/64"},
		{"", "fe80::1%eth0", "fe80::/64"},
		{"", "not an address", "not an address"},
	} {
		if got := clientKey(tt.user, tt.remote); got != tt.want {
			t.Errorf("clientKey(%q, %q) = %q, want %q", tt.user, tt.remote, got, tt.want)
		}
	}
}
