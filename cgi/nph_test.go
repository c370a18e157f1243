package cgi

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
)

// TestWriteNPH: under an nph- name every answer, errors included, is a
// complete HTTP response; a handed-over connection gets nothing.
func TestWriteNPH(t *testing.T) {
	var b bytes.Buffer
	resp := errorResponse(501, ErrNoSocket, "pipe")
	if err := resp.Write(&b, false, true); err != nil {
		t.Fatal(err)
	}
	want := "HTTP/1.1 501 Not Implemented\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\n" +
		"X-Content-Type-Options: nosniff\r\nContent-Length: 38\r\n\r\n{\"error\":\"no_socket\",\"reason\":\"pipe\"}\n"
	if b.String() != want {
		t.Errorf("nph answer\n%q\nwant\n%q", b.String(), want)
	}
	if len(resp.Header) != 2 {
		t.Errorf("WriteNPH changed the response's headers: %v", resp.Header)
	}
	b.Reset()
	resp.Write(&b, false, false)
	if !strings.HasPrefix(b.String(), "Status: 501 Not Implemented\r\n") {
		t.Errorf("CGI answer %q", b.String())
	}
	b.Reset()
	if err := (Response{HandedOver: true}).Write(&b, false, true); err != nil || b.Len() != 0 {
		t.Errorf("handed over: wrote %q, %v", b.String(), err)
	}
}

// socketFile is one end of a unix socket pair, standing for the client's
// socket a web server gives an nph CGI.
func socketFile(t *testing.T) *os.File {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

// TestServeWSRefused: ?ws is refused, before any supervisor is asked,
// under a plain name, on a pipe, without upgrade headers, without or
// with a cross-site Origin, and from a host not allowed.
func TestServeWSRefused(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "none.conf"), testAssets)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	sock := socketFile(t)
	up := Request{Method: "GET", Host: "127.0.0.1:8080", Origin: "http://127.0.0.1:8080", Query: "ws&token=abc",
		NPH: true, Socket: sock, Upgrade: "websocket", WSKey: "dGhlIHNhbXBsZSBub25jZQ==", WSVersion: "13", WSProtocol: "livecgi.v1"}
	with := func(f func(r *Request)) Request {
		r := up
		f(&r)
		return r
	}
	tests := []struct {
		name   string
		req    Request
		status int
		code   string
	}{
		{"plain name", with(func(r *Request) { r.NPH = false }), 400, ErrBadRequest},
		{"pipe", with(func(r *Request) { r.Socket = w }), 501, ErrNoSocket},
		{"no stdout", with(func(r *Request) { r.Socket = nil }), 501, ErrNoSocket},
		{"no upgrade headers", with(func(r *Request) { r.Upgrade, r.WSKey, r.WSVersion = "", "", "" }), 501, ErrNoUpgrade},
		{"no key", with(func(r *Request) { r.WSKey = "" }), 501, ErrNoUpgrade},
		{"key not printable", with(func(r *Request) { r.WSKey = "a\r\nX-Evil: 1" }), 400, ErrBadRequest},
		{"no origin", with(func(r *Request) { r.Origin = "" }), 403, ErrCrossSite},
		{"cross-site", with(func(r *Request) { r.Origin = "http://evil.example" }), 403, ErrCrossSite},
		{"null origin", with(func(r *Request) { r.Origin = "null" }), 403, ErrCrossSite},
		{"host not allowed", with(func(r *Request) { r.Host, r.Origin = "evil.example", "http://evil.example" }), 403, ErrHost},
		{"no token", with(func(r *Request) { r.Query = "ws" }), 400, ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, s, tt.req)
			if resp.HandedOver {
				t.Fatal("handed over")
			}
			wantError(t, resp, tt.status, tt.code)
		})
	}
}

func TestParseQueryWS(t *testing.T) {
	if a, err := ParseQuery("ws&token=abc-_9"); a != ActionWS || err != nil {
		t.Errorf("ws&token: %v %v", a, err)
	}
	if a, err := ParseQuery("token=abc&ws&_=1"); a != ActionWS || err != nil {
		t.Errorf("token&ws: %v %v", a, err)
	}
	for _, q := range []string{"ws", "token=abc", "connect&token=abc", "ws&token=a&token=b", "ws&token=a%20b", "ws&token=", "ws=1&token=a", "ws&connect&token=a"} {
		if a, err := ParseQuery(q); err == nil {
			t.Errorf("ParseQuery(%q) = %v, want an error", q, a)
		}
	}
}

// TestTransportURLs: the same-port URL only when nph-<name> beside the
// stub is the stub; the direct URL's scheme, port and base from TLS,
// public_port and public_url, and whether an HTTPS page may use it.
func TestTransportURLs(t *testing.T) {
	dir := t.TempDir()
	stub := filepath.Join(dir, "live.cgi")
	os.WriteFile(stub, []byte("stub"), 0o755)
	host := HostPort{Host: "device.lan", Port: "8080"}
	r := Request{ScriptName: "/cgi-bin/live.cgi", ScriptFilename: stub}
	if u, ok := samePortURL(r, host); ok {
		t.Errorf("without nph-live.cgi: %q", u)
	}
	os.WriteFile(filepath.Join(dir, "nph-live.cgi"), []byte("other"), 0o755)
	if u, ok := samePortURL(r, host); ok {
		t.Errorf("nph-live.cgi another file: %q", u)
	}
	os.Remove(filepath.Join(dir, "nph-live.cgi"))
	os.Symlink("live.cgi", filepath.Join(dir, "nph-live.cgi"))
	if u, ok := samePortURL(r, host); !ok || u != "ws://device.lan:8080/cgi-bin/nph-live.cgi?ws&token=" {
		t.Errorf("with the link: %q %v", u, ok)
	}
	r.HTTPS = true
	if u, _ := samePortURL(r, host); u != "wss://device.lan:8080/cgi-bin/nph-live.cgi?ws&token=" {
		t.Errorf("over HTTPS: %q", u)
	}
	self := Request{ScriptName: "/nph-live.cgi", ScriptFilename: filepath.Join(dir, "nph-live.cgi")}
	if u, _ := samePortURL(self, host); u != "ws://device.lan:8080/nph-live.cgi?ws&token=" {
		t.Errorf("the nph stub itself: %q", u)
	}

	direct := []struct {
		https, tls bool
		edit       func(c *config.Config)
		want       string
		usable     bool
	}{
		{false, false, nil, "ws://device.lan:8081", true},
		{true, false, nil, "ws://device.lan:8081", false},
		{true, true, nil, "wss://device.lan:8081", true},
		{false, true, nil, "wss://device.lan:8081", true},
		{false, false, func(c *config.Config) { c.PublicPort = 9000 }, "ws://device.lan:9000", true},
		{true, false, func(c *config.Config) { c.PublicURL = "wss://proxy.example/livecgi/" }, "wss://proxy.example/livecgi", true},
		{true, false, func(c *config.Config) { c.PublicURL = "ws://device.lan:9000" }, "ws://device.lan:9000", false},
	}
	for _, d := range direct {
		s := &Stub{Config: config.Default()}
		if d.edit != nil {
			d.edit(&s.Config)
		}
		got, ok := s.directBase(Request{HTTPS: d.https}, host, control.Status{Port: 8081, TLS: d.tls})
		if got != d.want || ok != d.usable {
			t.Errorf("https %v, tls %v, %+v: %q %v, want %q %v", d.https, d.tls, s.Config.PublicURL, got, ok, d.want, d.usable)
		}
	}
}

// connectAsBoa runs the built stub bin the way boa 0.94.14rc21 runs
// dir/name: in dir, as ./name, with SCRIPT_NAME /cgi-bin/name and no
// SCRIPT_FILENAME; it returns the connect document's transports.
func connectAsBoa(t *testing.T, bin, dir, name string) []control.Transport {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, name))
	cmd.Args[0] = "./" + name
	cmd.Dir = dir
	for _, kv := range cgiEnv("connect") {
		if strings.HasPrefix(kv, "SCRIPT_NAME=") {
			kv = "SCRIPT_NAME=/cgi-bin/" + name
		}
		cmd.Env = append(cmd.Env, kv)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %q", name, err, out)
	}
	return mustConnect(t, out).Transports
}

// TestSamePortWithoutScriptFilename: under boa, which sets no
// SCRIPT_FILENAME, the stub finds its own file (SCRIPT_NAME's base name in
// the working directory, the program running) and offers same-port when
// an nph- link to it is beside it: beside the script the server ran, also
// when that is itself a link to a stub kept elsewhere.
func TestSamePortWithoutScriptFilename(t *testing.T) {
	e := mustEnv(t)
	bin := mustBuildStub(t, e.conf)
	cgiBin := filepath.Join(e.dir, "cgi-bin")
	os.Mkdir(cgiBin, 0o755)
	stub, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cgiBin, "live.cgi"), stub, 0o755); err != nil {
		t.Fatal(err)
	}
	samePort := func(trs []control.Transport) string {
		for _, tr := range trs {
			if tr.Kind == control.TransportSamePort {
				return tr.URL
			}
		}
		return ""
	}
	if u := samePort(connectAsBoa(t, bin, cgiBin, "live.cgi")); u != "" {
		t.Errorf("without nph-live.cgi: same-port %s", u)
	}
	os.Symlink("live.cgi", filepath.Join(cgiBin, "nph-live.cgi"))
	want := "ws://127.0.0.1:8080/cgi-bin/nph-live.cgi?ws&token="
	if u := samePort(connectAsBoa(t, bin, cgiBin, "live.cgi")); !strings.HasPrefix(u, want) {
		t.Errorf("with nph-live.cgi beside live.cgi: same-port %q, want %s<token>", u, want)
	}

	// cgi-bin/live.cgi a link to the stub in another directory: the nph-
	// link counts beside the script, not beside the stub's real file.
	lib := filepath.Join(e.dir, "lib")
	os.Mkdir(lib, 0o755)
	os.Rename(filepath.Join(cgiBin, "live.cgi"), filepath.Join(lib, "live.cgi"))
	os.Remove(filepath.Join(cgiBin, "nph-live.cgi"))
	os.Symlink(filepath.Join(lib, "live.cgi"), filepath.Join(cgiBin, "live.cgi"))
	os.Symlink("live.cgi", filepath.Join(lib, "nph-live.cgi"))
	if u := samePort(connectAsBoa(t, bin, cgiBin, "live.cgi")); u != "" {
		t.Errorf("nph-live.cgi only beside the stub's real file: same-port %s", u)
	}
	os.Symlink("live.cgi", filepath.Join(cgiBin, "nph-live.cgi"))
	if u := samePort(connectAsBoa(t, bin, cgiBin, "live.cgi")); !strings.HasPrefix(u, want) {
		t.Errorf("live.cgi and nph-live.cgi links to a stub elsewhere: same-port %q, want %s<token>", u, want)
	}

	// SCRIPT_NAME naming another file of the directory than the one
	// running: not ours, nothing offered.
	os.WriteFile(filepath.Join(cgiBin, "other.cgi"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("other.cgi", filepath.Join(cgiBin, "nph-other.cgi"))
	t.Chdir(cgiBin)
	if f := scriptFile("/cgi-bin/other.cgi", "./live.cgi"); f != "" {
		t.Errorf("scriptFile for another program: %q", f)
	}
	if f := scriptFile("/cgi-bin/live.cgi", "./live.cgi"); f != filepath.Join(cgiBin, "live.cgi") {
		t.Errorf("scriptFile: %q", f)
	}
}

// TestNoSocketRemembered: once nph-live.cgi has answered no_socket (the
// server gave it a pipe), ?connect stops offering same-port under that
// server (SERVER_SOFTWARE and SERVER_PORT) and stub (its size and
// mtime); another server or a new stub is offered it again. A no_upgrade
// answer, which any plain GET gets, changes nothing.
func TestNoSocketRemembered(t *testing.T) {
	e := mustEnv(t)
	s := New(e.conf, testAssets)
	dir := t.TempDir()
	stub := filepath.Join(dir, "live.cgi")
	os.WriteFile(stub, []byte("stub"), 0o755)
	os.Symlink("live.cgi", filepath.Join(dir, "nph-live.cgi"))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	busybox := Request{Method: "GET", Host: "127.0.0.1:8080", Query: "connect", ScriptName: "/cgi-bin/live.cgi", ScriptFilename: stub,
		ServerSoftware: "busybox httpd/1.36.1", ServerPort: "8080"}
	offered := func(r Request) bool {
		t.Helper()
		resp := serve(t, s, r)
		if resp.Status != 200 {
			t.Fatalf("connect: %d %s", resp.Status, resp.Body)
		}
		var c control.Connect
		if err := json.Unmarshal(resp.Body, &c); err != nil {
			t.Fatal(err)
		}
		return len(c.Transports) > 0 && c.Transports[0].Kind == control.TransportSamePort
	}
	ws := func(r Request, socket *os.File) Request {
		r.Query, r.NPH, r.Socket, r.ScriptName = "ws&token=abc", true, socket, "/cgi-bin/nph-live.cgi"
		r.ScriptFilename = filepath.Join(dir, "nph-live.cgi")
		r.Origin = "http://" + r.Host
		return r
	}
	if !offered(busybox) {
		t.Fatal("same-port not offered before any attempt")
	}
	// Any GET of the URL answers no_upgrade: not a fact about the server.
	wantError(t, serve(t, s, ws(busybox, socketFile(t))), 501, ErrNoUpgrade)
	if !offered(busybox) {
		t.Error("same-port not offered after a no_upgrade answer")
	}
	wantError(t, serve(t, s, ws(busybox, w)), 501, ErrNoSocket)
	if offered(busybox) {
		t.Error("same-port offered after the server gave nph-live.cgi a pipe")
	}
	wantError(t, serve(t, s, ws(busybox, w)), 501, ErrNoSocket)
	if b, _ := os.ReadFile(filepath.Join(e.state, noSocketFile)); strings.Count(string(b), "\n") != 1 {
		t.Errorf("%s after two attempts: %q, want one line", noSocketFile, b)
	}
	if log, _ := os.ReadFile(filepath.Join(e.state, control.StubLogFile)); strings.Count(string(log), "gives nph CGIs a pipe") != 1 {
		t.Errorf("stub log: %q, want the pipe told once", log)
	}

	other := busybox
	other.ServerPort = "8081"
	if !offered(other) {
		t.Error("same-port not offered under a server on another port")
	}
	other = busybox
	other.ServerSoftware = "Boa/0.94.14rc21"
	if !offered(other) {
		t.Error("same-port not offered under another server on the same port")
	}
	later := time.Now().Add(time.Minute)
	os.Chtimes(stub, later, later)
	if !offered(busybox) {
		t.Error("same-port not offered by a new stub")
	}

	// At most maxNoSocket servers are remembered, the latest.
	for port := range maxNoSocket + 2 {
		r := busybox
		r.ServerPort = strconv.Itoa(9000 + port)
		wantError(t, serve(t, s, ws(r, w)), 501, ErrNoSocket)
	}
	b, _ := os.ReadFile(filepath.Join(e.state, noSocketFile))
	if lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); len(lines) != maxNoSocket || !strings.Contains(lines[maxNoSocket-1], `port "9009"`) {
		t.Errorf("%s: %q, want the latest %d", noSocketFile, lines, maxNoSocket)
	}
}
