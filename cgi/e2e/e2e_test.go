package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
	"github.com/livecgi/livecgi/proto/wire"
)

// TestMain makes this process the reaper of the supervisors the stubs
// start (they are orphaned when the stub exits), so cleanups can reap them.
func TestMain(m *testing.M) {
	testkit.Main(m, func() {
		if buildDir != "" {
			testkit.KillMatching(buildDir)
			os.RemoveAll(buildDir)
		}
	})
}

// server starts one web server on 127.0.0.1:port serving docroot, whose
// cgi-bin holds live.cgi; dir is for its config and logs.
type server struct {
	name, bin string
	cmd       func(bin, docroot, dir string, port int) *exec.Cmd
}

var servers = []server{
	{"busybox", "busybox", func(bin, docroot, dir string, port int) *exec.Cmd {
		return exec.Command(bin, "httpd", "-f", "-p", fmt.Sprintf("127.0.0.1:%d", port), "-h", docroot)
	}},
	{"lighttpd", "lighttpd", func(bin, docroot, dir string, port int) *exec.Cmd {
		conf := filepath.Join(dir, "lighttpd.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf(`server.modules = ("mod_cgi")
server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.errorlog = %q
mimetype.assign = (".html" => "text/html")
$HTTP["url"] =~ "^/cgi-bin/" { cgi.assign = ("" => "") }
`, docroot, port, filepath.Join(dir, "lighttpd.log"))), 0o600)
		return exec.Command(bin, "-D", "-f", conf)
	}},
	{"mini_httpd", "mini_httpd", func(bin, docroot, dir string, port int) *exec.Cmd {
		// -u root: as root, mini_httpd would switch to nobody, who
		// cannot enter the test's private temp dirs.
		return exec.Command(bin, "-D", "-p", strconv.Itoa(port), "-h", "127.0.0.1", "-d", docroot,
			"-c", "cgi-bin/*", "-u", "root", "-l", filepath.Join(dir, "mini_httpd.log"))
	}},
}

func TestServers(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			bin, err := exec.LookPath(srv.bin)
			if err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s not installed: %v", srv.bin, err)
				}
				t.Skipf("%s not installed", srv.bin)
			}
			testServer(t, srv, bin)
		})
	}
}

func testServer(t *testing.T, srv server, bin string) {
	e := mustEnv(t)
	port := mustStartServer(t, srv, bin, e)
	base := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)

	// Cold: many first contacts at once, one supervisor.
	const n = 20
	var wg sync.WaitGroup
	urls := make([]string, n)
	for i := range n {
		wg.Go(func() {
			c, err := connect(base)
			if err != nil {
				t.Errorf("first contact %d: %v", i, err)
				return
			}
			urls[i], _, _ = strings.Cut(c.URL, "?")
		})
	}
	wg.Wait()
	if t.Failed() {
		logs(t, e)
		return
	}
	pids := testkit.Supervisors(e.state)
	if len(pids) != 1 {
		t.Errorf("%d concurrent first contacts left supervisors %v, want one", n, pids)
	}
	for i, u := range urls {
		if u != urls[0] {
			t.Errorf("contact %d was sent to %s, contact 0 to %s", i, u, urls[0])
		}
	}

	// The page and the client.
	body, h := mustGet(t, base, 200)
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || !bytes.Contains(body, []byte("<html")) {
		t.Errorf("page: Content-Type %q, %d bytes", ct, len(body))
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src") {
		t.Errorf("page: Content-Security-Policy %q", csp)
	}
	body, h = mustGet(t, base+"?client.js", 200)
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript; charset=utf-8") || len(body) == 0 {
		t.Errorf("client.js: Content-Type %q, %d bytes", ct, len(body))
	}
	if !strings.Contains(h.Get("Cache-Control"), "max-age") {
		t.Errorf("client.js: Cache-Control %q", h.Get("Cache-Control"))
	}
	_, h = mustGet(t, base+"?bogus", 400)
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error: Content-Type %q", ct)
	}

	// A browser-like client: connect document, then the WebSocket with
	// the page's origin, then hello, snapshot and a reading.
	c, err := connect(base)
	if err != nil {
		t.Fatal(err)
	}
	mustLive(t, c, origin)

	// A supervisor killed hard leaves a stale socket and lock; the next
	// first contact starts a new one.
	for _, pid := range testkit.Supervisors(e.state) {
		testkit.KillAndReap(pid)
	}
	c, err = connect(base)
	if err != nil {
		logs(t, e)
		t.Fatalf("after SIGKILL: %v", err)
	}
	if pids2 := testkit.Supervisors(e.state); len(pids2) != 1 || len(pids) == 1 && pids2[0] == pids[0] {
		t.Errorf("after SIGKILL of %v: supervisors %v", pids, pids2)
		for _, pid := range pids2 {
			stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			t.Logf("%d: %s", pid, stat)
		}
		logs(t, e)
	}
	mustLive(t, c, origin)
}

// mustLive dials c.URL as a browser on origin would and waits for hello,
// snapshot and one reading.
func mustLive(t *testing.T, c control.Connect, origin string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, c.URL, &websocket.DialOptions{
		HTTPHeader:   http.Header{"Origin": {origin}},
		Subprotocols: []string{c.Protocol},
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s with Origin %s: %v (HTTP %d)", c.URL, origin, err, status)
	}
	defer ws.CloseNow()
	if ws.Subprotocol() != wire.Subprotocol {
		t.Errorf("subprotocol %q", ws.Subprotocol())
	}
	var types []string
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", types, err)
		}
		var m struct {
			Type   string `json:"type"`
			Sensor string `json:"sensor"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("frame %q: %v", b, err)
		}
		types = append(types, m.Type)
		switch {
		case len(types) == 1 && m.Type != wire.TypeHello:
			t.Fatalf("first frame %s, want hello", b)
		case len(types) == 2 && m.Type != wire.TypeSnapshot:
			t.Fatalf("second frame %s, want snapshot", b)
		case m.Type == wire.TypeReading:
			if m.Sensor == "" {
				t.Errorf("reading without sensor: %s", b)
			}
			ws.Close(websocket.StatusNormalClosure, "")
			return
		}
	}
}

// connect fetches the connect document as a same-origin fetch does (no
// Origin header).
func connect(base string) (control.Connect, error) {
	var c control.Connect
	body, h, err := get(base + "?connect")
	if err != nil {
		return c, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.URL == "" || h.Get("Cache-Control") != "no-store" {
		return c, fmt.Errorf("connect document %q (%v)", body, err)
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "ws" || u.Hostname() != "127.0.0.1" || u.Query().Get("token") != c.Token || c.Protocol != wire.Subprotocol {
		return c, fmt.Errorf("connect document %q", body)
	}
	return c, nil
}

var client = &http.Client{Timeout: 30 * time.Second}

// get fetches u and wants 200.
func get(u string) ([]byte, http.Header, error) {
	resp, err := client.Get(u)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != 200 {
		return body, resp.Header, fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	return body, resp.Header, nil
}

func mustGet(t *testing.T, u string, status int) ([]byte, http.Header) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %s, want %d: %.300s", u, resp.Status, status, body)
	}
	return body, resp.Header
}

// env is one test's directories.
type env struct {
	dir, docroot, state, conf string
}

// mustEnv lays out a docroot with cgi-bin/live.cgi built to read a config
// in a fresh temp dir, which runs the real supervisor and system plugin.
func mustEnv(t *testing.T) env {
	t.Helper()
	return mustEnvWith(t, "", "system")
}

// mustEnvWith is mustEnv with the built-in plugins named (links to
// livecgid, as make install lays them out), and extra lines ("key =
// value\n") added to the config.
func mustEnvWith(t *testing.T, extraConf string, pluginNames ...string) env {
	t.Helper()
	dir := t.TempDir()
	e := env{dir: dir, docroot: filepath.Join(dir, "www"), state: filepath.Join(dir, "state"), conf: filepath.Join(dir, "livecgi.conf")}
	livecgid := mustBuild(t, "cmd/livecgid", "", "livecgid")
	plugins := filepath.Join(dir, "plugins")
	os.MkdirAll(plugins, 0o700)
	for _, name := range pluginNames {
		if err := os.Symlink(livecgid, filepath.Join(plugins, name)); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf("state_dir = %s\nplugins_dir = %s\nsupervisor = %s\nlisten = 127.0.0.1:0\nlog_level = debug\nstart_timeout = 10s\n",
		e.state, plugins, livecgid) + extraConf
	if err := os.WriteFile(e.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	stub := mustBuild(t, "cmd/live.cgi", "-X github.com/livecgi/livecgi/cgi.ConfigPath="+e.conf, "live.cgi")
	os.MkdirAll(filepath.Join(e.docroot, "cgi-bin"), 0o755)
	os.WriteFile(filepath.Join(e.docroot, "index.html"), []byte("<html>device</html>\n"), 0o644)
	copyExe(t, stub, filepath.Join(e.docroot, "cgi-bin", "live.cgi"))
	t.Cleanup(func() {
		for _, pid := range testkit.Supervisors(e.state) {
			stopAndReap(pid)
		}
	})
	return e
}

// logs reports the supervisor's and the stub's logs.
// logsOnFailure shows e's logs at the end of a test that failed.
func logsOnFailure(t *testing.T, e env) {
	t.Cleanup(func() {
		if t.Failed() {
			logs(t, e)
		}
	})
}

func logs(t *testing.T, e env) {
	for _, f := range []string{control.LogFile, control.StubLogFile} {
		b, _ := os.ReadFile(filepath.Join(e.state, f))
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("%s:\n%s", f, b)
	}
}

// mustStartServer starts srv on a free port of 127.0.0.1 and returns the
// port. A port found free can be taken before the server binds it: then
// it tries another.
func mustStartServer(t *testing.T, srv server, bin string, e env) int {
	t.Helper()
	for try := 0; try < 5; try++ {
		port := freePort(t)
		cmd := srv.cmd(bin, e.docroot, e.dir, port)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		// Its own process group, so that stopping it also stops the
		// children it forks per connection (busybox keeps one per idle
		// keep-alive connection for a minute). The supervisor is in a
		// session of its own and is stopped by mustEnv's cleanup.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			client.CloseIdleConnections()
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if waitListening(port, exited) {
			t.Cleanup(stop)
			return port
		}
		stop()
		t.Logf("%s on port %d did not come up (try %d): %s", srv.name, port, try, out.Bytes())
	}
	t.Fatalf("%s did not start", srv.name)
	return 0
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something accepts on port, or the server
// exits, for at most 10 s.
func waitListening(port int, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// mustBuild builds pkg (relative to the module root) as a release does and
// returns the binary.
func mustBuild(t *testing.T, pkg, ldflags, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + "\x00" + ldflags
	if p, ok := built[key]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "livecgi-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	dir := filepath.Join(buildDir, strconv.Itoa(len(built)))
	os.MkdirAll(dir, 0o700)
	out := filepath.Join(dir, name)
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w "+ldflags, "-o", out, "./"+pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built[key] = out
	return out
}

func copyExe(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// stopAndReap asks pid to stop (SIGTERM: the supervisor stops its plugins)
// and kills it after 5 s.
func stopAndReap(pid int) {
	syscall.Kill(pid, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() {
		_, err := syscall.Wait4(pid, nil, 0, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if errors.Is(err, syscall.ECHILD) {
			// Not our child: wait for it to go away by polling.
			for i := 0; i < 250 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		}
	case <-time.After(5 * time.Second):
		syscall.Kill(pid, syscall.SIGKILL)
		<-done
	}
}

// mustEpoch is the epoch of the supervisor running in state: tokens are
// bound to it.
func mustEpoch(t testing.TB, state string) string {
	t.Helper()
	st, err := control.Probe(context.Background(), state)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	return st.Epoch
}
