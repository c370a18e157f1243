package cgi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
)

// ConfigPath is the configuration file the stub reads, fixed at build
// time: -ldflags '-X github.com/livecgi/livecgi/cgi.ConfigPath=/path'. A
// missing file means the defaults.
var ConfigPath = "/etc/livecgi/livecgi.conf"

// Assets are the files the stub serves. Each func is called at most once
// per request.
type Assets struct {
	Page     func() []byte // the dashboard, HTML with the client inlined
	PageCSP  func() string // its Content-Security-Policy; nil for none
	ClientJS func() []byte // the JavaScript client
}

// Stub answers requests. Build one per process with New; its fields may be
// changed before the first Serve. Serve may be called from several
// goroutines (tests do) as long as the fields are not changed.
type Stub struct {
	Assets     Assets
	ConfigPath string        // passed to the supervisor as -config
	Config     config.Config // loaded from ConfigPath
	ConfigErr  error         // why ConfigPath could not be used; ?connect fails with it
	Now        func() time.Time
}

// New loads the configuration file at path (a missing file gives the
// defaults) and returns a Stub serving assets.
func New(path string, assets Assets) *Stub {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	cfg, err := config.Load(path)
	return &Stub{Assets: assets, ConfigPath: path, Config: cfg, ConfigErr: err, Now: time.Now}
}

// Deadline is the longest Serve can take with this configuration: the
// wait for another stub's start, a start of our own, and some slack.
func (s *Stub) Deadline() time.Duration {
	return 2*s.Config.StartTimeout + 4*time.Second
}

// DeadlineFor is Deadline for request r: longer for a poll, which waits
// up to poll_timeout, and a command, which waits for its result.
func (s *Stub) DeadlineFor(r Request) time.Duration {
	switch act, _ := ParseQuery(r.Query); act {
	case ActionPoll:
		return s.Deadline() + s.Config.PollTimeout + s.Config.PollInterval + 5*time.Second
	case ActionCommand:
		return s.Deadline() + s.Config.CommandTimeout + 5*time.Second
	case ActionHistory:
		return s.Deadline() + historyTimeout
	}
	return s.Deadline()
}

// pollURL is the poll transport's URL: the stub's own path (SCRIPT_NAME)
// with the query opening a session; relative to the connect document's
// URL when the server gave no path.
func pollURL(script, token string) string {
	if !strings.HasPrefix(script, "/") || strings.ContainsAny(script, "?#") {
		script = ""
	}
	return script + "?poll&token=" + token
}

// Serve answers one request. It starts the supervisor if need be (see
// doc.go); the page and the client are served even when that fails, since
// the client reports the ?connect error to the user. Every error answer
// is readable by the request's origin (proto/README.md §1.1).
func (s *Stub) Serve(ctx context.Context, r Request) Response {
	return s.serve(ctx, r).readableBy(r.Origin)
}

func (s *Stub) serve(ctx context.Context, r Request) Response {
	act, p, err := ParseParams(r.Query)
	switch {
	case act == ActionCommand && r.Method == "POST":
	case act != ActionCommand && (r.Method == "" || r.Method == "GET" || r.Method == "HEAD"): // WriteCGI drops the body of a HEAD answer
	case act == ActionCommand:
		resp := errorResponse(405, ErrMethod, fmt.Sprintf("method %s not allowed: a command is a POST", quote(r.Method)))
		resp.Header = append(resp.Header, Field{"Allow", "POST"})
		return resp
	default:
		resp := errorResponse(405, ErrMethod, fmt.Sprintf("method %s not allowed: use GET", quote(r.Method)))
		resp.Header = append(resp.Header, Field{"Allow", "GET, HEAD"})
		return resp
	}
	if err != nil {
		return errorResponse(400, ErrBadRequest, err.Error())
	}
	// Browsers always send a well-formed Host; without one (a plain
	// HTTP/1.0 tool) or with junk the page is served and ?connect refuses
	// it as a bad request.
	if h, err := ParseHost(r.Host); err == nil && !s.Config.HostAllowed(h.String()) {
		return s.hostRefused(h.String())
	}
	switch act {
	case ActionConnect:
		return s.connect(ctx, r)
	case ActionWS:
		return s.handOver(ctx, r)
	case ActionPoll:
		return s.poll(ctx, r, p)
	case ActionCommand:
		return s.command(ctx, r, p)
	case ActionHistory:
		return s.history(ctx, r, p)
	case ActionClientJS:
		s.warmUp(ctx)
		// text/javascript, as RFC 9239 says; lighttpd rewrites
		// application/javascript to it anyway.
		return s.asset(r, s.Assets.ClientJS, "text/javascript; charset=utf-8", "public, max-age=3600")
	default:
		if resp := s.pageAuth(ctx, r); resp != nil {
			return *resp
		}
		s.warmUp(ctx)
		resp := s.asset(r, s.Assets.Page, "text/html; charset=utf-8", "no-cache")
		if s.Assets.PageCSP != nil {
			resp.Header = append(resp.Header, Field{"Content-Security-Policy", s.Assets.PageCSP()})
		}
		return resp
	}
}

// warmUp starts the supervisor for a page or client load, so that the
// client's ?connect right after finds it running. Errors are for
// ?connect to report.
func (s *Stub) warmUp(ctx context.Context) {
	if s.ConfigErr != nil {
		return
	}
	if st, err := s.starter(); err == nil {
		st.ensure(ctx)
	}
}

func (s *Stub) asset(r Request, get func() []byte, ctype, cache string) Response {
	var body []byte
	if get != nil {
		body = get()
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	resp := Response{Status: 200, Header: []Field{
		{"Content-Type", ctype},
		{"Cache-Control", cache},
		{"ETag", etag},
	}, Body: body}
	if etagMatch(r.IfNoneMatch, etag) {
		resp.Status, resp.Body = 304, nil
	}
	return resp
}

// etagMatch reports whether an If-None-Match header lists etag.
func etagMatch(header, etag string) bool {
	if len(header) > 1024 {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// starter resolves the state directory and returns what starts the
// supervisor. Its log lines say why when the configured dir was not used.
func (s *Stub) starter() (*starter, error) {
	dir, fallback, err := control.StateDir(s.Config.StateDir)
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	bin := s.Config.Supervisor
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	cfg := s.Config
	cfg.Supervisor = bin
	st := &starter{cfg: cfg, configPath: s.ConfigPath, stateDir: dir}
	st.log = func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if fallback != nil {
			msg += fmt.Sprintf(" (state dir %s used because %v)", dir, fallback)
		}
		appendLog(filepath.Join(dir, control.StubLogFile), s.Now(), msg)
	}
	return st, nil
}

// site checks what every request for a token or a socket must pass: a
// well-formed Host and an Origin of the same site (TokenOrigin), on an
// allowed host, a usable config and state dir. It returns the origin, the
// host and the starter, or the answer that refuses r.
func (s *Stub) site(r Request) (origin string, host HostPort, st *starter, refused *Response) {
	origin, host, err := TokenOrigin(r)
	if err != nil {
		resp := originRefused(err)
		return "", host, nil, &resp
	}
	if s.ConfigErr != nil {
		resp := configRefused(s)
		return "", host, nil, &resp
	}
	// TokenOrigin has the Origin on the Host's host; checked all the same.
	if oh := strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://"); !s.Config.HostAllowed(oh) {
		resp := s.hostRefused(oh)
		return "", host, nil, &resp
	}
	st, err = s.starter()
	if err != nil {
		resp := stateDirRefused(err)
		return "", host, nil, &resp
	}
	return origin, host, st, nil
}

// admit signs r in and makes sure the supervisor runs: who r comes from,
// the supervisor's status and the secret tokens are minted with; or the
// answer that refuses r.
func (s *Stub) admit(ctx context.Context, r Request, st *starter) (auth.Identity, control.Status, []byte, *Response) {
	id, refused := s.authenticate(ctx, r, st)
	if refused != nil {
		return id, control.Status{}, nil, refused
	}
	status, err := st.ensure(ctx)
	if err != nil {
		resp := supervisorRefused(err)
		return id, status, nil, &resp
	}
	secret, err := control.Secret(st.stateDir)
	if err != nil {
		st.log("%v", err)
		resp := errorResponse(500, ErrStateDir, fmt.Sprintf("state dir %s: %v", st.stateDir, err))
		return id, status, nil, &resp
	}
	return id, status, secret, nil
}

func (s *Stub) connect(ctx context.Context, r Request) Response {
	origin, host, st, refused := s.site(r)
	if refused != nil {
		return *refused
	}
	id, status, secret, refused := s.admit(ctx, r, st)
	if refused != nil {
		return *refused
	}
	mint := func() (string, time.Time) {
		return control.MintToken(secret, origin, status.Epoch, s.Now(), s.Config.TokenTTL, id)
	}
	token, expires := mint()
	direct, usable := s.directBase(r, host, status)
	doc := control.Connect{
		URL:      direct + "/live?token=" + token,
		Token:    token,
		Expires:  expires.UnixMilli(),
		Protocol: control.Subprotocol,
	}
	// Each WebSocket transport has its own token: trying one must not
	// spend another's.
	if u, ok := samePortURL(r, host); ok && !noSocketKnown(st.stateDir, noSocketKey(r)) {
		t, _ := mint()
		doc.AddTransport(control.TransportSamePort, u+t)
	}
	if usable {
		doc.AddTransport(control.TransportWS, doc.URL)
	}
	t, _ := mint()
	doc.AddTransport(control.TransportPoll, pollURL(r.ScriptName, t))
	return jsonResponse(200, doc.JSON())
}

// originRefused answers a request whose Host or Origin TokenOrigin refused.
func originRefused(err error) Response {
	if errors.Is(err, errCrossSite) {
		return errorResponse(403, ErrCrossSite, err.Error())
	}
	return errorResponse(400, ErrBadRequest, err.Error())
}

func configRefused(s *Stub) Response {
	return errorResponse(500, ErrConfig, fmt.Sprintf("config file %s: %v", s.ConfigPath, s.ConfigErr))
}

func stateDirRefused(err error) Response {
	return errorResponse(500, ErrStateDir, "state dir not writable: "+strings.TrimPrefix(err.Error(), "state dir not usable: "))
}

// supervisorRefused answers a request when the supervisor could not be
// reached or started.
func supervisorRefused(err error) Response {
	var se *StartError
	if errors.As(err, &se) {
		resp := errorResponse(se.Status, ErrSupervisor, se.Reason)
		if se.Status == 503 {
			resp.Header = append(resp.Header, Field{"Retry-After", "2"})
		}
		return resp
	}
	return errorResponse(500, ErrSupervisor, err.Error())
}

// hostRefused answers a request naming a host outside allowed_hosts (DNS
// rebinding: a hostile site's name made to resolve to this device).
func (s *Stub) hostRefused(host string) Response {
	return errorResponse(403, ErrHost, fmt.Sprintf("host %s is not allowed: if this device is reached by that name, add it to allowed_hosts in %s",
		quote(host), s.ConfigPath))
}

// maxLog is the size past which the stub's log is moved to .old.
const maxLog = 64 << 10

// appendLog adds one line to the stub's log. Failing that, it carries on:
// the stub has nowhere else to write (boa's CGI stderr is read-only).
func appendLog(path string, now time.Time, msg string) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxLog {
		os.Rename(path, path+".old")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	msg = strings.ReplaceAll(msg, "\n", " ")
	f.WriteString(now.UTC().Format(time.RFC3339) + " live.cgi[" + strconv.Itoa(os.Getpid()) + "] " + msg + "\n")
}

// Main answers the one request of a CGI process from its environment on
// stdout, within Stub.Deadline whatever happens, and returns the exit code.
// cmd/live.cgi calls it.
func Main(assets Assets) int {
	s := New(ConfigPath, assets)
	r := RequestFromEnv(os.Getenv)
	r.Env = CGIEnv(os.Environ())
	if r.ScriptFilename == "" { // boa: the script is ./<name> in the working directory
		r.ScriptFilename = scriptFile(r.ScriptName, os.Args[0])
	}
	r.NPH = isNPH(os.Args[0]) || isNPH(r.ScriptName)
	r.Socket = os.Stdout
	r.Body = os.Stdin
	deadline := s.DeadlineFor(r)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	// A guard for what no context reaches (a hung file system): answer
	// anyway, and leave.
	var written atomic.Bool
	guard := time.AfterFunc(deadline+time.Second, func() {
		if written.CompareAndSwap(false, true) {
			errorResponse(503, ErrInternal, "live.cgi took too long; try again").readableBy(r.Origin).Write(os.Stdout, r.Method == "HEAD", r.NPH)
			os.Exit(1)
		}
	})
	defer guard.Stop()

	resp := s.Serve(ctx, r)
	if !written.CompareAndSwap(false, true) {
		select {} // the guard is answering and exits
	}
	if err := resp.Write(os.Stdout, r.Method == "HEAD", r.NPH); err != nil {
		return 1
	}
	return 0
}
