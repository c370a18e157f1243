package cgi

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
)

// TestMain makes this test process the reaper of the supervisors that the
// stubs it runs leave behind, so that t.Cleanup can kill and reap them.
func TestMain(m *testing.M) {
	testkit.Main(m, func() {
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
	})
}

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// moduleRoot is the directory of go.mod.
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// mustBuild builds pkg (relative to the module root) once per ldflags
// value and returns the binary's path.
func mustBuild(tb testing.TB, pkg, ldflags string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + "\x00" + ldflags
	if p, ok := built[key]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "livecgi-cgi-test-")
		if err != nil {
			tb.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, strconv.Itoa(len(built))+"-"+filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w "+ldflags, "-o", out, "./"+pkg)
	cmd.Dir = moduleRoot(tb)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built[key] = out
	return out
}

// mustBuildStub builds cmd/live.cgi reading the config file at conf.
func mustBuildStub(tb testing.TB, conf string) string {
	return mustBuild(tb, "cmd/live.cgi", "-X github.com/livecgi/livecgi/cgi.ConfigPath="+conf)
}

// mustFake builds the fake supervisor.
func mustFake(tb testing.TB) string {
	return mustBuild(tb, "cgi/testdata/fakesupervisor", "")
}

// testEnv is one test's state dir and config file, using the fake
// supervisor unless changed.
type testEnv struct {
	dir, state, conf, supervisor string
}

// mustEnv writes a config in a fresh temp dir; extra lines are appended.
func mustEnv(t *testing.T, extra ...string) testEnv { return mustEnvB(t, extra...) }

func mustEnvB(t testing.TB, extra ...string) testEnv {
	t.Helper()
	dir := t.TempDir()
	e := testEnv{dir: dir, state: filepath.Join(dir, "state"), conf: filepath.Join(dir, "livecgi.conf"), supervisor: mustFake(t)}
	lines := append([]string{"state_dir = " + e.state, "supervisor = " + e.supervisor, "start_timeout = 5s"}, extra...)
	if err := os.WriteFile(e.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testkit.KillSupervisors(e.state) })
	return e
}

// startCount is how many times the fake supervisor was exec'd for state.
func startCount(t testing.TB, state string) int {
	b, err := os.ReadFile(filepath.Join(state, "fake-starts.log"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("start "))
}

// handler serves s over HTTP the way a CGI server would: it turns the
// request into the CGI environment, answers with Serve and copies the
// Response. It shows Stub works as an http.Handler under httptest.
func handler(s *Stub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env := map[string]string{
			"REQUEST_METHOD":     r.Method,
			"HTTP_HOST":          r.Host,
			"QUERY_STRING":       r.URL.RawQuery,
			"HTTP_ORIGIN":        r.Header.Get("Origin"),
			"HTTP_IF_NONE_MATCH": r.Header.Get("If-None-Match"),
			"SCRIPT_NAME":        r.URL.Path,
			"CONTENT_LENGTH":     strconv.FormatInt(r.ContentLength, 10),
			"REMOTE_ADDR":        r.RemoteAddr,
		}
		if r.TLS != nil {
			env["HTTPS"] = "on"
		}
		req := RequestFromEnv(func(k string) string { return env[k] })
		req.Body = r.Body
		ctx, cancel := context.WithTimeout(r.Context(), s.DeadlineFor(req))
		defer cancel()
		resp := s.Serve(ctx, req)
		for _, f := range resp.Header {
			w.Header().Add(f.Name, f.Value)
		}
		if resp.Status != 304 {
			w.Header().Set("Content-Length", strconv.Itoa(len(resp.Body))) // as WriteCGI
		}
		w.WriteHeader(resp.Status)
		if r.Method != "HEAD" {
			w.Write(resp.Body)
		}
	})
}

// testAssets are small stand-ins for the real page and client.
var testAssets = Assets{
	Page:     func() []byte { return []byte("<!doctype html><title>live</title>\n") },
	PageCSP:  func() string { return "default-src 'none'" },
	ClientJS: func() []byte { return []byte("window.LiveCGI = {};\n") },
}

// hangGuard fails the test if f has not returned within d; it is not a
// speed check, only a bound on a hang.
func hangGuard(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		buf := make([]byte, 1<<16)
		t.Fatalf("%s still running after %v\n%s", what, d, buf[:runtime.Stack(buf, true)])
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
