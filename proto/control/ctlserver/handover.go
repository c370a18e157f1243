package ctlserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/livecgi/livecgi/proto/control"
)

// receiveHandOver reads what a control connection sent first. A request
// that carries descriptors must be a hand-over: it returns the one
// descriptor as a TCP connection and the upgrade request (without the
// verb). Otherwise it returns what it read, at least the first line, and
// a nil conn. Any descriptor it does not return is closed.
func receiveHandOver(uc *net.UnixConn) (head []byte, conn net.Conn, request []byte, err error) {
	buf := make([]byte, len(control.HandOverVerb)+control.MaxHandOver+1)
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
	for !bytes.Contains(buf[:n], []byte("\n")) || bytes.HasPrefix(buf[:n], []byte(control.HandOverVerb)) && !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		if n == len(buf) {
			closeAll()
			return nil, nil, nil, fmt.Errorf("request over %d bytes", control.MaxHandOver)
		}
		m, rerr := uc.Read(buf[n:])
		n += m
		if rerr != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("request cut short: %w", rerr)
		}
	}
	if !bytes.HasPrefix(buf[:n], []byte(control.HandOverVerb)) {
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
	return nil, c, buf[len(control.HandOverVerb):n], nil
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
