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
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
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
	cmd := exec.Command(file)
	cmd.Dir = filepath.Dir(file)
	cmd.Env = cgiEnv(req, c, p, file)
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

// cgiEnv is the environment boa rc21 gives a CGI.
func cgiEnv(req *http.Request, c net.Conn, script, file string) []string {
	raddr, rport, _ := net.SplitHostPort(c.RemoteAddr().String())
	_, lport, _ := net.SplitHostPort(c.LocalAddr().String())
	env := []string{
		"PATH=/usr/bin:/bin",
		"GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_SOFTWARE=nphd (boa/0.94.14rc21 CGI behaviour)",
		"SERVER_PROTOCOL=" + req.Proto,
		"SERVER_PORT=" + lport,
		"REQUEST_METHOD=" + req.Method,
		"REQUEST_URI=" + req.RequestURI,
		"QUERY_STRING=" + req.URL.RawQuery,
		"SCRIPT_NAME=" + script,
		"SCRIPT_FILENAME=" + file,
		"REMOTE_ADDR=" + raddr,
		"REMOTE_PORT=" + rport,
		"HTTP_HOST=" + req.Host,
	}
	if req.ContentLength > 0 {
		env = append(env, "CONTENT_LENGTH="+strconv.FormatInt(req.ContentLength, 10), "CONTENT_TYPE="+req.Header.Get("Content-Type"))
	}
	for k, vs := range req.Header {
		if k == "Connection" || k == "Content-Length" || k == "Content-Type" {
			continue
		}
		env = append(env, "HTTP_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_"))+"="+strings.Join(vs, ", "))
	}
	return env
}

func answer(c net.Conn, status int, ctype string, body []byte) {
	fmt.Fprintf(c, "HTTP/1.0 %d %s\r\nConnection: close\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", status, http.StatusText(status), ctype, len(body))
	c.Write(body)
}
