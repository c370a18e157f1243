package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// The client side of the control socket, in system calls: it runs in the
// stub, where package net and encoding/json would add 0.7 MiB to a
// program that must stay under 3 MiB on linux/arm. ctlserver serves the
// other side; its tests hold the two together.

// ErrNotRunning is wrapped by the errors of Poll and Command when nobody
// listens on the control socket (no socket file, or connection refused):
// the stub then starts a supervisor.
var ErrNotRunning = errors.New("supervisor not running")

// maxAnswer bounds a poll or command answer read from the supervisor.
const maxAnswer = 4 << 20

// Probe asks the supervisor behind the control socket in stateDir for its
// status. It fails fast when nobody listens. ctx's deadline (2 s without
// one) bounds it; being system calls, it heeds ctx's cancellation only
// before it starts.
func Probe(ctx context.Context, stateDir string) (Status, error) {
	var st Status
	if err := ctx.Err(); err != nil {
		return st, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Second)
	}
	timeout := time.Until(deadline)
	if timeout <= 0 {
		return st, context.DeadlineExceeded
	}
	fd, err := dial(filepath.Join(stateDir, ControlFile), timeout)
	if err != nil {
		return st, err
	}
	defer syscall.Close(fd)
	if err := writeAll(fd, []byte("status\n")); err != nil {
		return st, fmt.Errorf("probe: %w", err)
	}
	buf, n := make([]byte, 4096), 0
	for {
		if n == len(buf) {
			return st, errors.New("probe: answer too long")
		}
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("probe: read: %w", err)
		}
		if m == 0 {
			return st, errors.New("probe: connection closed before an answer")
		}
		if i := bytes.IndexByte(buf[n:n+m], '\n'); i >= 0 {
			buf = buf[:n+i]
			break
		}
		n += m
		if time.Now().After(deadline) {
			return st, errors.New("probe: timed out")
		}
	}
	st, err = parseStatus(buf)
	if err != nil {
		return st, fmt.Errorf("probe: bad answer: %w", err)
	}
	if st.Port <= 0 {
		return st, errors.New("probe: supervisor has no port yet")
	}
	return st, nil
}

// Poll asks the supervisor behind the control socket in stateDir for one
// long poll (KindPoll) and returns its answer: the HTTP status and the
// JSON body to pass to the browser as it is. timeout bounds each system
// call.
func Poll(stateDir string, r PollRequest, timeout time.Duration) (status int, body []byte, err error) {
	msg := append([]byte(KindPoll+" "), r.appendJSON(nil)...)
	return request(stateDir, append(msg, '\n'), timeout)
}

// Command asks the supervisor behind the control socket in stateDir to run
// one command (KindCommand): r, with r.Len the length of frame, then the
// frame. The answer is as Poll's.
func Command(stateDir string, r CommandRequest, frame []byte, timeout time.Duration) (status int, body []byte, err error) {
	msg := append([]byte(KindCommand+" "), r.appendJSON(nil)...)
	msg = append(append(msg, '\n'), frame...)
	return request(stateDir, msg, timeout)
}

// History asks the supervisor behind the control socket in stateDir for
// the CSV of a recorded sensor (KindHistory). The answer is as Poll's: on
// status 200 the body is the CSV.
func History(stateDir string, r HistoryRequest, timeout time.Duration) (status int, body []byte, err error) {
	msg := append([]byte(KindHistory+" "), r.appendJSON(nil)...)
	return request(stateDir, append(msg, '\n'), timeout)
}

// request sends msg on the control socket in stateDir and reads the
// answer: a decimal status, a newline, the body up to EOF (see
// ctlserver.Handler).
func request(stateDir string, msg []byte, timeout time.Duration) (int, []byte, error) {
	fd, err := dial(filepath.Join(stateDir, ControlFile), timeout)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return 0, nil, fmt.Errorf("%w: %v", ErrNotRunning, err)
		}
		return 0, nil, err
	}
	defer syscall.Close(fd)
	if err := writeAll(fd, msg); err != nil {
		return 0, nil, err
	}
	var buf []byte
	chunk := make([]byte, 16<<10)
	for {
		n, err := syscall.Read(fd, chunk)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, nil, fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			break
		}
		if len(buf)+n > maxAnswer {
			return 0, nil, errors.New("answer too long")
		}
		buf = append(buf, chunk[:n]...)
	}
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return 0, nil, errors.New("connection closed before an answer")
	}
	status, err := strconv.Atoi(string(buf[:i]))
	if err != nil || status < 200 || status > 599 {
		return 0, nil, fmt.Errorf("bad answer status %q", buf[:min(i, 16)])
	}
	return status, buf[i+1:], nil
}

// dial connects to the unix socket at path; every later read and write on
// the descriptor is bounded by timeout.
func dial(path string, timeout time.Duration) (int, error) {
	if len(path) >= 108 {
		return -1, fmt.Errorf("control socket path %s is too long for a unix socket", path)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	// Blocking calls, each bounded by the socket timeouts: connect to a
	// listener with a full backlog waits at most SO_SNDTIMEO.
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	if err := retryEINTR(func() error { return syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}) }); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("dial %s: %w", path, err)
	}
	return fd, nil
}

func writeAll(fd int, msg []byte) error {
	for len(msg) > 0 {
		n, err := syscall.Write(fd, msg)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		msg = msg[n:]
	}
	return nil
}

func retryEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}
