package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/testkit"
	"github.com/livecgi/livecgi/proto/wire"
)

// busyboxAuth is busybox httpd with HTTP Basic on /cgi-bin for the given
// "user:password" pairs (its httpd.conf); it then passes REMOTE_USER.
func busyboxAuth(pairs ...string) server {
	return server{"busybox-auth", "busybox", func(bin, docroot, dir string, port int) *exec.Cmd {
		conf := filepath.Join(dir, fmt.Sprintf("httpd-%d.conf", port))
		var b strings.Builder
		for _, p := range pairs {
			b.WriteString("/cgi-bin:" + p + "\n")
		}
		os.WriteFile(conf, []byte(b.String()), 0o600)
		return exec.Command(bin, "httpd", "-f", "-p", fmt.Sprintf("127.0.0.1:%d", port), "-h", docroot, "-c", conf)
	}}
}

func serverNamed(name string) server {
	for _, s := range servers {
		if s.name == name {
			return s
		}
	}
	panic(name)
}

// fetch does one GET with the given headers and returns status, headers
// and body.
func fetch(t *testing.T, u string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func basic(user, pass string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

// tokenFor fetches ?connect with header and returns the connect document
// and who its token is for.
func tokenFor(t *testing.T, e env, base string, header map[string]string) (control.Connect, auth.Identity) {
	t.Helper()
	status, _, body := fetch(t, base+"?connect", header)
	if status != 200 {
		logs(t, e)
		t.Fatalf("connect: %d %s", status, body)
	}
	var c control.Connect
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(e.state, control.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	origin := strings.TrimSuffix(base, "/cgi-bin/live.cgi")
	claims, err := control.VerifyToken(secret, c.Token, origin, mustEpoch(t, e.state), time.Now())
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return c, claims.Identity
}

// setConf rewrites the config with extra lines; the stub reads it on every
// request.
func setConf(t *testing.T, e env, extra string) {
	t.Helper()
	b, err := os.ReadFile(e.conf)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(b), "# auth\n")
	if err := os.WriteFile(e.conf, []byte(head+"# auth\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAuthServers runs each auth mode under the servers it is meant for.
func TestAuthServers(t *testing.T) {
	busybox := mustTool(t, "busybox")
	lighttpd := mustTool(t, "lighttpd")
	e := mustEnv(t)
	users := filepath.Join(e.dir, "users")
	if _, err := auth.SetUser(users, auth.User{Name: "otto", Role: auth.RoleOperator}); err != nil {
		t.Fatal(err)
	}
	hash, _ := auth.HashPassword("pa:ss\xff")
	auth.SetUser(users, auth.User{Name: "alice", Role: auth.RoleOperator, Hash: hash})
	auth.SetUser(users, auth.User{Name: "vera", Role: auth.RoleViewer})
	hash, _ = auth.HashPassword("vicpw")
	auth.SetUser(users, auth.User{Name: "vic", Role: auth.RoleViewer, Hash: hash})
	bbAuth := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", mustStartServer(t, busyboxAuth("otto:ottopw", "vera:verapw", "eve:evepw"), busybox, e))
	bb := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", mustStartServer(t, serverNamed("busybox"), busybox, e))
	lt := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", mustStartServer(t, serverNamed("lighttpd"), lighttpd, e))

	t.Run("none", func(t *testing.T) {
		setConf(t, e, "auth = none\n")
		if _, id := tokenFor(t, e, bb, nil); id != (auth.Identity{Role: auth.RoleViewer}) {
			t.Errorf("auth = none: %+v, want an anonymous viewer", id)
		}
	})
	t.Run("busybox webserver", func(t *testing.T) {
		setConf(t, e, "auth = webserver\nauth_users = "+users+"\n")
		if status, _, _ := fetch(t, bbAuth+"?connect", nil); status != 401 {
			t.Errorf("no credentials: %d, want busybox's 401", status)
		}
		if _, id := tokenFor(t, e, bbAuth, basic("otto", "ottopw")); id != (auth.Identity{User: "otto", Role: auth.RoleOperator}) {
			t.Errorf("otto: %+v", id)
		}
		if _, id := tokenFor(t, e, bbAuth, basic("eve", "evepw")); id != (auth.Identity{User: "eve", Role: auth.RoleViewer}) {
			t.Errorf("eve, not in auth_users: %+v", id)
		}
		// A viewer's token, dialled from Go: its command is refused.
		c, id := tokenFor(t, e, bbAuth, basic("vera", "verapw"))
		if id.Role != auth.RoleViewer {
			t.Fatalf("vera: %+v", id)
		}
		m := commandOver(t, c, strings.TrimSuffix(bbAuth, "/cgi-bin/live.cgi"), "livecgid.nothing")
		if m["code"] != wire.ErrForbidden {
			t.Errorf("viewer's command: %v", m)
		}
		// The same server without REMOTE_USER (unprotected): refused.
		status, _, body := fetch(t, bb+"?connect", nil)
		if status != 403 || !strings.Contains(body, "no REMOTE_USER") {
			t.Errorf("webserver without REMOTE_USER: %d %s", status, body)
		}
	})
	t.Run("busybox basic", func(t *testing.T) {
		setConf(t, e, "auth = basic\nauth_users = "+users+"\n")
		status, _, body := fetch(t, bb+"?connect", basic("alice", "pa:ss\xff"))
		if status != 500 || !strings.Contains(body, "the web server does not pass the Authorization header to CGIs; use auth = webserver") {
			t.Errorf("basic under busybox: %d %s", status, body)
		}
	})
	t.Run("lighttpd basic", func(t *testing.T) {
		setConf(t, e, "auth = basic\nauth_users = "+users+"\n")
		status, h, body := fetch(t, lt+"?connect", nil)
		if status != 401 || h.Get("WWW-Authenticate") != `Basic realm="livecgi", charset="UTF-8"` || !strings.Contains(body, `"unauthorized"`) {
			t.Errorf("no credentials: %d %q %s", status, h.Get("WWW-Authenticate"), body)
		}
		if status, h, _ := fetch(t, lt, nil); status != 401 || h.Get("WWW-Authenticate") == "" {
			t.Errorf("page without credentials: %d", status)
		}
		if status, _, _ := fetch(t, lt, basic("alice", "pa:ss\xff")); status != 200 {
			t.Errorf("page with credentials: %d", status)
		}
		if _, id := tokenFor(t, e, lt, basic("alice", "pa:ss\xff")); id != (auth.Identity{User: "alice", Role: auth.RoleOperator}) {
			t.Errorf("alice: %+v", id)
		}
		// Over our 1 KiB cap but under lighttpd's own: refused by the stub,
		// unparsed. 1 MB: lighttpd refuses it before any CGI runs.
		status, _, body = fetch(t, lt+"?connect", map[string]string{"Authorization": "Basic " + strings.Repeat("QUFB", 512)})
		if status != 431 || !strings.Contains(body, "over 1024 bytes") {
			t.Errorf("2 KiB Authorization: %d %s", status, body)
		}
		status, _, body = fetch(t, lt+"?connect", map[string]string{"Authorization": "Basic " + strings.Repeat("QUFB", 1<<18)})
		t.Logf("1 MB Authorization through lighttpd: %d %.100s", status, body)
		if status < 400 || status >= 500 {
			t.Errorf("1 MB Authorization: %d", status)
		}
		for i := range 5 {
			if status, _, _ := fetch(t, lt+"?connect", basic("alice", fmt.Sprint("guess", i))); status != 401 {
				t.Errorf("wrong password %d: %d", i, status)
			}
		}
		status, h, body = fetch(t, lt+"?connect", basic("alice", "pa:ss\xff"))
		if status != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, `too many failed sign-ins as \"alice\" from 127.0.0.1`) {
			t.Errorf("after 5 failures: %d %q %s", status, h.Get("Retry-After"), body)
		}
		// Another user at the same address (a NAT, a proxy) still signs in.
		if _, id := tokenFor(t, e, lt, basic("vic", "vicpw")); id != (auth.Identity{User: "vic", Role: auth.RoleViewer}) {
			t.Errorf("vic, after alice's lock-out at the same address: %+v", id)
		}
	})
	t.Run("busybox command", func(t *testing.T) {
		script := filepath.Join(e.dir, "check-session")
		os.WriteFile(script, []byte(`#!/bin/sh
case "$HTTP_COOKIE" in
*sid=7f3a9c*) echo "alice operator" ;;
*) exit 1 ;;
esac
`), 0o755)
		setConf(t, e, "auth = command\nauth_command = "+script+"\n")
		if _, id := tokenFor(t, e, bb, map[string]string{"Cookie": "lang=en; sid=7f3a9c"}); id != (auth.Identity{User: "alice", Role: auth.RoleOperator}) {
			t.Errorf("good session: %+v", id)
		}
		for _, cookie := range []string{"", "sid=expired"} {
			status, _, body := fetch(t, bb+"?connect", map[string]string{"Cookie": cookie})
			if status != 403 || !strings.Contains(body, "not signed in") {
				t.Errorf("cookie %q: %d %s", cookie, status, body)
			}
		}
	})
	// No credential ever reaches our logs.
	for _, f := range []string{control.LogFile, control.StubLogFile} {
		b, _ := os.ReadFile(filepath.Join(e.state, f))
		for _, secret := range []string{"ottopw", "verapw", "pa:ss", "7f3a9c", "token="} {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s holds %q", f, secret)
			}
		}
	}
}

// commandOver dials c as a browser on origin would, sends one command
// and returns the answer to it.
func commandOver(t *testing.T, c control.Connect, origin, name string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, c.URL, &websocket.DialOptions{
		HTTPHeader:   http.Header{"Origin": {origin}},
		Subprotocols: []string{c.Protocol},
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	b, _ := json.Marshal(wire.CommandMsg{Type: wire.TypeCommand, ID: "x1", Name: name, Args: map[string]any{}})
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		if m["id"] == "x1" {
			return m
		}
	}
}

// TestBrowserRoles: busybox httpd signs people in (auth = webserver). In
// headless Chromium an operator sets an LED through the dashboard's form;
// a viewer's dashboard shows who is signed in, has no usable command form
// and says why, and a command frame forged on the viewer's own socket is
// refused by the supervisor. The audit trail has both.
func TestBrowserRoles(t *testing.T) {
	chromium := mustTool(t, chromiumPath)
	busybox := mustTool(t, "busybox")
	sysRoot := sdktest.CopyFixture(t, filepath.Join("..", "..", "plugins", "leds", "testdata", "sys"))
	e := mustEnvWith(t, "sys_root = "+sysRoot+"\n", "leds")
	users := filepath.Join(e.dir, "users")
	auth.SetUser(users, auth.User{Name: "otto", Role: auth.RoleOperator})
	auth.SetUser(users, auth.User{Name: "vera", Role: auth.RoleViewer})
	setConf(t, e, "auth = webserver\nauth_users = "+users+"\n")
	port := mustStartServer(t, busyboxAuth("otto:ottopw", "vera:verapw"), busybox, e)
	page := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port)
	brightness := filepath.Join(sysRoot, "class", "leds", "led0", "brightness")

	b := mustBrowser(t, chromium)
	step := func(name string, f func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		if err := f(ctx); err != nil {
			b.dump(t)
			logs(t, e)
			t.Fatalf("%s: %v", name, err)
		}
	}
	signIn := func(user, pass string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
			headers := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
					return err
				}
				_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
				return err
			})
			if err := chromedp.Do(ctx, headers, chromedp.Navigate(page)); err != nil {
				return err
			}
			return waitFor(ctx, `document.querySelector("#conn").dataset.state === "live" && !!document.querySelector('form[data-command="leds.set_brightness"]')`)
		}
	}
	form := `form[data-command="leds.set_brightness"]`

	step("otto signs in", signIn("otto", "ottopw"))
	if who, _ := chromedp.Run(b.ctx, chromedp.TextContent(chromedp.CSS("#who"))); who != "otto · operator" {
		t.Errorf("#who shows %q", who)
	}
	step("otto sets the LED", func(ctx context.Context) error {
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS(form+` [data-arg="led"]`), "led0"),
			chromedp.SetValue(chromedp.CSS(form+` [data-arg="value"]`), "42"),
			chromedp.Click(chromedp.CSS(form+` button[type="submit"]`)),
		); err != nil {
			return err
		}
		return waitFor(ctx, `document.querySelector('output[data-result-for="leds.set_brightness"]').dataset.state === "ok"`)
	})
	if got, _ := os.ReadFile(brightness); strings.TrimSpace(string(got)) != "42" {
		t.Fatalf("brightness %q after otto's command, want 42", got)
	}

	step("vera signs in", signIn("vera", "verapw"))
	state, err := chromedp.Run(b.ctx, chromedp.Evaluate[map[string]any](`({
		who: document.querySelector("#who").textContent,
		usable: [...document.querySelectorAll("form[data-command] button, form[data-command] input, form[data-command] select")].filter(x => !x.disabled).length,
		forbidden: document.querySelectorAll("form[data-command][data-forbidden]").length,
		forms: document.querySelectorAll("form[data-command]").length,
		why: (document.querySelector("form[data-command] .why") || {}).textContent,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("viewer's dashboard: %v", state)
	if state["who"] != "vera · viewer" || state["usable"] != 0.0 || state["forms"] == 0.0 || state["forbidden"] != state["forms"] ||
		!strings.Contains(fmt.Sprint(state["why"]), "Only operators may run this: you are vera (viewer)") {
		t.Errorf("viewer's dashboard: %v", state)
	}
	step("a forged command from vera's page", func(ctx context.Context) error {
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
			live.on("error", (e) => { if (e.id === "forged") window.forged = e; });
			live._ws.send(JSON.stringify({type: "command", id: "forged", name: "leds.set_brightness", args: {led: "led0", value: 7}}));
			return true;
		})()`)); err != nil {
			return err
		}
		return waitFor(ctx, `!!window.forged`)
	})
	forged, _ := chromedp.Run(b.ctx, chromedp.Evaluate[map[string]any](`window.forged`))
	if forged["code"] != wire.ErrForbidden || !strings.Contains(fmt.Sprint(forged["message"]), `leds.set_brightness needs role operator; "vera" is viewer`) {
		t.Errorf("forged command answered %v", forged)
	}
	if got, _ := os.ReadFile(brightness); strings.TrimSpace(string(got)) != "42" {
		t.Errorf("brightness %q after vera's forged command, want 42", got)
	}
	b.checkConsole(t)

	// The audit trail, read after the supervisor stopped.
	for _, pid := range testkit.Supervisors(e.state) {
		stopAndReap(pid)
	}
	f, err := os.Open(filepath.Join(e.state, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct{ User, Role, Command, Result, Remote string }
		json.Unmarshal(sc.Bytes(), &r)
		res, _, _ := strings.Cut(r.Result, ":")
		got = append(got, r.User+" "+r.Role+" "+r.Command+" "+res)
		if !strings.HasPrefix(r.Remote, "127.0.0.1:") {
			t.Errorf("audit remote %q", r.Remote)
		}
	}
	if want := []string{"otto operator leds.set_brightness ok", "vera viewer leds.set_brightness forbidden"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
