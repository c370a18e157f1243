package control

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The hand-over of a browser's socket: a stub running as nph-live.cgi,
// whose stdout is the browser's TCP connection (boa 0.94.14rc21), passes
// that descriptor to the supervisor so that the WebSocket runs on the web
// server's own port. The stub connects to the control socket and sends, in
// one sendmsg carrying the descriptor (SCM_RIGHTS), HandOverVerb followed
// by the browser's upgrade request in HTTP/1.1 form (request line, header
// lines, blank line), MaxHandOver bytes at most. The supervisor answers one
// line: "ok" once it owns the socket (it writes the 101 or the refusal; the
// stub exits without writing), or "error <reason>" (the socket is the
// stub's again to answer on). Only a process of the supervisor's own user,
// or root, may hand a socket over (SO_PEERCRED).
const (
	HandOverVerb = "handover\n"
	MaxHandOver  = 8 << 10
)

// SendHandOver passes descriptor fd and the upgrade request to the
// supervisor behind the control socket in stateDir, and waits up to
// timeout for its answer. A nil error means the supervisor owns the
// connection now. It uses system calls only (it runs in the stub).
func SendHandOver(stateDir string, fd int, request []byte, timeout time.Duration) error {
	if len(request) > MaxHandOver {
		return fmt.Errorf("hand-over: request of %d bytes, over %d", len(request), MaxHandOver)
	}
	path := filepath.Join(stateDir, ControlFile)
	if len(path) >= 108 {
		return fmt.Errorf("control socket path %s is too long for a unix socket", path)
	}
	s, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hand-over: socket: %w", err)
	}
	defer syscall.Close(s)
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	syscall.SetsockoptTimeval(s, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	syscall.SetsockoptTimeval(s, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	for {
		err = syscall.Connect(s, &syscall.SockaddrUnix{Name: path})
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("hand-over: dial %s: %w", path, err)
	}
	msg := append([]byte(HandOverVerb), request...)
	if err := syscall.Sendmsg(s, msg, syscall.UnixRights(fd), nil, 0); err != nil {
		return fmt.Errorf("hand-over: send: %w", err)
	}
	buf := make([]byte, 512)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(s, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("hand-over: no answer: %w", err)
		}
		if m == 0 {
			break
		}
		n += m
		if bytes.IndexByte(buf[:n], '\n') >= 0 {
			break
		}
	}
	line, _, ok := strings.Cut(string(buf[:n]), "\n")
	switch {
	case ok && line == "ok":
		return nil
	case ok && strings.HasPrefix(line, "error "):
		return fmt.Errorf("supervisor refused the hand-over: %s", line[len("error "):])
	}
	return fmt.Errorf("hand-over: bad answer %q", buf[:n])
}

// receiveHandOver reads what a control connection sent first. A request
// that carries descriptors must be a hand-over: it returns the one
// descriptor as a TCP connection and the upgrade request (without the
// verb). Otherwise it returns what it read, at least the first line, and
// a nil conn. Any descriptor it does not return is closed.
func receiveHandOver(uc *net.UnixConn) (head []byte, conn net.Conn, request []byte, err error) {
	buf := make([]byte, len(HandOverVerb)+MaxHandOver+1)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
	var fds []int
	if oobn > 0 {
		if msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if got, err := syscall.ParseUnixRights(&m); err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	closeAll := func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	// The rest of the message, which the first read may not have held.
	for !bytes.Contains(buf[:n], []byte("\n")) || bytes.HasPrefix(buf[:n], []byte(HandOverVerb)) && !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		if n == len(buf) {
			closeAll()
			return nil, nil, nil, fmt.Errorf("request over %d bytes", MaxHandOver)
		}
		m, rerr := uc.Read(buf[n:])
		n += m
		if rerr != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("request cut short: %w", rerr)
		}
	}
	if !bytes.HasPrefix(buf[:n], []byte(HandOverVerb)) {
		closeAll()
		return buf[:n], nil, nil, nil
	}
	if flags&syscall.MSG_CTRUNC != 0 || len(fds) != 1 {
		closeAll()
		return nil, nil, nil, fmt.Errorf("want exactly one descriptor, got %d", len(fds))
	}
	if err := peerAllowed(uc); err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	f := os.NewFile(uintptr(fds[0]), "handed-over")
	defer f.Close() // FileConn holds its own copy
	c, err := net.FileConn(f)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the descriptor is not a socket: %w", err)
	}
	if _, ok := c.(*net.TCPConn); !ok {
		c.Close()
		return nil, nil, nil, errors.New("the descriptor is not a TCP connection")
	}
	return nil, c, buf[len(HandOverVerb):n], nil
}

// peerAllowed checks who is at the other end of uc (SO_PEERCRED): the
// supervisor's own user or root.
func peerAllowed(uc *net.UnixConn) error {
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if me := os.Getuid(); int(cred.Uid) != me && cred.Uid != 0 {
		return fmt.Errorf("descriptor passed by uid %d (pid %d): only uid %d or root may hand over a connection", cred.Uid, cred.Pid, me)
	}
	return nil
}
