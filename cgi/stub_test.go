package cgi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
	"github.com/livecgi/livecgi/proto/wire"
)

func serve(t *testing.T, s *Stub, r Request) Response {
	t.Helper()
	var resp Response
	hangGuard(t, s.Deadline()+5*time.Second, "Serve", func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.Deadline())
		defer cancel()
		resp = s.Serve(ctx, r)
	})
	return resp
}

// wantError checks a JSON error answer and returns its reason.
func wantError(t *testing.T, resp Response, status int, code string) string {
	t.Helper()
	if resp.Status != status {
		t.Fatalf("status %d, want %d; body %s", resp.Status, status, resp.Body)
	}
	if ct := resp.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	var e ErrorBody
	dec := json.NewDecoder(strings.NewReader(string(resp.Body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %q: %v", resp.Body, err)
	}
	if e.Error != code || e.Reason == "" {
		t.Fatalf("error %q reason %q, want code %q and a reason", e.Error, e.Reason, code)
	}
	if len(resp.Body) > 700 {
		t.Errorf("error body is %d bytes", len(resp.Body))
	}
	return e.Reason
}

func TestServeBadRequests(t *testing.T) {
	e := mustEnv(t)
	s := New(e.conf, testAssets)
	if s.ConfigErr != nil {
		t.Fatal(s.ConfigErr)
	}
	tests := []struct {
		name   string
		req    Request
		status int
		code   string
	}{
		{"post", Request{Method: "POST", Host: "h"}, 405, ErrMethod},
		{"unknown query", Request{Host: "h", Query: "status"}, 400, ErrBadRequest},
		{"hostile query", Request{Host: "h", Query: strings.Repeat("%00<script>", 200)}, 400, ErrBadRequest},
		{"argv-style query", Request{Host: "h", Query: "-config+/etc/shadow"}, 400, ErrBadRequest},
		{"connect no host", Request{Query: "connect"}, 400, ErrBadRequest},
		{"connect bad host", Request{Host: "h h", Query: "connect"}, 400, ErrBadRequest},
		{"connect huge host", Request{Host: strings.Repeat("a.", 5000), Query: "connect"}, 400, ErrBadRequest},
		{"connect cross-site", Request{Host: "localhost", Origin: "http://evil.example", Query: "connect"}, 403, ErrCrossSite},
		{"connect null origin", Request{Host: "localhost", Origin: "null", Query: "connect"}, 403, ErrCrossSite},
		{"connect bad origin", Request{Host: "localhost", Origin: "javascript:alert(1)", Query: "connect"}, 400, ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, serve(t, s, tt.req), tt.status, tt.code)
		})
	}
	if n := startCount(t, e.state); n != 0 {
		t.Errorf("bad requests started the supervisor %d times", n)
	}
}

func TestServeFailures(t *testing.T) {
	t.Run("config", func(t *testing.T) {
		e := mustEnv(t, "bogus_key = 1")
		s := New(e.conf, testAssets)
		reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrConfig)
		if !strings.Contains(reason, e.conf) || !strings.Contains(reason, "bogus_key") {
			t.Errorf("reason %q does not name the file and key", reason)
		}
		// The page still loads, so the client can show the error.
		if resp := serve(t, s, Request{Host: "localhost"}); resp.Status != 200 {
			t.Errorf("page with a bad config: %d", resp.Status)
		}
	})
	t.Run("no binary", func(t *testing.T) {
		e := mustEnv(t)
		s := New(e.conf, testAssets)
		s.Config.Supervisor = filepath.Join(e.dir, "nowhere", "livecgid")
		reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrSupervisor)
		if want := "supervisor binary not found at " + s.Config.Supervisor; !strings.Contains(reason, want) {
			t.Errorf("reason %q, want it to say %q", reason, want)
		}
	})
	t.Run("not executable", func(t *testing.T) {
		e := mustEnv(t)
		s := New(e.conf, testAssets)
		s.Config.Supervisor = e.conf
		reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrSupervisor)
		if !strings.Contains(reason, "not executable") {
			t.Errorf("reason %q", reason)
		}
	})
	t.Run("exits at once", func(t *testing.T) {
		e := mustEnv(t)
		os.MkdirAll(e.state, 0o700)
		os.WriteFile(filepath.Join(e.state, "fake.fail"), []byte("plugins dir /nope: no such file\n"), 0o600)
		s := New(e.conf, testAssets)
		reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrSupervisor)
		for _, want := range []string{"exited with status 3", "plugins dir /nope: no such file", control.LogFile} {
			if !strings.Contains(reason, want) {
				t.Errorf("reason %q does not say %q", reason, want)
			}
		}
		log, _ := os.ReadFile(filepath.Join(e.state, control.StubLogFile))
		if !strings.Contains(string(log), "exited with status 3") {
			t.Errorf("stub log %q does not record the failure", log)
		}
	})
	t.Run("too slow", func(t *testing.T) {
		e := mustEnv(t)
		os.MkdirAll(e.state, 0o700)
		os.WriteFile(filepath.Join(e.state, "fake.delay"), []byte("1m"), 0o600)
		s := New(e.conf, testAssets)
		s.Config.StartTimeout = 300 * time.Millisecond
		resp := serve(t, s, Request{Host: "localhost", Query: "connect"})
		reason := wantError(t, resp, 503, ErrSupervisor)
		if !strings.Contains(reason, "did not answer") || resp.Get("Retry-After") == "" {
			t.Errorf("reason %q, Retry-After %q", reason, resp.Get("Retry-After"))
		}
	})
	t.Run("untrusted binary", func(t *testing.T) {
		e := mustEnv(t)
		fake, err := os.ReadFile(e.supervisor)
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(e.dir, "livecgid")
		os.WriteFile(bin, fake, 0o755)
		os.Chmod(bin, 0o777)
		s := New(e.conf, testAssets)
		s.Config.Supervisor = bin
		reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrSupervisor)
		for _, want := range []string{"not trusted", bin + " is writable by group or others", "chmod go-w " + bin} {
			if !strings.Contains(reason, want) {
				t.Errorf("reason %q does not say %q", reason, want)
			}
		}
		if n := startCount(t, e.state); n != 0 {
			t.Errorf("untrusted supervisor started %d times", n)
		}
	})
	t.Run("untrusted config", func(t *testing.T) {
		e := mustEnv(t)
		os.Chmod(e.conf, 0o660)
		s := New(e.conf, testAssets)
		reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrConfig)
		if !strings.Contains(reason, "not trusted") || !strings.Contains(reason, "chmod go-w "+e.conf) {
			t.Errorf("reason %q", reason)
		}
		if n := startCount(t, e.state); n != 0 {
			t.Errorf("supervisor started %d times under an untrusted config", n)
		}
	})
	t.Run("state dir", func(t *testing.T) {
		e := mustEnv(t)
		file := filepath.Join(e.dir, "file")
		os.WriteFile(file, nil, 0o600)
		t.Setenv("TMPDIR", file) // the fallback fails too
		s := New(e.conf, testAssets)
		s.Config.StateDir = filepath.Join(file, "state")
		reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrStateDir)
		if !strings.HasPrefix(reason, "state dir not writable: ") || !strings.Contains(reason, "not a directory") {
			t.Errorf("reason %q", reason)
		}
	})
}

// TestHTTP serves the stub under httptest and checks the three answers a
// browser gets, with the fake supervisor started on the first request.
func TestHTTP(t *testing.T) {
	e := mustEnv(t)
	s := New(e.conf, testAssets)
	srv := httptest.NewServer(handler(s))
	t.Cleanup(srv.Close)
	base := srv.URL + "/cgi-bin/live.cgi"
	get := func(query string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+query, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	page := get("", nil)
	body, _ := io.ReadAll(page.Body)
	if page.StatusCode != 200 || page.Header.Get("Content-Type") != "text/html; charset=utf-8" || string(body) != string(testAssets.Page()) {
		t.Fatalf("page: %d %q %q", page.StatusCode, page.Header.Get("Content-Type"), body)
	}
	if csp := page.Header.Get("Content-Security-Policy"); csp != testAssets.PageCSP() {
		t.Errorf("page CSP %q", csp)
	}
	if n := startCount(t, e.state); n != 1 {
		t.Errorf("page load started the supervisor %d times, want 1", n)
	}

	js := get("?client.js", nil)
	body, _ = io.ReadAll(js.Body)
	etag := js.Header.Get("ETag")
	if js.StatusCode != 200 || !strings.HasPrefix(js.Header.Get("Content-Type"), "text/javascript; charset=utf-8") ||
		!strings.Contains(js.Header.Get("Cache-Control"), "max-age=") || etag == "" || string(body) != string(testAssets.ClientJS()) {
		t.Fatalf("client.js: %d %v %q", js.StatusCode, js.Header, body)
	}
	if again := get("?client.js", map[string]string{"If-None-Match": etag}); again.StatusCode != 304 {
		t.Errorf("If-None-Match %s: %d, want 304", etag, again.StatusCode)
	}
	req, _ := http.NewRequest("HEAD", base+"?client.js", nil)
	if head, err := srv.Client().Do(req); err != nil || head.StatusCode != 200 || head.ContentLength != int64(len(testAssets.ClientJS())) {
		t.Errorf("HEAD: %v %v", head, err)
	}

	host := strings.TrimPrefix(srv.URL, "http://")
	origin := "http://" + host
	for _, hdr := range []map[string]string{nil, {"Origin": origin}} {
		resp := get("?connect", hdr)
		var c control.Connect
		dec := json.NewDecoder(resp.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil || resp.StatusCode != 200 {
			t.Fatalf("connect: %d %v", resp.StatusCode, err)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("connect Cache-Control %q", cc)
		}
		st, err := control.Probe(context.Background(), e.state)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(c.URL)
		if err != nil {
			t.Fatal(err)
		}
		if u.Scheme != "ws" || u.Host != "127.0.0.1:"+strconv.Itoa(st.Port) || u.Path != "/live" || u.Query().Get("token") != c.Token {
			t.Errorf("url %q, want ws://127.0.0.1:%d/live?token=%s", c.URL, st.Port, c.Token)
		}
		if c.Protocol != wire.Subprotocol {
			t.Errorf("protocol %q", c.Protocol)
		}
		ttl := time.Until(time.UnixMilli(c.Expires))
		if ttl <= 0 || ttl > s.Config.TokenTTL {
			t.Errorf("expires in %v, want within token_ttl %v", ttl, s.Config.TokenTTL)
		}
		secret, err := control.Secret(e.state)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := control.VerifyToken(secret, c.Token, origin, "e", time.Now()); err != nil {
			t.Errorf("token does not verify for %s and the fake's epoch: %v", origin, err)
		}
		if _, err := control.VerifyToken(secret, c.Token, "http://127.0.0.1:1", "e", time.Now()); err == nil {
			t.Error("token verifies for another origin")
		}
		if _, err := control.VerifyToken(secret, c.Token, origin, "another run", time.Now()); err == nil {
			t.Error("token verifies for another supervisor run")
		}
	}
	if n := startCount(t, e.state); n != 1 {
		t.Errorf("supervisor started %d times, want 1", n)
	}

	resp := get("?connect", map[string]string{"Origin": "http://evil.example"})
	if resp.StatusCode != 403 {
		t.Errorf("cross-site connect: %d", resp.StatusCode)
	}
}

// TestServeConcurrentColdStart: many first requests in one process start
// one supervisor, and all get its port.
func TestServeConcurrentColdStart(t *testing.T) {
	e := mustEnv(t)
	s := New(e.conf, testAssets)
	const n = 50
	var wg sync.WaitGroup
	urls := make([]string, n)
	hangGuard(t, 30*time.Second, "50 connects", func() {
		for i := range n {
			wg.Go(func() {
				resp := s.Serve(context.Background(), Request{Host: "127.0.0.1:8080", Query: "connect"})
				var c control.Connect
				if err := json.Unmarshal(resp.Body, &c); err != nil || resp.Status != 200 {
					t.Errorf("request %d: %d %s", i, resp.Status, resp.Body)
					return
				}
				urls[i], _, _ = strings.Cut(c.URL, "/live")
			})
		}
		wg.Wait()
	})
	if c := startCount(t, e.state); c != 1 {
		t.Errorf("supervisor exec'd %d times, want 1", c)
	}
	if pids := testkit.Supervisors(e.state); len(pids) != 1 {
		t.Errorf("supervisors running: %v, want one", pids)
	}
	for i, u := range urls {
		if u != urls[0] {
			t.Errorf("request %d got %q, request 0 %q", i, u, urls[0])
		}
	}
}

// TestHostNotAllowed: a page on a name outside allowed_hosts (DNS rebinding:
// evil.example made to resolve to the device) gets neither the page, the
// client nor a token, and no supervisor is started for it.
func TestHostNotAllowed(t *testing.T) {
	e := mustEnv(t)
	s := New(e.conf, testAssets)
	for _, r := range []Request{
		{Host: "evil.example"},
		{Host: "evil.example:8080", Query: "client.js"},
		{Host: "evil.example", Query: "connect"},
		{Host: "evil.example", Origin: "http://evil.example", Query: "connect"},
		{Host: "EVIL.example.:80", Origin: "http://evil.example", Query: "connect"},
	} {
		reason := wantError(t, serve(t, s, r), 403, ErrHost)
		if !strings.Contains(reason, `host "evil.example`) || !strings.Contains(reason, "allowed_hosts in "+e.conf) {
			t.Errorf("%+v: reason %q does not name the host and how to allow it", r, reason)
		}
	}
	if n := startCount(t, e.state); n != 0 {
		t.Errorf("supervisor started %d times for a refused host", n)
	}
	for _, host := range []string{"localhost:8080", "127.0.0.1", "[::1]:8080"} {
		if resp := serve(t, s, Request{Host: host, Query: "connect"}); resp.Status != 200 {
			t.Errorf("Host %s: %d %s", host, resp.Status, resp.Body)
		}
	}

	e = mustEnv(t, "allowed_hosts = evil.example")
	s = New(e.conf, testAssets)
	if resp := serve(t, s, Request{Host: "evil.example", Origin: "http://evil.example", Query: "connect"}); resp.Status != 200 {
		t.Errorf("listed host: %d %s", resp.Status, resp.Body)
	}
	wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 403, ErrHost)
}

// TestStateDirSquatted: another local user who creates the fallback state
// dir first does not turn ?connect into an error.
func TestStateDirSquatted(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to make a directory of another user")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	squat := filepath.Join(tmp, "livecgi-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(squat, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(squat, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	e := mustEnv(t)
	file := filepath.Join(e.dir, "file")
	os.WriteFile(file, nil, 0o600)
	s := New(e.conf, testAssets)
	s.Config.StateDir = filepath.Join(file, "state") // not usable: the fallback is
	resp := serve(t, s, Request{Host: "127.0.0.1", Query: "connect"})
	if resp.Status != 200 {
		t.Fatalf("connect: %d %s", resp.Status, resp.Body)
	}
	dirs, _ := filepath.Glob(squat + "-*")
	if len(dirs) != 1 {
		t.Fatalf("private dirs %q, want one", dirs)
	}
	t.Cleanup(func() { testkit.KillSupervisors(dirs[0]) })
	if n := startCount(t, dirs[0]); n != 1 {
		t.Errorf("supervisor started %d times in %s", n, dirs[0])
	}
	if ents, _ := os.ReadDir(squat); len(ents) != 0 {
		t.Errorf("the other user's dir was written to: %v", ents)
	}
	// The next request finds the same dir and its running supervisor.
	if resp := serve(t, s, Request{Host: "127.0.0.1", Query: "connect"}); resp.Status != 200 || startCount(t, dirs[0]) != 1 {
		t.Errorf("second connect: %d %s, %d starts", resp.Status, resp.Body, startCount(t, dirs[0]))
	}
}

// TestConnectRefusalReadable: a page on another origin can read why ?connect
// refused it (Access-Control-Allow-Origin on the error, never credentials);
// an answer that grants something carries no CORS header.
func TestConnectRefusalReadable(t *testing.T) {
	e := mustEnv(t)
	s := New(e.conf, testAssets)
	tests := []struct {
		name, origin string
		status       int
		allow        string
	}{
		{"cross-site", "http://evil.example:8000", 403, "http://evil.example:8000"},
		{"opaque origin", "null", 403, "null"},
		{"malformed origin", "javascript:alert(1)", 400, ""},
		{"same origin", "http://localhost", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, s, Request{Host: "localhost", Origin: tt.origin, Query: "connect"})
			if resp.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.Status, tt.status, resp.Body)
			}
			if got := resp.Get("Access-Control-Allow-Origin"); got != tt.allow {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.allow)
			}
			if got := resp.Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("Access-Control-Allow-Credentials %q", got)
			}
		})
	}
	if resp := serve(t, s, Request{Host: "localhost", Origin: "http://evil.example"}); resp.Get("Access-Control-Allow-Origin") != "" {
		t.Error("the page carries Access-Control-Allow-Origin")
	}
}

// TestErrorsReadable: every error answer, whatever refused the request
// (allowed_hosts, the method, the query, ?ws, the poll transport), is
// readable by the request's origin as proto/README.md §1.1 says: with
// Access-Control-Allow-Origin, never credentials.
func TestErrorsReadable(t *testing.T) {
	e := mustEnv(t)
	s := New(e.conf, testAssets)
	const evil = "http://evil.example"
	tests := []struct {
		name   string
		req    Request
		status int
		code   string
	}{
		{"host not allowed, page", Request{Host: "evil.example", Origin: evil}, 403, ErrHost},
		{"host not allowed, client", Request{Host: "evil.example", Origin: evil, Query: "client.js"}, 403, ErrHost},
		{"host not allowed, connect", Request{Host: "evil.example", Origin: evil, Query: "connect"}, 403, ErrHost},
		{"host not allowed, poll", Request{Host: "evil.example", Origin: evil, Query: "poll&token=abc"}, 403, ErrHost},
		{"host not allowed, ws", Request{Host: "evil.example", Origin: evil, Query: "ws&token=abc", NPH: true}, 403, ErrHost},
		{"method", Request{Method: "PUT", Host: "localhost", Origin: evil, Query: "connect"}, 405, ErrMethod},
		{"bad query", Request{Host: "localhost", Origin: evil, Query: "bogus"}, 400, ErrBadRequest},
		{"ws under a plain name", Request{Host: "localhost", Origin: evil, Query: "ws&token=abc"}, 400, ErrBadRequest},
		{"cross-site poll", Request{Host: "localhost", Origin: evil, Query: "poll&token=abc"}, 403, ErrCrossSite},
		{"cross-site history", Request{Host: "localhost", Origin: evil, Query: "history=system.load1"}, 403, ErrCrossSite},
		{"bad history", Request{Host: "localhost", Origin: evil, Query: "history=load1"}, 400, ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, s, tt.req)
			wantError(t, resp, tt.status, tt.code)
			if got := resp.Get("Access-Control-Allow-Origin"); got != evil {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, evil)
			}
			if got := resp.Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("Access-Control-Allow-Credentials %q", got)
			}
		})
	}
}
