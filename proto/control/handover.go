package control

import (
	"bytes"
	"fmt"
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
	s, err := dial(filepath.Join(stateDir, ControlFile), timeout)
	if err != nil {
		return fmt.Errorf("hand-over: %w", err)
	}
	defer syscall.Close(s)
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
