package cgi

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
)

// connectAs asks s for a token and returns who it was minted for.
func connectAs(t *testing.T, s *Stub, e testEnv, r Request) auth.Identity {
	t.Helper()
	r.Host, r.Query = "127.0.0.1", "connect"
	resp := serve(t, s, r)
	if resp.Status != 200 {
		t.Fatalf("connect: %d %s", resp.Status, resp.Body)
	}
	var c control.Connect
	if err := json.Unmarshal(resp.Body, &c); err != nil {
		t.Fatal(err)
	}
	secret, err := control.Secret(e.state)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := control.VerifyToken(secret, c.Token, "http://127.0.0.1", mustEpoch(t, e.state), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return claims.Identity
}

func basicHeader(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// mustUsers writes a users file (mode 0600) with the given "name role
// password" entries.
func mustUsers(t *testing.T, entries ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	for _, e := range entries {
		f := strings.SplitN(e, " ", 3)
		hash, err := auth.HashPassword(f[2])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := auth.SetUser(path, auth.User{Name: f[0], Role: f[1], Hash: hash}); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestAuthNone(t *testing.T) {
	e := mustEnv(t)
	s := New(e.conf, testAssets)
	if id := connectAs(t, s, e, Request{RemoteUser: "alice"}); id != (auth.Identity{Role: auth.RoleViewer}) {
		t.Errorf("auth = none: %+v, want an anonymous viewer", id)
	}
}

func TestAuthWebserver(t *testing.T) {
	e := mustEnv(t, "auth = webserver")
	s := New(e.conf, testAssets)
	reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 403, ErrUnauthorized)
	if !strings.Contains(reason, "no REMOTE_USER") {
		t.Errorf("reason %q", reason)
	}
	wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect", RemoteUser: "a b"}), 403, ErrUnauthorized)
	if id := connectAs(t, s, e, Request{RemoteUser: "alice"}); id != (auth.Identity{User: "alice", Role: auth.RoleOperator}) {
		t.Errorf("without auth_users: %+v, want operator alice", id)
	}
	s.Config.AuthUsers = mustUsers(t, "vera viewer x", "otto operator y")
	for user, role := range map[string]string{"vera": auth.RoleViewer, "otto": auth.RoleOperator, "alice": auth.RoleViewer} {
		if id := connectAs(t, s, e, Request{RemoteUser: user}); id != (auth.Identity{User: user, Role: role}) {
			t.Errorf("with auth_users: %s is %+v, want %s", user, id, role)
		}
	}
}

// TestAuthBasic: a challenge without credentials (the page too), the
// right ones sign in, odd bytes in passwords work, a wrong one is counted
// and the sixth attempt is throttled even with the right password; an
// oversized header is refused before anything is parsed; busybox httpd
// gets a clear configuration error.
func TestAuthBasic(t *testing.T) {
	odd := "p:a\xff ss:"
	users := mustUsers(t, "alice operator "+odd, "vera viewer secret")
	e := mustEnv(t, "auth = basic", "auth_users = "+users)
	s := New(e.conf, testAssets)
	if s.ConfigErr != nil {
		t.Fatal(s.ConfigErr)
	}

	resp := serve(t, s, Request{Host: "localhost", Query: "connect", RemoteAddr: "10.0.0.1"})
	wantError(t, resp, 401, ErrUnauthorized)
	if got := resp.Get("WWW-Authenticate"); got != `Basic realm="livecgi", charset="UTF-8"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	if page := serve(t, s, Request{Host: "localhost"}); page.Status != 401 || page.Get("WWW-Authenticate") == "" {
		t.Errorf("page without credentials: %d %v", page.Status, page.Header)
	}
	if js := serve(t, s, Request{Host: "localhost", Query: "client.js"}); js.Status != 200 {
		t.Errorf("client.js: %d (it holds nothing secret)", js.Status)
	}
	if page := serve(t, s, Request{Host: "localhost", Authorization: basicHeader("vera", "secret")}); page.Status != 200 {
		t.Errorf("page with credentials: %d", page.Status)
	}
	if id := connectAs(t, s, e, Request{Authorization: basicHeader("alice", odd), RemoteAddr: "10.0.0.1"}); id != (auth.Identity{User: "alice", Role: auth.RoleOperator}) {
		t.Errorf("alice: %+v", id)
	}
	if id := connectAs(t, s, e, Request{Authorization: basicHeader("vera", "secret"), RemoteAddr: "10.0.0.1"}); id != (auth.Identity{User: "vera", Role: auth.RoleViewer}) {
		t.Errorf("vera: %+v", id)
	}

	// Bad input.
	for name, h := range map[string]string{
		"wrong password":   basicHeader("alice", "p:a"),
		"valid UTF-8 copy": basicHeader("alice", strings.ToValidUTF8(odd, "\uFFFD")),
		"empty password":   basicHeader("vera", ""),
		"unknown user":     basicHeader("mallory", "secret"),
	} {
		r := Request{Host: "localhost", Query: "connect", Authorization: h, RemoteAddr: "10.0.0.9"}
		if reason := wantError(t, serve(t, s, r), 401, ErrUnauthorized); !strings.Contains(reason, "wrong user name or password") {
			t.Errorf("%s: %q", name, reason)
		}
	}
	wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect", Authorization: "Basic !!!", RemoteAddr: "10.0.0.2"}), 400, ErrBadRequest)
	// 1 MB: refused unparsed. The users file is made unreadable to show
	// that it is not even looked at.
	s2 := *s
	s2.Config.AuthUsers = "/nonexistent/users"
	huge := "Basic " + strings.Repeat("QUFB", 1<<18)
	if reason := wantError(t, serve(t, &s2, Request{Host: "localhost", Query: "connect", Authorization: huge, RemoteAddr: "10.0.0.3"}), 431, ErrBadRequest); !strings.Contains(reason, "over 1024 bytes") {
		t.Errorf("1 MB header: %q", reason)
	}

	// One failure of vera's from 10.0.0.9 so far; the fifth locks her out
	// there, even for the right password; another address is not
	// affected.
	for range maxFailures - 1 {
		wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect", Authorization: basicHeader("vera", "guess"), RemoteAddr: "10.0.0.9"}), 401, ErrUnauthorized)
	}
	resp = serve(t, s, Request{Host: "localhost", Query: "connect", Authorization: basicHeader("vera", "secret"), RemoteAddr: "10.0.0.9"})
	if reason := wantError(t, resp, 429, ErrThrottled); !strings.Contains(reason, `too many failed sign-ins as "vera" from 10.0.0.9; try again in`) {
		t.Errorf("throttled: %q", reason)
	}
	if ra, err := strconv.Atoi(resp.Get("Retry-After")); err != nil || ra < 1 || ra > 61 {
		t.Errorf("Retry-After %q", resp.Get("Retry-After"))
	}
	connectAs(t, s, e, Request{Authorization: basicHeader("vera", "secret"), RemoteAddr: "10.0.0.1"})
	// A minute later it may try again.
	later := *s
	later.Now = func() time.Time { return time.Now().Add(failWindow + time.Second) }
	connectAs(t, &later, e, Request{Authorization: basicHeader("vera", "secret"), RemoteAddr: "10.0.0.9"})

	// busybox httpd withholds Authorization: say so rather than loop on
	// challenges.
	r := Request{Host: "localhost", Query: "connect", ServerSoftware: "busybox httpd/1.36.1"}
	if reason := wantError(t, serve(t, s, r), 500, ErrConfig); !strings.Contains(reason, "does not pass the Authorization header to CGIs; use auth = webserver") {
		t.Errorf("busybox: %q", reason)
	}
	// A users file others can read is refused.
	os.Chmod(users, 0o644)
	if reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect", Authorization: basicHeader("vera", "secret"), RemoteAddr: "10.0.0.1"}), 500, ErrConfig); !strings.Contains(reason, "readable by others") {
		t.Errorf("users file 0644: %q", reason)
	}
	log, _ := os.ReadFile(filepath.Join(e.state, control.StubLogFile))
	if strings.Contains(string(log), "secret") || strings.Contains(string(log), "Basic ") {
		t.Errorf("the stub's log holds credentials:\n%s", log)
	}
}

// mustScript writes an executable shell script.
func mustScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "check-session")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAuthCommand: auth_command gets the request's CGI variables and
// nothing else, signs in on exit 0 with "USER ROLE"; refuses an expired
// session; a hung, garbage-printing or missing program is refused with a
// reason, and a hung one is killed with everything it started.
func TestAuthCommand(t *testing.T) {
	dump := filepath.Join(t.TempDir(), "env")
	script := mustScript(t, `env > `+dump+`
case "$HTTP_COOKIE" in
*session=good*) echo "alice operator"; echo "more lines are ignored" ;;
*) echo "session expired" >&2; exit 1 ;;
esac
`)
	e := mustEnv(t, "auth = command", "auth_command = "+script)
	s := New(e.conf, testAssets)
	t.Setenv("LIVECGI_TEST_SECRET", "do not pass")
	env := CGIEnv(append(os.Environ(), "HTTP_COOKIE=lang=en; session=good", "REMOTE_ADDR=10.0.0.1", "HTTP_AUTHORIZATION=Basic eA==", "HTTP_PROXY=evil"))
	if id := connectAs(t, s, e, Request{Env: env}); id != (auth.Identity{User: "alice", Role: auth.RoleOperator}) {
		t.Errorf("good session: %+v", id)
	}
	got, _ := os.ReadFile(dump)
	for _, want := range []string{"HTTP_COOKIE=lang=en; session=good", "REMOTE_ADDR=10.0.0.1", "HTTP_AUTHORIZATION=Basic eA==", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"} {
		if !strings.Contains(string(got), want+"\n") {
			t.Errorf("auth_command's environment lacks %s:\n%s", want, got)
		}
	}
	for _, bad := range []string{"LIVECGI_TEST_SECRET", "HTTP_PROXY", "HOME="} {
		if strings.Contains(string(got), bad) {
			t.Errorf("auth_command's environment has %s", bad)
		}
	}
	expired := CGIEnv([]string{"HTTP_COOKIE=session=old"})
	if reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect", Env: expired}), 403, ErrUnauthorized); !strings.Contains(reason, "not signed in (auth_command refused: exit status 1)") {
		t.Errorf("expired session: %q", reason)
	}

	pids := filepath.Join(t.TempDir(), "pids")
	for name, tt := range map[string]struct{ body, want string }{
		"hangs":          {`echo $$ > ` + pids + `; sleep 600 & echo $! >> ` + pids + `; wait`, "took longer than 3s; killed"},
		"garbage":        {`printf '\377\376 <script>\n'`, `printed "\xff\xfe <script>": want "USER ROLE"`},
		"bad role":       {`echo "alice root"`, `want "USER ROLE", ROLE viewer or operator`},
		"nothing":        {`exit 0`, `printed "": want "USER ROLE"`},
		"user too long":  {`echo "` + strings.Repeat("a", 65) + ` viewer"`, `want "USER ROLE"`},
		"killed by kill": {`kill -9 $$`, "not signed in (auth_command refused: signal: killed)"},
	} {
		t.Run(name, func(t *testing.T) {
			s.Config.AuthCommand = mustScript(t, tt.body)
			status, code := 500, ErrConfig
			if name == "killed by kill" {
				status, code = 403, ErrUnauthorized
			}
			if reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), status, code); !strings.Contains(reason, tt.want) {
				t.Errorf("reason %q, want %q", reason, tt.want)
			}
		})
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if testkit.Alive(pid) {
			t.Errorf("the hung auth_command left pid %d running", pid)
		}
	}
	t.Run("missing", func(t *testing.T) {
		s.Config.AuthCommand = "/nonexistent/check-session"
		if reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrConfig); !strings.Contains(reason, "does not exist") {
			t.Errorf("reason %q", reason)
		}
	})
	t.Run("not executable", func(t *testing.T) {
		s.Config.AuthCommand = mustScript(t, "echo alice operator")
		os.Chmod(s.Config.AuthCommand, 0o644)
		if reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrConfig); !strings.Contains(reason, "permission denied") {
			t.Errorf("reason %q", reason)
		}
	})
	t.Run("writable by others", func(t *testing.T) {
		s.Config.AuthCommand = mustScript(t, "echo alice operator")
		os.Chmod(s.Config.AuthCommand, 0o777)
		if reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrConfig); !strings.Contains(reason, "writable by group or others") {
			t.Errorf("reason %q", reason)
		}
	})
	// auth_command is a program run with the stub's rights: trusted as
	// plugins are (trust.Check), its symlinks followed, never from a
	// directory others may write to, sticky or not.
	t.Run("link into a directory others may write", func(t *testing.T) {
		script := mustScript(t, "echo alice operator")
		os.Chmod(filepath.Dir(script), 0o777)
		link := filepath.Join(t.TempDir(), "check-session")
		if err := os.Symlink(script, link); err != nil {
			t.Fatal(err)
		}
		s.Config.AuthCommand = link
		if reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrConfig); !strings.Contains(reason, filepath.Dir(script)+" is writable by group or others") {
			t.Errorf("reason %q", reason)
		}
	})
	t.Run("in a sticky directory", func(t *testing.T) {
		s.Config.AuthCommand = mustScript(t, "echo alice operator")
		os.Chmod(filepath.Dir(s.Config.AuthCommand), 0o777|os.ModeSticky)
		if reason := wantError(t, serve(t, s, Request{Host: "localhost", Query: "connect"}), 500, ErrConfig); !strings.Contains(reason, "writable by group or others") {
			t.Errorf("reason %q", reason)
		}
	})
}

// TestAuthBasicPerUser: failures are counted per user and address, and
// per user across addresses. A success clears only its own user's count
// at its address, and a user locked out at an address (a NAT, a proxy)
// does not lock out the others there.
func TestAuthBasicPerUser(t *testing.T) {
	users := mustUsers(t, "alice operator right", "vera viewer secret", "bob viewer bobpw")
	e := mustEnv(t, "auth = basic", "auth_users = "+users)
	s := New(e.conf, testAssets)
	try := func(user, pass, addr string) Response {
		t.Helper()
		return serve(t, s, Request{Host: "localhost", Query: "connect", Authorization: basicHeader(user, pass), RemoteAddr: addr})
	}

	// 4 guesses at alice's password, then vera signs in from the same
	// address, over and over: vera's success does not clear alice's count.
	guesses := 0
	for round := 0; round < 3 && guesses <= maxFailures; round++ {
		for range 4 {
			guesses++
			resp := try("alice", fmt.Sprint("guess", guesses), "10.0.0.1")
			if guesses <= maxFailures {
				wantError(t, resp, 401, ErrUnauthorized)
				continue
			}
			if reason := wantError(t, resp, 429, ErrThrottled); !strings.Contains(reason, `too many failed sign-ins as "alice" from 10.0.0.1`) {
				t.Errorf("throttled: %q", reason)
			}
			break
		}
		connectAs(t, s, e, Request{Authorization: basicHeader("vera", "secret"), RemoteAddr: "10.0.0.1"})
	}
	if guesses != maxFailures+1 {
		t.Fatalf("alice was refused after %d guesses at 10.0.0.1, want %d", guesses, maxFailures+1)
	}
	// Locked out at 10.0.0.1: alice, even with the right password; not
	// vera, nor bob, who may still get it wrong and then right.
	wantError(t, try("alice", "right", "10.0.0.1"), 429, ErrThrottled)
	wantError(t, try("bob", "wrong", "10.0.0.1"), 401, ErrUnauthorized)
	if id := connectAs(t, s, e, Request{Authorization: basicHeader("bob", "bobpw"), RemoteAddr: "10.0.0.1"}); id.User != "bob" {
		t.Errorf("bob: %+v", id)
	}
	// alice from elsewhere is not locked out by 10.0.0.1, and her success
	// there clears only her count there.
	for range maxFailures - 1 {
		wantError(t, try("alice", "guess", "10.0.0.2"), 401, ErrUnauthorized)
	}
	connectAs(t, s, e, Request{Authorization: basicHeader("alice", "right"), RemoteAddr: "10.0.0.2"})
	wantError(t, try("alice", "right", "10.0.0.1"), 429, ErrThrottled)

	// Per user across addresses: guesses spread over addresses add up.
	// A success settles its address, not the count across addresses.
	failed := 2*maxFailures - 1
	for n := 3; failed < maxUserFailures; n++ {
		for range min(maxFailures, maxUserFailures-failed) {
			wantError(t, try("alice", "guess", fmt.Sprintf("10.0.0.%d", n)), 401, ErrUnauthorized)
			failed++
		}
	}
	resp := try("alice", "right", "10.0.1.1")
	if reason := wantError(t, resp, 429, ErrThrottled); !strings.Contains(reason, `too many failed sign-ins as "alice"; try again in`) {
		t.Errorf("throttled across addresses: %q", reason)
	}
	if ra, err := strconv.Atoi(resp.Get("Retry-After")); err != nil || ra < 1 || ra > 61 {
		t.Errorf("Retry-After %q", resp.Get("Retry-After"))
	}
	connectAs(t, s, e, Request{Authorization: basicHeader("vera", "secret"), RemoteAddr: "10.0.1.1"})
	later := *s
	later.Now = func() time.Time { return time.Now().Add(failWindow + time.Second) }
	connectAs(t, &later, e, Request{Authorization: basicHeader("alice", "right"), RemoteAddr: "10.0.0.1"})
}

// slowHash is a users-file hash of password with iter iterations.
func slowHash(password string, iter int) string {
	salt := []byte("0123456789abcdef")
	key, _ := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", iter, enc.EncodeToString(salt), enc.EncodeToString(key))
}

// TestAuthBasicParallel: 20 wrong passwords at once from a fresh address,
// each in its own stub process, get at most maxFailures password checks
// (a 401); the others are refused before hashing (429). The password's
// hash is made slow so that every stub is running before the first check
// ends.
func TestAuthBasicParallel(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	if _, err := auth.SetUser(users, auth.User{Name: "alice", Role: auth.RoleOperator, Hash: slowHash("right", 200_000)}); err != nil {
		t.Fatal(err)
	}
	e := mustEnv(t, "auth = basic", "auth_users = "+users)
	bin := mustBuildStub(t, e.conf)
	env := append(cgiEnv("connect"), "REMOTE_ADDR=192.0.2.7", "HTTP_AUTHORIZATION="+basicHeader("alice", "wrong"))
	const n = 20
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			out, err := tryStub(bin, env, false)
			if err != nil {
				t.Error(err)
				codes <- 0
				return
			}
			code, _, _ := parseCGI(t, out)
			codes <- code
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	t.Logf("answers: %v", count)
	if count[401] > maxFailures || count[401]+count[429] != n {
		t.Errorf("%d parallel wrong passwords: %d checked (401), %d refused (429); want at most %d checked, the rest refused", n, count[401], count[429], maxFailures)
	}
}

// TestAuthCommandDiesWithStub: a stub killed while its auth_command runs
// (SIGKILL; SIGTERM, which lighttpd sends when the client leaves) takes
// the command and everything it started with it.
func TestAuthCommandDiesWithStub(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			pids := filepath.Join(dir, "pids")
			script := mustScript(t, `echo $$ > `+pids+`.tmp; sleep 120 & echo $! >> `+pids+`.tmp; mv `+pids+`.tmp `+pids+`; wait`)
			e := mustEnv(t, "auth = command", "auth_command = "+script)
			cmd := exec.Command(mustBuildStub(t, e.conf))
			cmd.Env = cgiEnv("connect")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			var procs []int
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
				for _, pid := range procs {
					testkit.KillAndReap(pid)
				}
			})
			deadline := time.Now().Add(20 * time.Second)
			for delay := time.Millisecond; len(procs) < 2; delay = min(2*delay, 50*time.Millisecond) {
				if b, err := os.ReadFile(pids); err == nil {
					for _, f := range strings.Fields(string(b)) {
						pid, _ := strconv.Atoi(f)
						procs = append(procs, pid)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("auth_command did not start within 20s")
				}
				time.Sleep(delay)
			}
			cmd.Process.Signal(sig)
			<-exited
			deadline = time.Now().Add(10 * time.Second)
			for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
				var left []int
				for _, pid := range procs {
					if testkit.Alive(pid) {
						left = append(left, pid)
					}
				}
				if len(left) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("10s after the stub got %v, the auth_command's pids %v still run", sig, left)
				}
				time.Sleep(delay)
			}
		})
	}
}

// TestFailTableBounded: the failure table keeps at most maxFailEntries
// lines, and a flood of one-off names does not push out a lock-out.
func TestFailTableBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), AuthFailFile)
	now := time.Now()
	for range maxFailures {
		if wait, _, err := chargeAttempt(path, "alice", "10.0.0.1", now); wait != 0 || err != nil {
			t.Fatalf("charge: %v %v", wait, err)
		}
	}
	for i := range maxFailEntries {
		if _, _, err := chargeAttempt(path, fmt.Sprint("u", i), fmt.Sprintf("10.1.%d.%d", i/256, i%256), now); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != maxFailEntries {
		t.Errorf("%d lines, want %d", n, maxFailEntries)
	}
	if wait, everywhere, _ := chargeAttempt(path, "alice", "10.0.0.1", now); wait <= 0 || everywhere {
		t.Errorf("alice after the flood: wait %v, everywhere %v; want locked out at 10.0.0.1", wait, everywhere)
	}
}
