package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
	"github.com/livecgi/livecgi/proto/wire"
)

// linkNPH makes cgi-bin/nph-live.cgi a symlink to live.cgi, as make
// install does.
func linkNPH(t *testing.T, e env) {
	t.Helper()
	if err := os.Symlink("live.cgi", filepath.Join(e.docroot, "cgi-bin", "nph-live.cgi")); err != nil {
		t.Fatal(err)
	}
}

// mustNPHD starts nphd (a web server running nph CGIs as boa 0.94.14rc21
// does: the client's socket as stdout, every header as HTTP_*, no
// shutdown at exit) on e's docroot and returns its port.
func mustNPHD(t *testing.T, e env) int {
	t.Helper()
	bin := mustBuild(t, "cmd/livecgi-bench/nphd", "", "nphd")
	cmd := exec.Command(bin, "-root", e.docroot, "-listen", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "listening "))
	if err != nil || perr != nil {
		t.Fatalf("nphd said %q (%v)", line, err)
	}
	return port
}

// closedPort is a port of 127.0.0.1 that nothing listens on (the
// supervisor's public_port, for a port-forward that is not there).
func closedPort(t *testing.T) int { return freePort(t) }

// rawUpgrade sends a browser's WebSocket upgrade request for path to
// 127.0.0.1:port and returns the answer's status line and the rest of the
// answer, read until the server closes (nothing more after a 101).
func rawUpgrade(t *testing.T, port int, path, origin string) (status, rest string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		path, port, origin, wire.Subprotocol)
	br := bufio.NewReader(c)
	status, _ = br.ReadString('\n')
	status = strings.TrimSuffix(status, "\r\n")
	if strings.Contains(status, " 101 ") {
		return status, ""
	}
	b, _ := io.ReadAll(br)
	return status, string(b)
}

// samePortURL is the connect document's same-port transport, checked.
func samePortURL(t *testing.T, c control.Connect, port int) string {
	t.Helper()
	if len(c.Transports) == 0 || c.Transports[0].Kind != control.TransportSamePort {
		t.Fatalf("transports %+v: want same-port first", c.Transports)
	}
	u := c.Transports[0].URL
	prefix := fmt.Sprintf("ws://127.0.0.1:%d/cgi-bin/nph-live.cgi?ws&token=", port)
	if !strings.HasPrefix(u, prefix) || strings.TrimPrefix(u, prefix) == c.Token {
		t.Fatalf("same-port URL %q: want %s<a token of its own>", u, prefix)
	}
	return u
}

// TestSamePort: under a web server that gives nph CGIs the client's socket
// (nphd, as boa 0.94.14rc21), with the supervisor's port unreachable
// (public_port is closed), a client reaches the supervisor through
// nph-live.cgi on the web server's own port: hello, snapshot, readings
// and a command, after the stub has exited. The same checks as a direct
// upgrade hold: a replayed token and a cross-site page get 403, with a
// status line; a request without upgrade headers gets 501.
func TestSamePort(t *testing.T) {
	sysRoot := sdktest.CopyFixture(t, filepath.Join("..", "..", "plugins", "leds", "testdata", "sys"))
	closed := closedPort(t)
	e := mustEnvWith(t, fmt.Sprintf("sys_root = %s\ncommand_role = leds.set_brightness viewer\npublic_port = %d\n", sysRoot, closed), "system", "leds")
	linkNPH(t, e)
	port := mustNPHD(t, e)
	base := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)

	c, err := connect(base)
	if err != nil {
		logs(t, e)
		t.Fatal(err)
	}
	u := samePortURL(t, c, port)
	if len(c.Transports) != 3 || c.Transports[1] != (control.Transport{Kind: control.TransportWS, URL: c.URL}) || c.Transports[2].Kind != control.TransportPoll ||
		!strings.HasPrefix(c.URL, fmt.Sprintf("ws://127.0.0.1:%d/live?token=", closed)) {
		t.Errorf("transports %+v, url %s: want ws on public_port %d second, then poll", c.Transports, c.URL, closed)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPHeader:   http.Header{"Origin": {origin}},
		Subprotocols: []string{wire.Subprotocol},
	})
	if err != nil {
		logs(t, e)
		t.Fatalf("dial %s: %v (%v)", u, err, resp)
	}
	defer ws.CloseNow()
	frames := make(chan map[string]any, 256)
	go func() {
		defer close(frames)
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			var m map[string]any
			json.Unmarshal(b, &m)
			frames <- m
		}
	}()
	next := func(what string, match func(m map[string]any) bool) map[string]any {
		t.Helper()
		for {
			select {
			case m, ok := <-frames:
				if !ok {
					logs(t, e)
					t.Fatalf("connection ended waiting for %s", what)
				}
				if match(m) {
					return m
				}
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			}
		}
	}
	if m := next("first frame", func(map[string]any) bool { return true }); m["type"] != wire.TypeHello {
		t.Fatalf("first frame %v, want hello", m)
	}
	// The stub has handed over and exited; the socket lives on.
	stub := filepath.Join(e.docroot, "cgi-bin", "nph-live.cgi")
	for len(testkit.Matching(stub)) > 0 {
		select {
		case <-ctx.Done():
			t.Fatal("nph-live.cgi still running after the hand-over")
		case <-time.After(20 * time.Millisecond):
		}
	}
	next("a reading", func(m map[string]any) bool { return m["type"] == wire.TypeReading })
	// The command, again after each status while the leds plugin is not
	// up yet.
	for i := 1; ; i++ {
		id := "s" + strconv.Itoa(i)
		b, _ := json.Marshal(wire.CommandMsg{Type: wire.TypeCommand, ID: id, Name: "leds.set_brightness", Args: map[string]any{"led": "led0", "value": 42}})
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		m := next("the command's answer", func(m map[string]any) bool { return m["id"] == id })
		if m["type"] == wire.TypeResult && m["ok"] == true {
			break
		}
		if m["code"] != wire.ErrUnknownCommand {
			t.Fatalf("command over the same port: %v", m)
		}
		next("a status", func(m map[string]any) bool { return m["type"] == wire.TypeStatus })
	}
	if got, _ := os.ReadFile(filepath.Join(sysRoot, "class", "leds", "led0", "brightness")); strings.TrimSpace(string(got)) != "42" {
		t.Errorf("led0 brightness %q, want 42", got)
	}

	path := strings.TrimPrefix(u, fmt.Sprintf("ws://127.0.0.1:%d", port))
	if status, rest := rawUpgrade(t, port, path, origin); status != "HTTP/1.1 403 Forbidden" || !strings.Contains(rest, "token already used") {
		t.Errorf("token replayed: %q %q, want 403 token already used", status, rest)
	}
	c2, err := connect(base)
	if err != nil {
		t.Fatal(err)
	}
	path2 := strings.TrimPrefix(samePortURL(t, c2, port), fmt.Sprintf("ws://127.0.0.1:%d", port))
	if status, rest := rawUpgrade(t, port, path2, "http://evil.example"); status != "HTTP/1.1 403 Forbidden" || !strings.Contains(rest, `"error":"cross_site"`) {
		t.Errorf("cross-site page: %q %q, want 403 cross_site from the stub", status, rest)
	}
	// The stub refused it before the supervisor saw the token: still good.
	if status, _ := rawUpgrade(t, port, path2, origin); status != "HTTP/1.1 101 Switching Protocols" {
		t.Errorf("the token a cross-site page could not use: %q, want 101", status)
	}
	status, _, body := fetch(t, "http://127.0.0.1:"+strconv.Itoa(port)+path2, nil)
	if status != 501 || !strings.Contains(body, `"error":"no_upgrade"`) {
		t.Errorf("?ws without upgrade headers: %d %s, want 501 no_upgrade", status, body)
	}
	if status, _, body := fetch(t, fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/nph-live.cgi", port), nil); status != 200 || !strings.Contains(body, "<html") {
		t.Errorf("the page through nph-live.cgi: %d %.80q", status, body)
	}
	// A server that gives the socket is offered same-port after every
	// kind of attempt.
	c3, err := connect(base)
	if err != nil {
		t.Fatal(err)
	}
	samePortURL(t, c3, port)
}

// TestSamePortFallback: servers that give nph CGIs a pipe (busybox httpd,
// lighttpd) or no upgrade headers (mini_httpd) get a clear 501 with a
// complete HTTP status line, on which the client falls back. After a
// no_socket answer the connect document offers same-port no more under
// that server; after no_upgrade (which a plain GET also gets) it still
// does.
func TestSamePortFallback(t *testing.T) {
	for _, tc := range []struct{ server, code string }{
		{"busybox", "no_socket"},
		{"lighttpd", "no_socket"},
		{"mini_httpd", "no_upgrade"},
	} {
		t.Run(tc.server, func(t *testing.T) {
			srv := serverNamed(tc.server)
			bin := mustTool(t, srv.bin)
			e := mustEnv(t)
			linkNPH(t, e)
			port := mustStartServer(t, srv, bin, e)
			base := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port)
			c, err := connect(base)
			if err != nil {
				logs(t, e)
				t.Fatal(err)
			}
			path := strings.TrimPrefix(samePortURL(t, c, port), fmt.Sprintf("ws://127.0.0.1:%d", port))
			status, rest := rawUpgrade(t, port, path, fmt.Sprintf("http://127.0.0.1:%d", port))
			if !strings.HasPrefix(status, "HTTP/1.") || !strings.Contains(status, " 501 ") || !strings.Contains(rest, `"error":"`+tc.code+`"`) {
				t.Errorf("same-port upgrade: %q\n%s\nwant 501 %s", status, rest, tc.code)
			}
			t.Logf("%s: %s: %s", tc.server, status, rest[strings.Index(rest, "{"):])
			c, err = connect(base)
			if err != nil {
				t.Fatal(err)
			}
			offered := slices.ContainsFunc(c.Transports, func(tr control.Transport) bool { return tr.Kind == control.TransportSamePort })
			if want := tc.code != "no_socket"; offered != want {
				t.Errorf("after %s, transports %+v: same-port offered %v, want %v", tc.code, c.Transports, offered, want)
			}
		})
	}
}

// TestBrowserSamePort: headless Chromium on a page served by nphd opens
// the same-port WebSocket the connect document names, with no other port
// to reach (public_port is closed): hello, readings, and a command's
// result arrive.
func TestBrowserSamePort(t *testing.T) {
	chromium := mustTool(t, chromiumPath)
	sysRoot := sdktest.CopyFixture(t, filepath.Join("..", "..", "plugins", "leds", "testdata", "sys"))
	e := mustEnvWith(t, fmt.Sprintf("sys_root = %s\ncommand_role = leds.set_brightness viewer\npublic_port = %d\n", sysRoot, closedPort(t)), "system", "leds")
	linkNPH(t, e)
	page := `<!doctype html><link rel="icon" href="data:,"><p id="out">…</p>
<script>
window.seen = [];
fetch("/cgi-bin/live.cgi?connect").then((r) => r.json()).then((doc) => {
	const t = doc.transports.find((t) => t.kind === "same-port");
	const ws = new WebSocket(t.url, doc.protocol);
	let n = 0, pending = false, done = false;
	ws.onmessage = (ev) => {
		const m = JSON.parse(ev.data);
		window.seen.push(m.type + (m.id ? ":" + m.id + ":" + m.ok : ""));
		if (m.id) {
			pending = false;
			done = done || m.ok === true;
		}
		if (m.type === "reading" && !done && !pending) { // again until the plugin is up
			pending = true;
			ws.send(JSON.stringify({type: "command", id: "b" + ++n, name: "leds.set_brightness", args: {led: "led0", value: 7}}));
		}
	};
	ws.onerror = () => window.seen.push("error");
});
</script>
`
	if err := os.WriteFile(filepath.Join(e.docroot, "sameport.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	port := mustNPHD(t, e)
	b := mustBrowser(t, chromium)
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("http://127.0.0.1:%d/sameport.html", port))); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		seen, _ = chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.seen`))
		if strings.Contains(strings.Join(seen, " "), ":true") {
			break
		}
		select {
		case <-ctx.Done():
			logs(t, e)
			b.dump(t)
			t.Fatalf("frames seen: %v", seen)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if len(seen) < 3 || seen[0] != "hello" || seen[1] != "snapshot" {
		t.Errorf("frames %v: want hello, snapshot first", seen)
	}
	if got, _ := os.ReadFile(filepath.Join(sysRoot, "class", "leds", "led0", "brightness")); strings.TrimSpace(string(got)) != "7" {
		t.Errorf("led0 brightness %q, want 7", got)
	}
	// The dashboard finds the same port by itself: the client tries the
	// connect document's transports in order.
	waitDashboard(t, b, e, fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port), control.TransportSamePort)
	b.checkConsole(t)
}

// waitDashboard opens the dashboard at page and waits until it is live
// over the transport of that kind, with the system plugin's cards.
func waitDashboard(t *testing.T, b *browser, e env, page, kind string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	want := "live " + kind + " true"
	for {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#conn").dataset.state + " " + document.querySelector("#conn").dataset.transport + " " + !!document.querySelector('.card[data-sensor="system.uptime_seconds"]')`))
		if state == want {
			return
		}
		select {
		case <-ctx.Done():
			logs(t, e)
			b.dump(t)
			t.Fatalf("dashboard at %s: %q, want %q", page, state, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// mustOpenSSLCert makes a self-signed certificate for 127.0.0.1 with
// Debian's openssl and returns the certificate's and the key's files.
func mustOpenSSLCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	openssl := mustTool(t, "openssl")
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	out, err := exec.Command(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	return cert, key
}

// lighttpdTLS is lighttpd serving HTTPS only (mod_openssl), CGIs under
// /cgi-bin/ as in servers.
func lighttpdTLS(cert, key string) server {
	return server{"lighttpd-tls", "lighttpd", func(bin, docroot, dir string, port int) *exec.Cmd {
		conf := filepath.Join(dir, fmt.Sprintf("lighttpd-tls-%d.conf", port))
		os.WriteFile(conf, []byte(fmt.Sprintf(`server.modules = ("mod_cgi", "mod_openssl")
server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.errorlog = %q
ssl.engine = "enable"
ssl.pemfile = %q
ssl.privkey = %q
mimetype.assign = (".html" => "text/html")
$HTTP["url"] =~ "^/cgi-bin/" { cgi.assign = ("" => "") }
`, docroot, port, filepath.Join(dir, "lighttpd.log"), cert, key)), 0o600)
		return exec.Command(bin, "-D", "-f", conf)
	}}
}

// TestBrowserHTTPS: the dashboard served over HTTPS by lighttpd (the
// stub sees HTTPS=on) goes live in Chromium over wss:// when the
// supervisor has tls_cert and tls_key; without them, the connect document
// offers no ws:// transport to the HTTPS page (browsers refuse it as
// mixed content), and the page goes live over long polling.
func TestBrowserHTTPS(t *testing.T) {
	chromium := mustTool(t, chromiumPath)
	lighttpd := mustTool(t, "lighttpd")
	if _, err := os.Stat("/usr/lib/lighttpd/mod_openssl.so"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("lighttpd's mod_openssl is not installed: apt-get install lighttpd-mod-openssl")
		}
		t.Skip("lighttpd-mod-openssl not installed")
	}
	certDir := t.TempDir()
	cert, key := mustOpenSSLCert(t, certDir)
	insecure := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	connectTLS := func(t *testing.T, base string) control.Connect {
		t.Helper()
		resp, err := insecure.Get(base + "?connect")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c control.Connect
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 {
			t.Fatalf("connect: %s %v", resp.Status, err)
		}
		return c
	}

	t.Run("wss", func(t *testing.T) {
		e := mustEnvWith(t, fmt.Sprintf("tls_cert = %s\ntls_key = %s\n", cert, key), "system")
		port := mustStartServer(t, lighttpdTLS(cert, key), lighttpd, e)
		page := fmt.Sprintf("https://127.0.0.1:%d/cgi-bin/live.cgi", port)
		c := connectTLS(t, page)
		if !strings.HasPrefix(c.URL, "wss://127.0.0.1:") || len(c.Transports) == 0 || c.Transports[0] != (control.Transport{Kind: control.TransportWS, URL: c.URL}) {
			t.Errorf("connect over HTTPS with a TLS supervisor: url %s, transports %+v; want wss first", c.URL, c.Transports)
		}
		b := mustBrowser(t, chromium, chromedp.Flag("ignore-certificate-errors", true))
		waitDashboard(t, b, e, page, control.TransportWS)
		b.checkConsole(t)
	})
	t.Run("no TLS", func(t *testing.T) {
		e := mustEnv(t)
		port := mustStartServer(t, lighttpdTLS(cert, key), lighttpd, e)
		page := fmt.Sprintf("https://127.0.0.1:%d/cgi-bin/live.cgi", port)
		c := connectTLS(t, page)
		for _, tr := range c.Transports {
			if tr.Kind == control.TransportWS {
				t.Errorf("an HTTPS page is offered %s from a supervisor without TLS", tr.URL)
			}
		}
		// The page goes live through the stub, over HTTPS.
		b := mustBrowser(t, chromium, chromedp.Flag("ignore-certificate-errors", true))
		waitDashboard(t, b, e, page, control.TransportPoll)
		b.checkConsole(t)
	})
}
