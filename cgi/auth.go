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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/trust"
)

// Error codes of authentication failures.
const (
	ErrUnauthorized = "unauthorized" // 401 (basic: with a challenge) or 403: not signed in
	ErrThrottled    = "throttled"    // 429: too many failed attempts for this user
)

// Throttling of failed Basic sign-ins. Failures are counted per user and
// address (maxFailures) and per user across all addresses
// (maxUserFailures); past either within failWindow of each other, that
// user is refused there, or everywhere, until failWindow has passed since
// the last failure, before any hashing. Other users at the same address
// (a NAT, a proxy) are not affected, and a success clears only its own
// user's count at its address.
//
// The stub lives for one request, so the counts are kept in AuthFailFile
// in the state directory: no supervisor needs to run for it. Check and
// record are one step under an exclusive flock of the file: an attempt is
// counted as a failure before its password is hashed and taken back once
// the password proves right. So, across processes, at most maxFailures
// hashes run for a user and address at once, and a stub killed while
// hashing leaves a failure behind.
const (
	AuthFailFile    = "authfail"
	maxFailures     = 5
	maxUserFailures = 4 * maxFailures
	failWindow      = time.Minute
	maxFailEntries  = 1024
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
func (s *Stub) authenticate(ctx context.Context, r Request, st *starter) (auth.Identity, *Response) {
	cfg := s.Config
	switch cfg.Auth {
	case config.AuthWebserver:
		if r.RemoteUser == "" {
			return refuse(403, ErrUnauthorized, "not signed in: auth = webserver, but the web server passed no REMOTE_USER; protect this CGI with the server's own authentication")
		}
		if !auth.ValidUser(r.RemoteUser) {
			return refuse(403, ErrUnauthorized, "REMOTE_USER "+quote(r.RemoteUser)+" is not a valid user name")
		}
		id := auth.Identity{User: r.RemoteUser, Role: auth.RoleOperator}
		if cfg.AuthUsers != "" {
			users, err := auth.ReadUsers(cfg.AuthUsers)
			if err != nil {
				st.log("%v", err)
				return refuse(500, ErrConfig, err.Error())
			}
			id.Role = auth.RoleViewer
			if u, ok := auth.Lookup(users, r.RemoteUser); ok {
				id.Role = u.Role
			}
		}
		return id, nil
	case config.AuthBasic:
		return s.basic(r, st)
	case config.AuthCommand:
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
	return auth.Identity{Role: auth.RoleViewer}, nil // none: an anonymous viewer
}

func refuse(status int, code, reason string) (auth.Identity, *Response) {
	resp := errorResponse(status, code, reason)
	return auth.Identity{}, &resp
}

// basic checks HTTP Basic credentials against auth_users.
func (s *Stub) basic(r Request, st *starter) (auth.Identity, *Response) {
	if r.Authorization == "" && (r.RemoteUser != "" || strings.HasPrefix(r.ServerSoftware, "busybox")) {
		// busybox httpd never passes Authorization; a server that did
		// the authentication itself passes REMOTE_USER instead.
		return refuse(500, ErrConfig, "auth = basic, but the web server does not pass the Authorization header to CGIs; use auth = webserver")
	}
	challenge := func(reason string) (auth.Identity, *Response) {
		_, resp := refuse(401, ErrUnauthorized, reason)
		resp.Header = append(resp.Header, Field{"WWW-Authenticate", `Basic realm="livecgi", charset="UTF-8"`})
		return auth.Identity{}, resp
	}
	user, pass, err := auth.ParseBasic(r.Authorization)
	switch {
	case errors.Is(err, auth.ErrNoCredentials):
		return challenge("sign in: this device asks for a user name and password")
	case errors.Is(err, auth.ErrHeaderTooLong):
		return refuse(431, ErrBadRequest, err.Error())
	case err != nil:
		return refuse(400, ErrBadRequest, err.Error())
	}
	if !auth.ValidUser(user) {
		return challenge("wrong user name or password") // no such user can exist
	}
	users, err := auth.ReadUsers(s.Config.AuthUsers)
	if err != nil {
		st.log("%v", err)
		return refuse(500, ErrConfig, err.Error())
	}
	failPath := filepath.Join(st.stateDir, AuthFailFile)
	addr := failAddr(r.RemoteAddr)
	wait, everywhere, err := chargeAttempt(failPath, user, addr, s.Now())
	if err != nil {
		st.log("count failed sign-ins: %v", err)
		return refuse(500, ErrStateDir, "state dir "+st.stateDir+": cannot count failed sign-ins")
	}
	if wait > 0 {
		secs := strconv.Itoa(int(wait.Seconds() + 1))
		where := " from " + addr
		if everywhere {
			where = ""
		}
		_, resp := refuse(429, ErrThrottled, "too many failed sign-ins as "+quote(user)+where+"; try again in "+secs+" s")
		resp.Header = append(resp.Header, Field{"Retry-After", secs})
		return auth.Identity{}, resp
	}
	u, ok := auth.CheckPassword(users, user, pass)
	if !ok {
		st.log("sign-in failed for user %s from %s", quote(user), r.RemoteAddr)
		return challenge("wrong user name or password")
	}
	settleAttempt(failPath, user, addr, s.Now())
	return auth.Identity{User: u.Name, Role: u.Role}, nil
}

// failEntry is one line of AuthFailFile, "user addr count unix-seconds":
// the failures of user from addr, or from every address when addr is
// anyAddr.
type failEntry struct {
	user, addr string
	count      int
	last       int64
	touched    bool // changed by this attempt: never evicted for room
}

const anyAddr = "*"

// failAddr is REMOTE_ADDR as a field of AuthFailFile.
func failAddr(addr string) string {
	if addr == "" || addr == anyAddr || len(addr) > 64 || strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' }) {
		return "-"
	}
	return addr
}

// failLog is AuthFailFile, read under an exclusive flock that is held
// until write.
type failLog struct {
	f       *os.File
	entries []failEntry
}

func lockFails(path string, now time.Time) (*failLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	var buf bytes.Buffer
	buf.ReadFrom(f)
	l := &failLog{f: f}
	for _, e := range parseFails(buf.Bytes()) {
		if now.Sub(time.Unix(e.last, 0)) <= failWindow { // older ones are forgotten
			l.entries = append(l.entries, e)
		}
	}
	return l, nil
}

// entry returns user's entry for addr, a new one if there is none.
func (l *failLog) entry(user, addr string) *failEntry {
	for i := range l.entries {
		if e := &l.entries[i]; e.user == user && e.addr == addr {
			return e
		}
	}
	l.entries = append(l.entries, failEntry{user: user, addr: addr})
	return &l.entries[len(l.entries)-1]
}

// write replaces the file's content with the entries that still count,
// keeping at most maxFailEntries: those with the most failures, then the
// newest. It unlocks and closes the file.
func (l *failLog) write() {
	defer l.f.Close()
	keep := l.entries[:0]
	for _, e := range l.entries {
		if e.count > 0 {
			keep = append(keep, e)
		}
	}
	for len(keep) > maxFailEntries {
		drop := -1 // the fewest failures, then the oldest; never this attempt's
		for i, e := range keep {
			if !e.touched && (drop < 0 || e.count < keep[drop].count || e.count == keep[drop].count && e.last < keep[drop].last) {
				drop = i
			}
		}
		keep = slices.Delete(keep, drop, drop+1)
	}
	var w bytes.Buffer
	for _, e := range keep {
		fmt.Fprintf(&w, "%s %s %d %d\n", e.user, e.addr, e.count, e.last)
	}
	// Written over the old content, then cut: a stub killed in between
	// leaves the new lines, not an empty file.
	l.f.WriteAt(w.Bytes(), 0)
	l.f.Truncate(int64(w.Len()))
}

// chargeAttempt decides whether user may try a password from addr and,
// if so, counts the attempt as a failure in the same locked step. If user
// is locked out it counts nothing and returns how long user must still
// wait, and whether that is at every address or only at addr.
func chargeAttempt(path, user, addr string, now time.Time) (wait time.Duration, everywhere bool, err error) {
	l, err := lockFails(path, now)
	if err != nil {
		return 0, false, err
	}
	locked := func(e *failEntry, limit int) time.Duration {
		if e.count < limit {
			return 0
		}
		return time.Unix(e.last, 0).Add(failWindow).Sub(now)
	}
	wait = locked(l.entry(user, addr), maxFailures)
	if all := locked(l.entry(user, anyAddr), maxUserFailures); all > wait {
		wait, everywhere = all, true
	}
	if wait > 0 {
		l.f.Close() // nothing to write
		return wait, everywhere, nil
	}
	for _, a := range []string{addr, anyAddr} {
		e := l.entry(user, a)
		e.count++
		e.last = now.Unix()
		e.touched = true
	}
	l.write()
	return 0, false, nil
}

// settleAttempt takes back the failure chargeAttempt counted for a right
// password: user's count at addr is cleared; its count across addresses
// loses this attempt only.
func settleAttempt(path, user, addr string, now time.Time) {
	l, err := lockFails(path, now)
	if err != nil {
		return
	}
	l.entry(user, addr).count = 0
	if all := l.entry(user, anyAddr); all.count > 0 {
		all.count--
	}
	l.write()
}

func parseFails(b []byte) []failEntry {
	var out []failEntry
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		n, err1 := strconv.Atoi(f[2])
		t, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 == nil && err2 == nil && n > 0 {
			out = append(out, failEntry{user: f[0], addr: f[1], count: n, last: t})
		}
	}
	return out
}

// runAuthCommand runs path (no shell) with env in its own process group,
// under a reaper (reaper.go) that kills the group once path exits, after
// timeout, or when the stub dies. Exit 0 with a first line "USER ROLE" on
// stdout signs USER in as ROLE; a non-zero exit refuses (status 403);
// anything else is the administrator's to fix (500).
func runAuthCommand(ctx context.Context, path string, env []string, timeout time.Duration) (auth.Identity, int, error) {
	if err := trust.Check(path, trust.Options{}); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return auth.Identity{}, 500, fmt.Errorf("auth_command %s does not exist", path)
		}
		return auth.Identity{}, 500, fmt.Errorf("auth_command refused: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The reaper kills the command's group on SIGTERM. Without /proc
	// there is no reaper: the command runs directly, and only it dies
	// with the stub, not what it started.
	cmd := exec.CommandContext(ctx, reaperPath)
	cmd.Args = []string{reaperArg0, path}
	stop := syscall.SIGTERM
	if _, err := os.Stat(reaperPath); err != nil {
		cmd, stop = exec.CommandContext(ctx, path), syscall.SIGKILL
	}
	cmd.Env, cmd.Dir = env, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: stop}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, stop) }
	cmd.WaitDelay = 2 * time.Second // a reaper that does not stop; a grandchild holding stdout
	out, reaperErr := &capped{max: 4096}, &capped{max: 512}
	cmd.Stdout, cmd.Stderr = out, reaperErr
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever it left behind
	}
	if ctx.Err() != nil {
		return auth.Identity{}, 500, fmt.Errorf("auth_command %s took longer than %v; killed", path, timeout)
	}
	if len(reaperErr.b) > 0 {
		return auth.Identity{}, 500, fmt.Errorf("auth_command %s: %s", path, bytes.TrimSpace(reaperErr.b))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return auth.Identity{}, 403, fmt.Errorf("not signed in (auth_command refused: %v)", ee.ProcessState)
	}
	if err != nil {
		return auth.Identity{}, 500, fmt.Errorf("auth_command %s: %v", path, err)
	}
	line, _, _ := bytes.Cut(out.b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) != 2 || !auth.ValidUser(f[0]) || !auth.ValidRole(f[1]) {
		return auth.Identity{}, 500, fmt.Errorf("auth_command %s printed %s: want \"USER ROLE\", ROLE viewer or operator", path, quote(string(line)))
	}
	return auth.Identity{User: f[0], Role: f[1]}, 0, nil
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
	if s.ConfigErr != nil || s.Config.Auth != config.AuthBasic {
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
