package ctlserver

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

const testUpgrade = "GET /live?token=t HTTP/1.1\r\nHost: h\r\n\r\n"

// serveHandOvers serves the control socket in dir, handing every
// connection it is passed to got.
func serveHandOvers(t *testing.T, dir string) (got chan net.Conn, requests chan string) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(dir, control.ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	got, requests = make(chan net.Conn, 4), make(chan string, 4)
	ctl := Control{
		Status: func() control.Status { return control.Status{PID: 1, Port: 2} },
		HandOver: func(c net.Conn, request []byte) error {
			got <- c
			requests <- string(request)
			return nil
		},
	}
	go ctl.Serve(ctx, ln)
	return got, requests
}

// tcpPair returns both ends of a TCP connection on loopback.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestHandOver: a TCP connection passed over the control socket reaches
// the supervisor's side whole, with its request, and works there after
// the sender closed its copy; "status" still works beside it.
func TestHandOver(t *testing.T) {
	dir := t.TempDir()
	got, requests := serveHandOvers(t, dir)
	client, server := tcpPair(t)
	f, err := server.File()
	if err != nil {
		t.Fatal(err)
	}
	if err := control.SendHandOver(dir, int(f.Fd()), []byte(testUpgrade), 5*time.Second); err != nil {
		t.Fatalf("SendHandOver: %v", err)
	}
	f.Close()
	server.Close() // the web server's and the stub's copies are gone
	c := <-got
	defer c.Close()
	if r := <-requests; r != testUpgrade {
		t.Errorf("request %q, want %q", r, testUpgrade)
	}
	if _, err := c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || line != "HTTP/1.1 101 Switching Protocols\r\n" {
		t.Errorf("client read %q, %v", line, err)
	}
	if st, err := control.Probe(context.Background(), dir); err != nil || st.Port != 2 {
		t.Errorf("probe beside hand-overs: %+v, %v", st, err)
	}
}

// TestHandOverRefused: a pipe, a request without the descriptor, and a
// supervisor that takes no hand-overs are refused with a reason, and the
// handler never sees them.
func TestHandOverRefused(t *testing.T) {
	dir := t.TempDir()
	got, _ := serveHandOvers(t, dir)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := control.SendHandOver(dir, int(w.Fd()), []byte(testUpgrade), 5*time.Second); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("a pipe: %v, want not a socket", err)
	}
	u, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer u.Close()
	uf, _ := u.(*net.UDPConn).File()
	defer uf.Close()
	if err := control.SendHandOver(dir, int(uf.Fd()), []byte(testUpgrade), 5*time.Second); err == nil || !strings.Contains(err.Error(), "not a TCP connection") {
		t.Errorf("a UDP socket: %v, want not a TCP connection", err)
	}
	// The verb without a descriptor.
	c, err := net.Dial("unix", filepath.Join(dir, control.ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(control.HandOverVerb + testUpgrade))
	b, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(b), "error want exactly one descriptor, got 0") {
		t.Errorf("hand-over without a descriptor: %q", b)
	}
	select {
	case c := <-got:
		t.Errorf("handler got %v", c.RemoteAddr())
	default:
	}

	dir2 := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir2, control.ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, ln, func() control.Status { return control.Status{} })
	_, server := tcpPair(t)
	f, _ := server.File()
	defer f.Close()
	if err := control.SendHandOver(dir2, int(f.Fd()), []byte(testUpgrade), 5*time.Second); err == nil || !strings.Contains(err.Error(), "takes no hand-overs") {
		t.Errorf("no handler: %v", err)
	}
}

// TestHandOverOtherUser: a process of another user that can reach the
// control socket (here made reachable on purpose; it is 0600 in a 0700
// dir in use) is refused by SO_PEERCRED, and the handler never sees its
// descriptor. Needs root, to run the sender as nobody (65534).
func TestHandOverOtherUser(t *testing.T) {
	if os.Getenv("LIVECGI_HANDOVER_HELPER") != "" {
		t.Skip("the helper's own run")
	}
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run a process as another user")
		}
		t.Skip("needs root")
	}
	dir, err := os.MkdirTemp("", "handover-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	got, _ := serveHandOvers(t, dir)
	os.Chmod(filepath.Join(dir, control.ControlFile), 0o777)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// The test binary's own dir is private to root: a copy nobody can run.
	exe := filepath.Join(dir, "control.test")
	if b, err := os.ReadFile(os.Args[0]); err != nil || os.WriteFile(exe, b, 0o755) != nil {
		t.Fatalf("copy the test binary: %v", err)
	}
	os.Chmod(exe, 0o755) // whatever the umask (another test sets boa's)
	cmd := exec.Command(exe, "-test.run=^TestHandOverHelper$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LIVECGI_HANDOVER_HELPER="+dir+" "+ln.Addr().String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "hand-over refused: supervisor refused the hand-over: descriptor passed by uid 65534") ||
		!strings.Contains(string(out), "only uid 0 or root may hand over a connection") {
		t.Errorf("helper as uid 65534 (%v):\n%s", err, out)
	}
	select {
	case c := <-got:
		t.Errorf("handler got a connection from another user: %v", c.RemoteAddr())
	default:
	}
}

// TestHandOverHelper is the other user's process of TestHandOverOtherUser.
func TestHandOverHelper(t *testing.T) {
	arg := os.Getenv("LIVECGI_HANDOVER_HELPER")
	if arg == "" {
		t.Skip("run by TestHandOverOtherUser")
	}
	dir, addr, _ := strings.Cut(arg, " ")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	err = control.SendHandOver(dir, int(f.Fd()), []byte(testUpgrade), 5*time.Second)
	t.Logf("hand-over refused: %v", err)
	if err == nil {
		t.Fatal("hand-over accepted")
	}
}
