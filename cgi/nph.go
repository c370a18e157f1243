package cgi

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// The same-port WebSocket. boa 0.94.14rc21 runs a CGI whose name starts
// with nph- with the browser's TCP socket as stdout and every request
// header as HTTP_*; it does not shut the socket down when the CGI exits.
// So nph-live.cgi (the stub under that name) answers ?ws&token=T by
// passing its stdout to the supervisor (control.SendHandOver), which
// writes the 101 and serves the browser like any other: a WebSocket on the
// web server's own port. Servers that give a pipe (busybox httpd,
// lighttpd, boa 0.94.13) or drop the upgrade headers (mini_httpd) get a
// clear 501, and the client tries its next transport.

// isNPH reports whether a program or script name is an nph one.
func isNPH(name string) bool {
	return strings.HasPrefix(filepath.Base(name), "nph-")
}

// isSocket reports whether f is a socket.
func isSocket(f *os.File) bool {
	if f == nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return st.Mode&syscall.S_IFMT == syscall.S_IFSOCK
}

// handOver answers ?ws under an nph- name: the checks of ?connect (Host
// and Origin on an allowed host of the same site: a cross-site page gets
// no socket), then the browser's connection and its upgrade request go to
// the supervisor, which verifies the token and answers the browser.
func (s *Stub) handOver(ctx context.Context, r Request) Response {
	if !r.NPH {
		return errorResponse(400, ErrBadRequest, "?ws is served by the stub under an nph- name (nph-live.cgi), which gets the browser's connection")
	}
	if !isSocket(r.Socket) {
		s.noSocket(r)
		return errorResponse(501, ErrNoSocket, "this web server gives nph CGIs a pipe, not the browser's connection: no WebSocket on its port; use another transport")
	}
	if !strings.EqualFold(r.Upgrade, "websocket") || r.WSKey == "" || r.WSVersion == "" {
		return errorResponse(501, ErrNoUpgrade, "no Upgrade: websocket, Sec-WebSocket-Key and Sec-WebSocket-Version: this web server does not pass them to nph CGIs (or this is no WebSocket request); use another transport")
	}
	for _, v := range []string{r.WSKey, r.WSVersion, r.WSProtocol} {
		if len(v) > 256 || strings.IndexFunc(v, func(c rune) bool { return c < 0x20 || c > 0x7e }) >= 0 {
			return errorResponse(400, ErrBadRequest, "Sec-WebSocket-* header too long or not printable ASCII")
		}
	}
	if r.Origin == "" {
		return errorResponse(403, ErrCrossSite, "a WebSocket upgrade without an Origin header")
	}
	origin, host, st, refused := s.site(r)
	if refused != nil {
		return *refused
	}
	if _, err := st.ensure(ctx); err != nil {
		return supervisorRefused(err)
	}
	_, params, _ := ParseParams(r.Query)
	token := params.Token
	var b strings.Builder
	b.WriteString("GET /live?token=" + token + " HTTP/1.1\r\n")
	b.WriteString("Host: " + host.String() + "\r\n")
	b.WriteString("Origin: " + origin + "\r\n")
	b.WriteString("Upgrade: websocket\r\nConnection: Upgrade\r\n")
	b.WriteString("Sec-WebSocket-Key: " + r.WSKey + "\r\n")
	b.WriteString("Sec-WebSocket-Version: " + r.WSVersion + "\r\n")
	if r.WSProtocol != "" {
		b.WriteString("Sec-WebSocket-Protocol: " + r.WSProtocol + "\r\n")
	}
	b.WriteString("\r\n")
	if err := control.SendHandOver(st.stateDir, int(r.Socket.Fd()), []byte(b.String()), 2*time.Second); err != nil {
		st.log("%v", err)
		return errorResponse(503, ErrSupervisor, err.Error())
	}
	return Response{HandedOver: true}
}

// A server that gives nph CGIs a pipe (busybox httpd, lighttpd, boa
// 0.94.13) sets SCRIPT_FILENAME or runs the stub as boa does, so ?connect
// would offer same-port there, and every client would spend a request on
// a 501 before the next transport. The first no_socket answer is
// remembered in the state dir (noSocketFile), and ?connect offers
// same-port no more under that server with that stub. Keyed on:
//   - the server, SERVER_SOFTWARE and SERVER_PORT: whether an nph CGI gets
//     the socket is the server's doing (boa rc21 always gives it, the
//     others never), so another server in its place (a firmware update,
//     a different server, or a second one on another port sharing the
//     state dir) is tried afresh;
//   - the stub's file, its size and mtime: a new stub (make install) may
//     judge differently, and an admin setting things up again expects a
//     fresh start.
// No other answer is remembered: no_upgrade also answers a plain GET of
// the URL (anyone can send one), which says nothing about the server.
// The state dir is a tmpfs on most devices: after a reboot one client
// pays the 501 again.

const (
	noSocketFile = "nph-pipe" // in the state dir: one key a line
	maxNoSocket  = 8          // servers remembered
)

// noSocketKey names the server and stub of r (see above); "" when the
// stub's file is not known.
func noSocketKey(r Request) string {
	if r.ScriptFilename == "" {
		return ""
	}
	fi, err := os.Stat(r.ScriptFilename)
	if err != nil {
		return ""
	}
	return "server " + quote(r.ServerSoftware) + " port " + quote(r.ServerPort) +
		" stub " + strconv.FormatInt(fi.Size(), 10) + " " + strconv.FormatInt(fi.ModTime().UnixNano(), 10)
}

// noSocketKnown reports whether key is remembered in dir as a server
// that gives nph CGIs a pipe.
func noSocketKnown(dir, key string) bool {
	b, _ := os.ReadFile(filepath.Join(dir, noSocketFile))
	for _, line := range strings.Split(string(b), "\n") {
		if line == key && key != "" {
			return true
		}
	}
	return false
}

// noSocket remembers that the server of r gave nph-live.cgi a pipe, and
// logs it once. The file is replaced by rename: a reader never sees half
// of it; of two stubs writing at once one may be lost, and is written by
// the next attempt.
func (s *Stub) noSocket(r Request) {
	key := noSocketKey(r)
	if key == "" || s.ConfigErr != nil {
		return
	}
	st, err := s.starter()
	if err != nil || noSocketKnown(st.stateDir, key) {
		return
	}
	file := filepath.Join(st.stateDir, noSocketFile)
	var lines []string
	if b, err := os.ReadFile(file); err == nil && len(b) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	lines = append(lines, key)
	if len(lines) > maxNoSocket {
		lines = lines[len(lines)-maxNoSocket:]
	}
	tmp, err := os.CreateTemp(st.stateDir, noSocketFile+".*")
	if err == nil {
		_, err = tmp.WriteString(strings.Join(lines, "\n") + "\n")
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), file)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		st.log("same-port: remember that this server gives nph CGIs a pipe: %v", err)
		return
	}
	st.log("same-port: the web server (%s) gives nph CGIs a pipe, not the browser's connection: not offered any more until the server or live.cgi changes", key)
}

// scriptFile finds the file the web server ran when it set no
// SCRIPT_FILENAME: boa 0.94.14rc21 runs a CGI in the script's directory
// as ./<name>, so it is SCRIPT_NAME's base name in the working directory,
// if that file is the program running (argv[0] as run, else
// /proc/self/exe). That is where an nph- sibling must be, even when the
// file is a link to a stub kept elsewhere. "" if it is not found.
func scriptFile(scriptName, arg0 string) string {
	name := path.Base(scriptName)
	if !strings.HasPrefix(scriptName, "/") || name == "/" {
		return ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	file := filepath.Join(wd, name)
	fi, err := os.Stat(file)
	if err != nil {
		return ""
	}
	for _, self := range []string{arg0, "/proc/self/exe"} {
		if s, err := os.Stat(self); self != "" && err == nil && os.SameFile(fi, s) {
			return file
		}
	}
	return ""
}

// samePortURL returns the same-port WebSocket URL up to the token, if the
// stub is reachable under an nph- name: nph-<name> beside the stub's file,
// the same file (a symlink or a hard link), or the stub itself under such
// a name.
func samePortURL(r Request, host HostPort) (string, bool) {
	if r.ScriptName == "" || r.ScriptFilename == "" {
		return "", false
	}
	name := filepath.Base(r.ScriptFilename)
	if !isNPH(name) {
		name = "nph-" + name
		self, err1 := os.Stat(r.ScriptFilename)
		nph, err2 := os.Stat(filepath.Join(filepath.Dir(r.ScriptFilename), name))
		if err1 != nil || err2 != nil || !os.SameFile(self, nph) {
			return "", false
		}
	}
	dir := r.ScriptName[:strings.LastIndexByte(r.ScriptName, '/')+1]
	if dir == "" {
		dir = "/"
	}
	scheme := "ws://"
	if r.HTTPS {
		scheme = "wss://"
	}
	return scheme + host.String() + dir + name + "?ws&token=", true
}

// directBase returns the scheme and authority (and path, with
// public_url) browsers dial the supervisor's own port by, and whether a
// page loaded as r may use it: a page over HTTPS may not use ws://.
func (s *Stub) directBase(r Request, host HostPort, st control.Status) (string, bool) {
	if scheme, rest, _ := s.Config.PublicBase(); scheme != "" {
		return scheme + "://" + rest, !r.HTTPS || scheme == "wss"
	}
	port := st.Port
	if s.Config.PublicPort != 0 {
		port = s.Config.PublicPort
	}
	scheme := "ws://"
	if st.TLS {
		scheme = "wss://"
	}
	return scheme + host.Host + ":" + strconv.Itoa(port), !r.HTTPS || st.TLS
}
