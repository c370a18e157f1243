package cgi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// Error codes of authentication failures.
const (
	ErrUnauthorized = "unauthorized" // 401 (basic: with a challenge) or 403: not signed in
	ErrThrottled    = "throttled"    // 429: too many failed attempts from this address
)

// Throttling of failed Basic attempts, per remote address: after
// maxFailures within failWindow of each other, that address is refused
// until failWindow has passed since its last failure. The stub lives for
// one request, so the counts are kept in AuthFailFile in the state
// directory, under flock: no supervisor needs to run for it, and a
// refused address costs no password hashing.
const (
	AuthFailFile = "authfail"
	maxFailures  = 5
	failWindow   = time.Minute
	maxFailAddrs = 1024
)

// AuthCommandTimeout bounds a run of auth_command; its whole process
// group is killed past it.
const AuthCommandTimeout = 3 * time.Second

// cgiVars are the CGI meta-variables auth_command gets besides every
// HTTP_* variable of the request; nothing else of the web server's
// environment is passed.
var cgiVars = []string{
	"AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "DOCUMENT_ROOT", "GATEWAY_INTERFACE", "HTTPS",
	"PATH_INFO", "QUERY_STRING", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "REMOTE_USER",
	"REQUEST_METHOD", "REQUEST_SCHEME", "REQUEST_URI", "SCRIPT_NAME", "SERVER_NAME", "SERVER_PORT",
	"SERVER_PROTOCOL", "SERVER_SOFTWARE",
}

// CGIEnv picks the request's CGI variables out of environ (os.Environ()),
// for auth_command.
func CGIEnv(environ []string) []string {
	out := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "HTTP_") && k != "HTTP_PROXY" || contains(cgiVars, k) {
			out = append(out, kv)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// authenticate decides who r is under the configured auth mode. It returns
// the identity to put in the token, or the answer to send instead.
func (s *Stub) authenticate(ctx context.Context, r Request, st *starter) (control.Identity, *Response) {
	cfg := s.Config
	switch cfg.Auth {
	case control.AuthWebserver:
		if r.RemoteUser == "" {
			return refuse(403, ErrUnauthorized, "not signed in: auth = webserver, but the web server passed no REMOTE_USER; protect this CGI with the server's own authentication")
		}
		if !control.ValidUser(r.RemoteUser) {
			return refuse(403, ErrUnauthorized, "REMOTE_USER "+quote(r.RemoteUser)+" is not a valid user name")
		}
		id := control.Identity{User: r.RemoteUser, Role: control.RoleOperator}
		if cfg.AuthUsers != "" {
			users, err := control.ReadUsers(cfg.AuthUsers)
			if err != nil {
				st.log("%v", err)
				return refuse(500, ErrConfig, err.Error())
			}
			id.Role = control.RoleViewer
			if u, ok := control.Lookup(users, r.RemoteUser); ok {
				id.Role = u.Role
			}
		}
		return id, nil
	case control.AuthBasic:
		return s.basic(r, st)
	case control.AuthCommand:
		id, status, err := runAuthCommand(ctx, cfg.AuthCommand, r.Env, AuthCommandTimeout)
		if err != nil {
			st.log("auth_command %s: %v (remote %s)", cfg.AuthCommand, err, r.RemoteAddr)
			code := ErrConfig
			if status == 403 {
				code = ErrUnauthorized
			}
			return refuse(status, code, err.Error())
		}
		return id, nil
	}
	return control.Identity{Role: control.RoleViewer}, nil // none: an anonymous viewer
}

func refuse(status int, code, reason string) (control.Identity, *Response) {
	resp := errorResponse(status, code, reason)
	return control.Identity{}, &resp
}

// basic checks HTTP Basic credentials against auth_users.
func (s *Stub) basic(r Request, st *starter) (control.Identity, *Response) {
	if r.Authorization == "" && (r.RemoteUser != "" || strings.HasPrefix(r.ServerSoftware, "busybox")) {
		// busybox httpd never passes Authorization; a server that did
		// the authentication itself passes REMOTE_USER instead.
		return refuse(500, ErrConfig, "auth = basic, but the web server does not pass the Authorization header to CGIs; use auth = webserver")
	}
	challenge := func(reason string) (control.Identity, *Response) {
		_, resp := refuse(401, ErrUnauthorized, reason)
		resp.Header = append(resp.Header, Field{"WWW-Authenticate", `Basic realm="livecgi", charset="UTF-8"`})
		return control.Identity{}, resp
	}
	user, pass, err := control.ParseBasic(r.Authorization)
	switch {
	case errors.Is(err, control.ErrNoCredentials):
		return challenge("sign in: this device asks for a user name and password")
	case errors.Is(err, control.ErrHeaderTooLong):
		return refuse(431, ErrBadRequest, err.Error())
	case err != nil:
		return refuse(400, ErrBadRequest, err.Error())
	}
	failPath := filepath.Join(st.stateDir, AuthFailFile)
	if wait := throttled(failPath, r.RemoteAddr, s.Now()); wait > 0 {
		_, resp := refuse(429, ErrThrottled, fmt.Sprintf("too many failed sign-ins from %s; try again in %d s", r.RemoteAddr, int(wait.Seconds()+1)))
		resp.Header = append(resp.Header, Field{"Retry-After", strconv.Itoa(int(wait.Seconds() + 1))})
		return control.Identity{}, resp
	}
	users, err := control.ReadUsers(s.Config.AuthUsers)
	if err != nil {
		st.log("%v", err)
		return refuse(500, ErrConfig, err.Error())
	}
	u, ok := control.CheckPassword(users, user, pass)
	if !ok {
		recordFailure(failPath, r.RemoteAddr, s.Now(), true)
		st.log("sign-in failed for user %s from %s", quote(user), r.RemoteAddr)
		return challenge("wrong user name or password")
	}
	recordFailure(failPath, r.RemoteAddr, s.Now(), false)
	return control.Identity{User: u.Name, Role: u.Role}, nil
}

// failEntry is one line of AuthFailFile: "addr count unix-seconds".
type failEntry struct {
	addr  string
	count int
	last  int64
}

// throttled returns how long addr must still wait, 0 if it may try.
func throttled(path, addr string, now time.Time) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, e := range parseFails(b) {
		if e.addr == addr && e.count >= maxFailures {
			if left := time.Unix(e.last, 0).Add(failWindow).Sub(now); left > 0 {
				return left
			}
		}
	}
	return 0
}

// recordFailure counts a failure of addr (failed) or forgets its
// failures (a success), under an exclusive flock of the file.
func recordFailure(path, addr string, now time.Time, failed bool) {
	if addr == "" {
		addr = "-"
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return
	}
	var buf bytes.Buffer
	buf.ReadFrom(f)
	var out []failEntry
	mine := failEntry{addr: addr}
	for _, e := range parseFails(buf.Bytes()) {
		if now.Sub(time.Unix(e.last, 0)) > failWindow {
			continue // forgotten
		}
		if e.addr == addr {
			mine = e
			continue
		}
		out = append(out, e)
	}
	if !failed && mine.count == 0 {
		return
	}
	if failed {
		mine.count++
		mine.last = now.Unix()
		out = append(out, mine)
	}
	if len(out) > maxFailAddrs {
		out = out[len(out)-maxFailAddrs:] // the oldest go first
	}
	var w bytes.Buffer
	for _, e := range out {
		fmt.Fprintf(&w, "%s %d %d\n", e.addr, e.count, e.last)
	}
	f.Truncate(0)
	f.WriteAt(w.Bytes(), 0)
}

func parseFails(b []byte) []failEntry {
	var out []failEntry
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, err1 := strconv.Atoi(f[1])
		t, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 == nil && err2 == nil {
			out = append(out, failEntry{f[0], n, t})
		}
	}
	return out
}

// runAuthCommand runs path (no shell) with env in its own process group,
// killed whole after timeout or once it exits. Exit 0 with a first line
// "USER ROLE" on stdout signs USER in as ROLE; a non-zero exit refuses
// (status 403); anything else is the administrator's to fix (500).
func runAuthCommand(ctx context.Context, path string, env []string, timeout time.Duration) (control.Identity, int, error) {
	if err := control.CheckTrusted(path, false); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return control.Identity{}, 500, fmt.Errorf("auth_command %s does not exist", path)
		}
		return control.Identity{}, 500, fmt.Errorf("auth_command refused: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path)
	cmd.Env, cmd.Dir = env, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 500 * time.Millisecond // a grandchild holding stdout
	out := &capped{max: 4096}
	cmd.Stdout = out
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever it left behind
	}
	if ctx.Err() != nil {
		return control.Identity{}, 500, fmt.Errorf("auth_command %s took longer than %v; killed", path, timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return control.Identity{}, 403, fmt.Errorf("not signed in (auth_command refused: %v)", ee.ProcessState)
	}
	if err != nil {
		return control.Identity{}, 500, fmt.Errorf("auth_command %s: %v", path, err)
	}
	line, _, _ := bytes.Cut(out.b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) != 2 || !control.ValidUser(f[0]) || !control.ValidRole(f[1]) {
		return control.Identity{}, 500, fmt.Errorf("auth_command %s printed %s: want \"USER ROLE\", ROLE viewer or operator", path, quote(string(line)))
	}
	return control.Identity{User: f[0], Role: f[1]}, 0, nil
}

// capped keeps the first max bytes written to it and drops the rest.
type capped struct {
	b   []byte
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// pageAuth asks for Basic credentials on the page itself under auth =
// basic, so that the browser prompts and then sends them with the page's
// ?connect; the other modes check at ?connect only.
func (s *Stub) pageAuth(ctx context.Context, r Request) *Response {
	if s.ConfigErr != nil || s.Config.Auth != control.AuthBasic {
		return nil
	}
	st, err := s.starter()
	if err != nil {
		return nil // ?connect reports it
	}
	_, resp := s.authenticate(ctx, r, st)
	if resp != nil && resp.Status == 401 {
		// A page, not a JSON document: what a browser shows after Cancel.
		resp.Header[0].Value = "text/plain; charset=utf-8"
		resp.Body = []byte("401 Unauthorized: sign in to see this device's dashboard.\n")
	}
	return resp
}
