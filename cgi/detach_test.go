package cgi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
)

// boaWrapper runs the stub ($0) the way boa 0.94.13 does: umask 0177,
// SIGPIPE (and here SIGHUP and SIGINT) ignored, stderr /dev/null opened
// read-only, plus whatever fds the caller leaks in ExtraFiles.
const boaWrapper = `umask 0177; trap '' PIPE HUP INT; exec "$0" 2</dev/null`

// cgiEnv is a request's environment as a CGI server sets it.
func cgiEnv(query string) []string {
	return []string{
		"GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_PROTOCOL=HTTP/1.1",
		"SERVER_SOFTWARE=Boa/0.94.13",
		"REQUEST_METHOD=GET",
		"SCRIPT_NAME=/cgi-bin/live.cgi",
		"QUERY_STRING=" + query,
		"HTTP_HOST=127.0.0.1:8080",
		"HTTP_COOKIE=session=do-not-leak",
		"HTTP_USER_AGENT=test",
		"REMOTE_ADDR=127.0.0.1",
		"PATH=/usr/bin:/bin",
	}
}

// parseCGI splits a CGI answer into its Status code, headers and body.
func parseCGI(t *testing.T, out []byte) (int, textproto.MIMEHeader, []byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(out))
	h, err := textproto.NewReader(r).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("CGI answer %q: %v", out, err)
	}
	code, _ := strconv.Atoi(strings.Fields(h.Get("Status") + " 0")[0])
	body, _ := io.ReadAll(r)
	return code, h, body
}

// runStub runs the built stub once. It fails the test if the stub's
// stdout is not closed once it exits: a supervisor holding it would make
// the web server wait for ever.
func runStub(t *testing.T, bin string, env []string, wrap bool, extra ...*os.File) []byte {
	t.Helper()
	out, err := tryStub(bin, env, wrap, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tryStub is runStub for any goroutine.
func tryStub(bin string, env []string, wrap bool, extra ...*os.File) ([]byte, error) {
	cmd := exec.Command(bin)
	if wrap {
		cmd = exec.Command("/bin/sh", "-c", boaWrapper, bin)
	}
	cmd.Env = env
	cmd.ExtraFiles = extra
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.WaitDelay = 5 * time.Second // closes stdout if someone else holds it
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if errors.Is(err, exec.ErrWaitDelay) {
			return nil, errors.New("stub exited but its stdout stayed open: the supervisor kept it")
		}
		if err != nil {
			return nil, fmt.Errorf("stub: %v; output %q", err, out.Bytes())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return nil, errors.New("stub did not exit within 30s")
	}
	return out.Bytes(), nil
}

func mustConnect(t *testing.T, out []byte) control.Connect {
	t.Helper()
	c, err := parseConnect(out)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// parseConnect reads a CGI answer that must be a connect document.
func parseConnect(out []byte) (control.Connect, error) {
	var c control.Connect
	head, body, ok := bytes.Cut(out, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("Status: 200 ")) || !bytes.Contains(head, []byte("Content-Type: application/json")) ||
		json.Unmarshal(body, &c) != nil || c.URL == "" {
		return c, fmt.Errorf("connect answer: %q", out)
	}
	return c, nil
}

// TestBoaPremise checks that boaWrapper sets up what the detach test
// claims: a read-only stderr, an ignored SIGPIPE, umask 0177, a leaked pipe.
func TestBoaPremise(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	script := `umask 0177; trap '' PIPE HUP INT; exec 2</dev/null; grep -E '^(Umask|SigIgn)' /proc/self/status; readlink /proc/self/fd/3; grep flags /proc/self/fdinfo/2`
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.ExtraFiles = []*os.File{r}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	ign := sigIgn(t, s)
	if !strings.Contains(s, "Umask:\t0177") || ign&sigBit(syscall.SIGPIPE) == 0 || ign&sigBit(syscall.SIGHUP) == 0 ||
		!strings.Contains(s, "pipe:[") || !strings.Contains(s, "flags:\t0100000\n") && !strings.Contains(s, "flags:\t00\n") {
		t.Fatalf("wrapper does not look like boa:\n%s", s)
	}
}

func sigBit(s syscall.Signal) uint64 { return 1 << (uint(s) - 1) }

func sigIgn(t *testing.T, status string) uint64 {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:\t"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no SigIgn in %q", status)
	return 0
}

// TestDetach runs the built stub as boa would, with a leaked pipe and a
// cookie, and checks from /proc that the supervisor it started holds none
// of what the web server gave the stub.
func TestDetach(t *testing.T) {
	e := mustEnv(t)
	bin := mustBuildStub(t, e.conf)
	leakR, leakW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer leakR.Close()
	defer leakW.Close()

	out := runStub(t, bin, cgiEnv("connect"), true, leakR, leakW)
	mustConnect(t, out)
	st, err := control.Probe(context.Background(), e.state)
	if err != nil {
		t.Fatal(err)
	}
	proc := "/proc/" + strconv.Itoa(st.PID)

	ents, err := os.ReadDir(proc + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, ent := range ents {
		fd, _ := strconv.Atoi(ent.Name())
		seen[fd] = true
		target, _ := os.Readlink(proc + "/fd/" + ent.Name())
		if fd <= 2 && target != "/dev/null" {
			t.Errorf("fd %d is %s, want /dev/null", fd, target)
		}
		if strings.HasPrefix(target, "pipe:") {
			t.Errorf("supervisor holds fd %d = %s (leaked from the web server)", fd, target)
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		t.Errorf("supervisor lacks fd 0, 1 or 2: %v", seen)
	}
	info, _ := os.ReadFile(proc + "/fdinfo/2")
	if flags := fieldOf(string(info), "flags:"); flags == "" {
		t.Errorf("fdinfo/2: %q", info)
	} else if n, _ := strconv.ParseUint(flags, 8, 32); n&syscall.O_ACCMODE == syscall.O_RDONLY {
		t.Errorf("supervisor's stderr is read-only (flags %s): the web server's, not its own /dev/null", flags)
	}

	environ, _ := os.ReadFile(proc + "/environ")
	if string(environ) != "PATH=/usr/sbin:/usr/bin:/sbin:/bin\x00" {
		t.Errorf("supervisor environment %q", environ)
	}
	if cwd, _ := os.Readlink(proc + "/cwd"); cwd != "/" {
		t.Errorf("supervisor cwd %q, want /", cwd)
	}
	stat, _ := os.ReadFile(proc + "/stat")
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if fields[3] != strconv.Itoa(st.PID) {
		t.Errorf("supervisor session %s, want its own (%d)", fields[3], st.PID)
	}
	status, _ := os.ReadFile(proc + "/status")
	if u := fieldOf(string(status), "Umask:"); u != "0077" {
		t.Errorf("supervisor umask %s, want 0077", u)
	}
	// The fake is a Go program: it catches SIGPIPE whatever it inherits,
	// but keeps an inherited SIG_IGN for SIGHUP and SIGINT.
	ign := sigIgn(t, string(status))
	for _, s := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE} {
		if ign&sigBit(s) != 0 {
			t.Errorf("supervisor inherited %v ignored", s)
		}
	}
	if n := startCount(t, e.state); n != 1 {
		t.Errorf("supervisor started %d times", n)
	}

	// The page works the same way, and a second call starts nothing.
	code, h, body := parseCGI(t, runStub(t, bin, cgiEnv(""), true, leakR))
	if code != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" || len(body) == 0 {
		t.Errorf("page: %d %v", code, h)
	}
	if n := startCount(t, e.state); n != 1 {
		t.Errorf("supervisor started %d times", n)
	}
	log, _ := os.ReadFile(filepath.Join(e.state, control.StubLogFile))
	if lines := bytes.Count(log, []byte("\n")); lines != 1 || !bytes.Contains(log, []byte("started supervisor pid "+strconv.Itoa(st.PID))) {
		t.Errorf("stub log, want one line for the start:\n%s", log)
	}
}

func fieldOf(s, key string) string {
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestColdStartConcurrent: 50 stub processes at once on a cold state dir
// start exactly one supervisor.
func TestColdStartConcurrent(t *testing.T) {
	e := mustEnv(t)
	bin := mustBuildStub(t, e.conf)
	const n = 50
	hosts := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			out, err := tryStub(bin, cgiEnv("connect"), false)
			if err == nil {
				var c control.Connect
				if c, err = parseConnect(out); err == nil {
					hosts[i], _, _ = strings.Cut(c.URL, "/live")
				}
			}
			if err != nil {
				t.Errorf("stub %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if c := startCount(t, e.state); c != 1 {
		t.Errorf("supervisor exec'd %d times, want 1", c)
	}
	if pids := testkit.Supervisors(e.state); len(pids) != 1 {
		t.Errorf("supervisors running: %v, want one", pids)
	}
	for i, h := range hosts {
		if h != hosts[0] {
			t.Errorf("stub %d: %q, stub 0: %q", i, h, hosts[0])
		}
	}
}

// TestStale: a SIGKILLed supervisor leaves its socket and lock file; the
// next request starts a new one. The stub runs under net/http/cgi.Handler.
func TestStale(t *testing.T) {
	e := mustEnv(t)
	bin := mustBuildStub(t, e.conf)
	srv := httptest.NewServer(&cgi.Handler{Path: bin, Root: "/cgi-bin/live.cgi"})
	t.Cleanup(srv.Close)
	client := &http.Client{Timeout: 30 * time.Second}
	connect := func() control.Connect {
		t.Helper()
		resp, err := client.Get(srv.URL + "/cgi-bin/live.cgi?connect")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c control.Connect
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 {
			t.Fatalf("connect: %d %v", resp.StatusCode, err)
		}
		return c
	}
	c1 := connect()
	st1, err := control.Probe(context.Background(), e.state)
	if err != nil {
		t.Fatal(err)
	}
	testkit.KillAndReap(st1.PID)
	for _, f := range []string{control.ControlFile, control.LockFile} {
		if _, err := os.Stat(filepath.Join(e.state, f)); err != nil {
			t.Fatalf("the killed supervisor left no %s: %v", f, err)
		}
	}
	c2 := connect()
	st2, err := control.Probe(context.Background(), e.state)
	if err != nil {
		t.Fatal(err)
	}
	if st2.PID == st1.PID || c1.URL == c2.URL {
		t.Errorf("no new supervisor: pid %d → %d, %s → %s", st1.PID, st2.PID, c1.URL, c2.URL)
	}
	if n := startCount(t, e.state); n != 2 {
		t.Errorf("supervisor started %d times, want 2", n)
	}
}

// TestHostile runs the built stub with odd environments and argv: each
// gets a complete CGI answer, never a crash.
func TestHostile(t *testing.T) {
	e := mustEnv(t)
	bin := mustBuildStub(t, e.conf)
	big := strings.Repeat("A", 100000)
	tests := []struct {
		name string
		env  []string
		args []string
		code int
	}{
		{"2000-byte query", append(cgiEnv(strings.Repeat("%ff", 667)), "X=1"), nil, 400},
		{"argv words", cgiEnv("connect+now"), []string{"connect", "now", "-x"}, 400},
		{"huge env", append(cgiEnv("connect"), "HTTP_X_BIG="+big, "HTTP_HOST="+big), nil, 400},
		{"empty env", nil, nil, 400 /* no Host */},
		{"odd method", append(cgiEnv(""), "REQUEST_METHOD=DELETE"), nil, 405},
		{"binary junk", append(cgiEnv("connect"), "HTTP_ORIGIN=\xff\xfe", "HTTP_HOST=\x01"), nil, 400},
		{"rebound host", append(cgiEnv("connect"), "HTTP_HOST=evil.example", "HTTP_ORIGIN=http://evil.example"), nil, 403},
		{"rebound host, page", append(cgiEnv(""), "HTTP_HOST=evil.example:8080"), nil, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if tt.name == "empty env" {
				env = []string{"GATEWAY_INTERFACE=CGI/1.1", "QUERY_STRING=connect"} // without it: TestShell
			}
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = env
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			code, h, body := parseCGI(t, out)
			if code != tt.code || h.Get("Content-Length") != fmt.Sprint(len(body)) {
				t.Errorf("got %d %v %q, want %d", code, h, body, tt.code)
			}
			if strings.HasPrefix(tt.name, "rebound") && !strings.Contains(string(body), `"host_not_allowed"`) {
				t.Errorf("body %q, want host_not_allowed", body)
			}
		})
	}
}
