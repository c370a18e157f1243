// Command nphd is a web server that runs CGIs the way boa 0.94.14rc21
// does, for tests and benchmarks of the same-port WebSocket: a CGI whose
// name starts with nph- gets the client's TCP socket itself as stdout
// (stdin and stderr /dev/null), every request header as HTTP_* (but
// Connection, which boa eats), and when it exits the server closes only
// its own copy of the socket, never shutting it down: a process that
// still holds the descriptor keeps talking to the client. Other CGIs are
// run over a pipe and their "Status:" answer turned into an HTTP/1.0 one;
// other files under -root are served as they are. One request per
// connection.
//
// Every CGI gets the environment boa rc21 gives (boaEnv), no more: no
// SCRIPT_FILENAME, no DOCUMENT_ROOT. It runs in its own directory as
// ./<name>, with the words of a query without "=" as arguments, as boa
// runs it.
//
//	nphd -root DOCROOT -listen 127.0.0.1:0
//
// It prints "listening PORT" on stdout once it accepts.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

func main() {
	root := flag.String("root", ".", "document `dir`; CGIs under its cgi-bin")
	listen := flag.String("listen", "127.0.0.1:0", "listen `address`")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nphd:", err)
		os.Exit(1)
	}
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "nphd:", err)
			os.Exit(1)
		}
		go serve(c.(*net.TCPConn), *root)
	}
}

func serve(c *net.TCPConn, root string) {
	defer c.Close() // our copy only, as boa: no shutdown
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	p := path.Clean(req.URL.Path)
	file := filepath.Join(root, filepath.FromSlash(p))
	fi, err := os.Stat(file)
	if err != nil || fi.IsDir() {
		answer(c, 404, "text/plain", []byte("not found\n"))
		return
	}
	if !strings.HasPrefix(p, "/cgi-bin/") {
		b, _ := os.ReadFile(file)
		answer(c, 200, mime.TypeByExtension(filepath.Ext(file)), b)
		return
	}
	// boa chdirs to the script's directory and runs it as ./<name>.
	cmd := exec.Command(file, queryWords(req.URL.RawQuery)...)
	cmd.Args[0] = "./" + filepath.Base(file)
	cmd.Dir = filepath.Dir(file)
	cmd.Env = cgiEnv(req, c, p)
	if strings.HasPrefix(path.Base(p), "nph-") {
		f, err := c.File() // a copy of the socket for the CGI's stdout
		if err != nil {
			return
		}
		cmd.Stdout = f
		cmd.Run()
		f.Close()
		return
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil && out.Len() == 0 {
		answer(c, 500, "text/plain", []byte(err.Error()+"\n"))
		return
	}
	head, body, _ := bytes.Cut(out.Bytes(), []byte("\r\n\r\n"))
	status := "200 OK"
	var b bytes.Buffer
	for _, line := range strings.Split(string(head), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Status: "); ok {
			status = v
			continue
		}
		b.WriteString(line + "\r\n")
	}
	io.WriteString(c, "HTTP/1.0 "+status+"\r\nConnection: close\r\n")
	c.Write(b.Bytes())
	io.WriteString(c, "\r\n")
	c.Write(body)
}

// boaEnv is every variable boa 0.94.14rc21 gives a CGI for a GET,
// measured on the real server with a CGI printing its environment, and
// besides these only:
//   - QUERY_STRING, when the request has a query;
//   - HTTP_<NAME> for each request header but Connection (boa eats it),
//     Content-Type and Content-Length;
//   - CONTENT_TYPE and CONTENT_LENGTH for a POST (boa's complete_env).
//
// Not SCRIPT_FILENAME, not DOCUMENT_ROOT: a test server that gives more
// than the server it imitates lets tests pass that fail on the real one.
// cgiEnv gives these and nothing else; TestEnv holds it to them.
var boaEnv = []string{
	"GATEWAY_INTERFACE",
	"PATH",
	"REMOTE_ADDR",
	"REMOTE_PORT",
	"REQUEST_METHOD",
	"REQUEST_URI",
	"SCRIPT_NAME",
	"SERVER_ADDR",
	"SERVER_ADMIN",
	"SERVER_NAME",
	"SERVER_PORT",
	"SERVER_PROTOCOL",
	"SERVER_SOFTWARE",
}

// cgiEnv is the environment boa rc21 gives a CGI at URL path script
// (boaEnv).
func cgiEnv(req *http.Request, c net.Conn, script string) []string {
	raddr, rport, _ := net.SplitHostPort(c.RemoteAddr().String())
	laddr, lport, _ := net.SplitHostPort(c.LocalAddr().String())
	vars := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"PATH":              "/usr/bin:/bin",
		"REMOTE_ADDR":       raddr,
		"REMOTE_PORT":       rport,
		"REQUEST_METHOD":    req.Method,
		"REQUEST_URI":       req.RequestURI,
		"SCRIPT_NAME":       script,
		"SERVER_ADDR":       laddr,
		"SERVER_ADMIN":      "",
		"SERVER_NAME":       "localhost",
		"SERVER_PORT":       lport,
		"SERVER_PROTOCOL":   req.Proto,
		"SERVER_SOFTWARE":   "nphd (boa/0.94.14rc21 CGI behaviour)",
	}
	env := make([]string, 0, len(boaEnv)+len(req.Header)+3)
	for _, k := range boaEnv {
		env = append(env, k+"="+vars[k])
	}
	if req.URL.RawQuery != "" {
		env = append(env, "QUERY_STRING="+req.URL.RawQuery)
	}
	if req.Method == "POST" {
		env = append(env, "CONTENT_TYPE="+req.Header.Get("Content-Type"))
		if v := req.Header.Get("Content-Length"); v != "" {
			env = append(env, "CONTENT_LENGTH="+v)
		}
	}
	for k, vs := range req.Header {
		if k == "Connection" || k == "Content-Length" || k == "Content-Type" {
			continue
		}
		env = append(env, "HTTP_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_"))+"="+strings.Join(vs, ", "))
	}
	if req.Host != "" { // http.ReadRequest moves Host out of the header map
		env = append(env, "HTTP_HOST="+req.Host)
	}
	return env
}

// queryWords are the arguments boa gives a CGI: the words of a query
// string with no "=", split at "+" and unescaped (a word that does not
// unescape is left out).
func queryWords(q string) []string {
	if q == "" || strings.Contains(q, "=") {
		return nil
	}
	var words []string
	for _, w := range strings.Split(q, "+") {
		if u, err := url.PathUnescape(w); err == nil {
			words = append(words, u)
		}
	}
	return words
}

func answer(c net.Conn, status int, ctype string, body []byte) {
	fmt.Fprintf(c, "HTTP/1.0 %d %s\r\nConnection: close\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", status, http.StatusText(status), ctype, len(body))
	c.Write(body)
}
