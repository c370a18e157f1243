package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/ratelimit"
)

// What the field does to a supervisor that runs for months: descriptor
// shortages, clients that vanish, header bombs, slow handshakes, floods.

// openFDs counts the descriptors of process pid ("self" for this one).
func openFDs(t testing.TB, pid string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/proc", pid, "fd"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// upgradeRequest dials addr and sends a WebSocket upgrade request with a
// fresh token, without waiting for the answer.
func upgradeRequest(t testing.TB, addr string, secret []byte, epoch string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	origin := "http://" + addr
	tok, _ := control.MintToken(secret, origin, epoch, time.Now(), time.Minute, auth.Identity{})
	fmt.Fprintf(nc, "GET /live?token=%s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: livecgi.v1\r\n\r\n",
		tok, addr, origin)
	return nc
}

// rawUpgrade completes a WebSocket upgrade by hand on a plain TCP
// connection.
func (ts *testSup) rawUpgrade(t testing.TB) *net.TCPConn {
	t.Helper()
	nc := upgradeRequest(t, ts.addr, ts.secret, ts.Status().Epoch)
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("raw upgrade: %v, %v", resp, err)
	}
	return nc.(*net.TCPConn)
}

// TestDescriptorShortage runs livecgid with 128 descriptors, takes them
// all with idle connections, and lets them go: both listeners must have
// waited the shortage out, the control socket answering and a new client
// getting readings.
func TestDescriptorShortage(t *testing.T) {
	root := t.TempDir()
	bin, plugins, state := filepath.Join(root, "bin"), filepath.Join(root, "plugins"), filepath.Join(root, "state")
	buildDaemon(t, bin)
	if err := os.Mkdir(plugins, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "livecgi.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen = 127.0.0.1:0\nstate_dir = %s\nplugins_dir = %s\n", state, plugins), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, filepath.Join(bin, "livecgid"), conf)
	pid := d.cmd.Process.Pid
	probe := func() (control.Status, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return control.Probe(ctx, state)
	}
	var st control.Status
	waitFor(t, "livecgid to answer on its control socket", func() bool {
		var err error
		st, err = probe()
		return err == nil && st.PID == pid
	})
	// Set after start: the Go runtime raises its soft limit to the hard
	// one at start-up, so both go down.
	const limit = 128
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatal(err)
	}
	// Clients, not idle connections: at most maxHandshakes of those are
	// kept.
	secret, err := os.ReadFile(filepath.Join(state, control.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	var hog []net.Conn
	defer func() {
		for _, c := range hog {
			c.Close()
		}
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", st.Port)
	// Upgraded in batches (fewer than maxHandshakes unfinished at once)
	// until the next batch would not fit, then past the limit.
	const batch = 16
	for openFDs(t, fmt.Sprint(pid))+batch < limit {
		var conns []net.Conn
		for range batch {
			conns = append(conns, upgradeRequest(t, addr, secret, st.Epoch))
		}
		for _, c := range conns {
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v, %v", resp, err)
			}
		}
		hog = append(hog, conns...)
	}
	for range 3 * batch {
		hog = append(hog, upgradeRequest(t, addr, secret, st.Epoch))
	}
	waitFor(t, "livecgid to run out of descriptors", func() bool {
		return openFDs(t, fmt.Sprint(pid)) >= limit && strings.Contains(d.log.String(), "too many open files")
	})
	// The control socket meets the shortage too.
	if _, err := probe(); err == nil {
		t.Log("control socket answered during the shortage")
	}
	for _, c := range hog {
		c.Close()
	}
	hog = nil
	waitFor(t, "the control socket to answer again", func() bool {
		st, err := probe()
		return err == nil && st.PID == pid
	})
	readingFrom(t, state, builtinPlugin+".")
	select {
	case <-d.done:
		t.Fatalf("livecgid exited: %v", d.err)
	default:
	}
}

// TestVanishedClientsReleaseDescriptors drops clients without a close
// frame (a reset, as from a phone leaving Wi-Fi): the supervisor must
// close every connection they took.
func TestVanishedClientsReleaseDescriptors(t *testing.T) {
	ts := startSup(t, nil)
	first := ts.dial(t)
	first.next("hello", is("hello"))
	first.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the first client to be detached", func() bool { return ts.hub.ClientCount() == 0 })
	_, port, _ := net.SplitHostPort(ts.addr)
	base := serverConns(t, port)

	const n = 20
	var conns []*net.TCPConn
	for range n {
		conns = append(conns, ts.rawUpgrade(t))
	}
	waitFor(t, "the clients to be attached", func() bool { return ts.hub.ClientCount() == n })
	if got := serverConns(t, port); got < base+n {
		t.Fatalf("%d connections of the supervisor open with %d clients attached: the count misses them", got, n)
	}
	for _, c := range conns {
		c.SetLinger(0) // a reset, no close frame
		c.Close()
	}
	waitFor(t, "the clients to be detached", func() bool { return ts.hub.ClientCount() == 0 })
	var now int
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if now = serverConns(t, port); now <= base {
			return
		}
	}
	t.Fatalf("%d connections of the supervisor open, %d before %d clients vanished", now, base, n)
}

// serverConns counts this process's descriptors of TCP connections
// accepted on 127.0.0.1:port: the supervisor's ends, not the listener's,
// nor the clients' (the tests' own, in the same process), nor any other
// descriptor a test left behind.
func serverConns(t testing.TB, port string) int {
	t.Helper()
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for inode, st := range tcpSockets(t, p) {
		if st != "0A" {
			inodes["socket:["+inode+"]"] = true
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); inodes[l] {
			n++
		}
	}
	return n
}

// countingListener counts, per connection, the bytes the server read
// before it first wrote.
type countingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*countingConn
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, cc)
	l.mu.Unlock()
	return cc, nil
}

type countingConn struct {
	net.Conn
	read        atomic.Int64
	readAtWrite atomic.Int64 // -1 until the first write
	wrote       atomic.Bool
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.wrote.CompareAndSwap(false, true) {
		c.readAtWrite.Store(c.read.Load())
	}
	return c.Conn.Write(p)
}

// TestHeaderBomb sends an endless header line: the supervisor answers 431
// having read no more than the header limit, and keeps serving.
func TestHeaderBomb(t *testing.T) {
	var cl *countingListener
	ts := startSupOn(t, func(ln net.Listener) net.Listener {
		cl = &countingListener{Listener: ln}
		return cl
	}, nil)
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const bomb = 1 << 20
	go func() {
		nc.Write([]byte("GET /live HTTP/1.1\r\nX-Bomb: "))
		chunk := bytes.Repeat([]byte("a"), 16<<10)
		for sent := 0; sent < bomb; sent += len(chunk) {
			if _, err := nc.Write(chunk); err != nil {
				return
			}
		}
	}()
	nc.SetReadDeadline(time.Now().Add(30 * time.Second)) // a safety net; the answer comes at once
	line, err := bufio.NewReader(nc).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 431 ") {
		t.Fatalf("answer %q, %v; want 431", line, err)
	}
	cl.mu.Lock()
	cc := cl.conns[0]
	cl.mu.Unlock()
	if n := cc.readAtWrite.Load(); n > maxHeader+1<<10 {
		t.Errorf("the supervisor read %d bytes before answering, want at most %d", n, maxHeader+1<<10)
	}
	// A request within the limit is still served.
	c := ts.dial(t)
	c.next("a reading", is("reading"))
}

// TestUnfinishedHandshakes opens more connections that never finish their
// request than the supervisor keeps: the oldest are closed at once, and a
// browser still connects and gets readings.
func TestUnfinishedHandshakes(t *testing.T) {
	ts := startSup(t, nil)
	const extra = 8
	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	for range maxHandshakes + extra {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /live HTTP/1.1\r\nHost: %s\r\n", ts.addr) // and never the rest
		slow = append(slow, c)
	}
	// The oldest are closed without an answer, long before the 10 s cut
	// (which answers 400).
	for i, c := range slow[:extra] {
		c.SetReadDeadline(time.Now().Add(upgradeTimeout / 2))
		n, err := c.Read(make([]byte, 64))
		if n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("unfinished request %d: read %d bytes, %v; want it closed at once", i, n, err)
		}
	}
	c := ts.dial(t)
	c.next("a reading", is("reading"))
}

// flood sends frames made by next over c as fast as the connection takes
// them (pace > 0: one every pace) until a write fails.
func flood(c *tclient, pace time.Duration, frame []byte) {
	for {
		if c.conn.Write(context.Background(), websocket.MessageText, frame) != nil {
			return
		}
		if pace > 0 {
			time.Sleep(pace)
		}
	}
}

// closedCounting waits for c to be closed, counting the errors of code it
// got meanwhile.
func (c *tclient) closedCounting(code string) (websocket.StatusCode, int) {
	c.t.Helper()
	n := 0
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				return websocket.CloseStatus(<-c.err), n
			}
			if m["type"] == "error" && m["code"] == code {
				n++
			}
		case <-timeout:
			c.t.Fatal("connection still open after 20s")
		}
	}
}

// TestFloodOfMessages sends ~500 messages a second against a rate of 20:
// they are dropped, and the client is closed after ratelimit.FloodGrace.
func TestFloodOfMessages(t *testing.T) {
	ts := startSup(t, nil, "counter")
	bystander, flooder := ts.dial(t), ts.dial(t)
	flooder.next("hello", is("hello"))
	go flood(flooder, 2*time.Millisecond, []byte(`{"type":"resume","epoch":"x","seq":1}`))
	flooder.next("rate_limited error", is("error", "code", wire.ErrRateLimited))
	if got := flooder.closed(); got != wire.CloseRateLimits {
		t.Errorf("flooder closed with %v, want %d", got, wire.CloseRateLimits)
	}
	bystander.next("reading after the flood", is("reading", "sensor", "helper_counter.count"))
}

// TestFloodOfBigFrames sends frames just under max_frame as fast as they
// go: the ones over the rate are dropped unread, and the client is closed.
func TestFloodOfBigFrames(t *testing.T) {
	ts := startSup(t, nil, "counter")
	bystander, flooder := ts.dial(t), ts.dial(t)
	flooder.next("hello", is("hello"))
	// Not JSON: every frame decoded gets a bad_json error.
	go flood(flooder, 0, bytes.Repeat([]byte("x"), 60<<10))
	got, decoded := flooder.closedCounting(wire.ErrBadJSON)
	if got != wire.CloseRateLimits {
		t.Errorf("flooder closed with %v, want %d", got, wire.CloseRateLimits)
	}
	// 40 tokens at first, 15 a frame, 20 more a second for ~3 s: about 7
	// (all of them, ~470 a second, without the limit).
	if decoded > 20 {
		t.Errorf("%d frames decoded, want the ones over the limit dropped unread", decoded)
	}
	t.Logf("%d big frames decoded before the close", decoded)
	bystander.next("reading after the flood", is("reading", "sensor", "helper_counter.count"))
}

// TestBurstThenCalm sends a burst over the limit and then calms down: it
// is dropped from, not closed.
func TestBurstThenCalm(t *testing.T) {
	ts := startSup(t, nil, "counter")
	c := ts.dial(t)
	online(c, "helper_counter")
	for range 3 * config.Default().Burst {
		c.send(wire.Resume{Type: "resume", Epoch: "x", Seq: 1})
	}
	c.next("rate_limited error", is("error", "code", wire.ErrRateLimited))
	// Well under the rate, for longer than ratelimit.FloodGrace: each answered.
	for i := range int(2 * ratelimit.FloodGrace / (250 * time.Millisecond)) {
		time.Sleep(250 * time.Millisecond)
		id := fmt.Sprint("calm-", i)
		c.send(wire.CommandMsg{Type: "command", ID: id, Name: "helper_counter.add", Args: map[string]any{"a": 1}})
		c.next("result "+id, is("result", "id", id))
	}
}

// TestInvalidUTF8 sends a text frame that is not UTF-8: closed with 1007.
func TestInvalidUTF8(t *testing.T) {
	ts := startSup(t, nil)
	c := ts.dial(t)
	c.next("hello", is("hello"))
	c.sendRaw(websocket.MessageText, []byte("{\"type\":\"resume\",\"epoch\":\"\xff\xfe\",\"seq\":1}"))
	if got := c.closed(); got != websocket.StatusInvalidFramePayloadData {
		t.Errorf("closed with %v, want %d", got, websocket.StatusInvalidFramePayloadData)
	}
}

// TestListenerFailsForGood breaks the WebSocket listener of a running
// livecgid (shutdown(2) on its socket, taken with pidfd_getfd): it must
// exit non-zero, saying why, and a fresh one must start and serve. (A
// unix listener cannot be broken that way: cmd/livecgid's
// TestServeStopsOnControlFailure covers the control socket.)
func TestListenerFailsForGood(t *testing.T) {
	root := t.TempDir()
	bin, plugins, state := filepath.Join(root, "bin"), filepath.Join(root, "plugins"), filepath.Join(root, "state")
	buildDaemon(t, bin)
	if err := os.Mkdir(plugins, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "livecgi.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen = 127.0.0.1:0\nstate_dir = %s\nplugins_dir = %s\n", state, plugins), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, filepath.Join(bin, "livecgid"), conf)
	pid := d.cmd.Process.Pid
	var st control.Status
	waitFor(t, "livecgid to answer on its control socket", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var err error
		st, err = control.Probe(ctx, state)
		return err == nil && st.PID == pid
	})
	breakSocket(t, pid, tcpListener(t, st.Port))
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("livecgid still running 15s after its listener broke")
	}
	if d.err == nil {
		t.Error("livecgid exited 0 after its listener broke")
	}
	if !strings.Contains(d.log.String(), "livecgid failed") {
		t.Errorf("log does not say why livecgid stopped:\n%s", d.log.String())
	}
	next := startDaemon(t, filepath.Join(bin, "livecgid"), conf)
	waitFor(t, "a fresh livecgid to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := control.Probe(ctx, state)
		return err == nil && st.PID == next.cmd.Process.Pid
	})
	readingFrom(t, state, builtinPlugin+".")
}

// tcpListener returns the inode of the TCP socket listening on 127.0.0.1:port.
func tcpListener(t *testing.T, port int) string {
	t.Helper()
	for inode, st := range tcpSockets(t, port) {
		if st == "0A" {
			return inode
		}
	}
	t.Fatalf("no TCP listener on port %d", port)
	return ""
}

// tcpSockets returns the state (hex, as in /proc/net/tcp; 0A: listening)
// of every TCP socket bound to 127.0.0.1:port, by inode.
func tcpSockets(t testing.TB, port int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		// sl local rem st queues tr retrnsmt uid timeout inode
		if f := strings.Fields(line); len(f) > 9 && f[1] == local && f[9] != "0" {
			out[f[9]] = f[3]
		}
	}
	return out
}

// breakSocket shuts down the socket with inode in process pid: accept(2)
// on it fails from then on (EINVAL), as on a listener gone bad.
func breakSocket(t *testing.T, pid int, inode string) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, e.Name())); l != "socket:["+inode+"]" {
			continue
		}
		var target int
		fmt.Sscan(e.Name(), &target)
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd_open: %v", err)
		}
		defer unix.Close(pidfd)
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if err != nil {
			t.Fatalf("pidfd_getfd: %v", err)
		}
		defer unix.Close(fd)
		if err := unix.Shutdown(fd, unix.SHUT_RDWR); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		return
	}
	t.Fatalf("livecgid %d has no descriptor for socket %s", pid, inode)
}
