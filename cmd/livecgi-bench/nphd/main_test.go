package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain runs this test binary as the CGI of TestEnv when it is started
// under one of its names: it prints its arguments, working directory and
// environment, one per line, as a CGI (or an nph CGI) answer.
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "printenv.cgi":
		fmt.Print("Content-Type: text/plain\r\n\r\n")
	case "nph-printenv.cgi":
		fmt.Print("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
	default:
		os.Exit(m.Run())
	}
	for _, a := range os.Args {
		fmt.Printf("arg %s\n", a)
	}
	wd, _ := os.Getwd()
	fmt.Printf("cwd %s\n", wd)
	for _, kv := range os.Environ() {
		fmt.Printf("env %s\n", kv)
	}
	os.Exit(0)
}

// TestEnv: a CGI under nphd gets exactly the environment boa 0.94.14rc21
// gives (boaEnv, QUERY_STRING when there is a query, the request's
// headers as HTTP_*), no SCRIPT_FILENAME or anything else; it runs in its
// directory as ./<name>, with the words of a query without "=" as
// arguments. The same for an nph CGI.
func TestEnv(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cgiBin := filepath.Join(root, "cgi-bin")
	os.Mkdir(cgiBin, 0o755)
	for _, name := range []string{"printenv.cgi", "nph-printenv.cgi"} {
		if err := os.Symlink(self, filepath.Join(cgiBin, name)); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c.(*net.TCPConn), root)
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	wantCwd, _ := filepath.EvalSymlinks(cgiBin)

	for _, tc := range []struct {
		name, query string
		args        []string
	}{
		{"printenv.cgi", "", nil},
		{"printenv.cgi", "connect", []string{"connect"}},
		{"printenv.cgi", "ws&token=abc", nil},
		{"printenv.cgi", "a+b%20c", []string{"a", "b c"}},
		{"nph-printenv.cgi", "ws&token=abc", nil},
	} {
		t.Run(tc.name+"?"+tc.query, func(t *testing.T) {
			uri := "/cgi-bin/" + tc.name
			if tc.query != "" {
				uri += "?" + tc.query
			}
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", uri, port, port)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v %s", resp.Status, err, body)
			}
			var args, names []string
			env := map[string]string{}
			cwd := ""
			for _, line := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
				kind, v, _ := strings.Cut(line, " ")
				switch kind {
				case "arg":
					args = append(args, v)
				case "cwd":
					cwd = v
				case "env":
					k, val, _ := strings.Cut(v, "=")
					names = append(names, k)
					env[k] = val
				}
			}
			if want := append([]string{"./" + tc.name}, tc.args...); !slices.Equal(args, want) {
				t.Errorf("argv %q, want %q", args, want)
			}
			if cwd != wantCwd {
				t.Errorf("working directory %s, want the script's, %s", cwd, wantCwd)
			}
			want := append([]string{}, boaEnv...)
			if tc.query != "" {
				want = append(want, "QUERY_STRING")
			}
			want = append(want, "HTTP_HOST", "HTTP_ORIGIN", "HTTP_UPGRADE", "HTTP_SEC_WEBSOCKET_KEY", "HTTP_SEC_WEBSOCKET_VERSION")
			slices.Sort(want)
			slices.Sort(names)
			if !slices.Equal(names, want) {
				t.Errorf("environment\n%q\nwant exactly\n%q", names, want)
			}
			if env["SCRIPT_NAME"] != "/cgi-bin/"+tc.name || env["REQUEST_URI"] != uri || env["QUERY_STRING"] != tc.query ||
				env["SERVER_PORT"] != fmt.Sprint(port) || env["HTTP_HOST"] != fmt.Sprintf("127.0.0.1:%d", port) {
				t.Errorf("values: %q", env)
			}
		})
	}
}
