package cgi

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// probe asks the supervisor behind the control socket in stateDir for its
// status, as control.Probe does, within timeout. It speaks the same
// protocol ("status\n", one JSON line back) over raw syscalls and reads
// only the pid and port of the answer: package net and encoding/json would
// add 0.7 MiB to a stub that must stay under 3 MiB on linux/arm.
// TestProbeMatchesControl holds it to ctlserver.Serve.
func probe(stateDir string, timeout time.Duration) (control.Status, error) {
	var st control.Status
	fd, err := dialControl(filepath.Join(stateDir, control.ControlFile), timeout)
	if err != nil {
		return st, err
	}
	defer syscall.Close(fd)
	if _, err := syscall.Write(fd, []byte("status\n")); err != nil {
		return st, fmt.Errorf("probe: write: %w", err)
	}
	deadline := time.Now().Add(timeout)
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
		if i := indexByte(buf[n:n+m], '\n'); i >= 0 {
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

// dialControl connects to the control socket at path; every later read
// and write on the descriptor is bounded by timeout.
func dialControl(path string, timeout time.Duration) (int, error) {
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

func retryEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// parseStatus reads the integer fields "pid" and "port", the boolean
// "tls" and the string "epoch" (as written, escapes not decoded: the supervisor's is hex) from
// one JSON object; other members, nested or not, are checked for syntax
// and skipped. A repeated key counts with its last value, as in
// encoding/json.
func parseStatus(b []byte) (st control.Status, err error) {
	p := &jsonScan{b: b}
	p.space()
	if !p.eat('{') {
		return control.Status{}, p.fail("want {")
	}
	p.space()
	if p.eat('}') {
		return control.Status{}, p.end()
	}
	for {
		p.space()
		key, ok := p.str()
		if !ok {
			return control.Status{}, p.fail("want a member name")
		}
		p.space()
		if !p.eat(':') {
			return control.Status{}, p.fail("want :")
		}
		p.space()
		start := p.i
		if !p.value(0) {
			return control.Status{}, p.fail("bad value")
		}
		switch key {
		case "tls":
			st.TLS = string(b[start:p.i]) == "true"
		case "pid", "port":
			n, err := strconv.Atoi(string(b[start:p.i]))
			if err != nil {
				return control.Status{}, fmt.Errorf("%s is not an integer", key)
			}
			if key == "pid" {
				st.PID = n
			} else {
				st.Port = n
			}
		case "epoch":
			if b[start] != '"' {
				return control.Status{}, fmt.Errorf("epoch is not a string")
			}
			st.Epoch = string(b[start+1 : p.i-1])
		}
		p.space()
		if p.eat('}') {
			return st, p.end()
		}
		if !p.eat(',') {
			return control.Status{}, p.fail("want , or }")
		}
	}
}

// jsonScan is the least of a JSON scanner that parseStatus needs.
type jsonScan struct {
	b []byte
	i int
}

func (p *jsonScan) fail(what string) error { return fmt.Errorf("%s at byte %d", what, p.i) }

func (p *jsonScan) end() error {
	p.space()
	if p.i != len(p.b) {
		return p.fail("junk after the object")
	}
	return nil
}

func (p *jsonScan) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\r' || p.b[p.i] == '\n') {
		p.i++
	}
}

func (p *jsonScan) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str scans a string and returns its raw contents (escapes kept).
func (p *jsonScan) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return string(p.b[start : p.i-1]), true
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return "", false
			}
			switch p.b[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				if len(p.b)-p.i < 5 {
					return "", false
				}
				for _, h := range p.b[p.i+1 : p.i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return "", false
					}
				}
				p.i += 5
			default:
				return "", false
			}
		case c < 0x20:
			return "", false
		default:
			p.i++
		}
	}
	return "", false
}

func (p *jsonScan) value(depth int) bool {
	if depth > 16 || p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '{' || c == '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		p.i++
		p.space()
		if p.eat(close) {
			return true
		}
		for {
			p.space()
			if c == '{' {
				if _, ok := p.str(); !ok {
					return false
				}
				p.space()
				if !p.eat(':') {
					return false
				}
				p.space()
			}
			if !p.value(depth + 1) {
				return false
			}
			p.space()
			if p.eat(close) {
				return true
			}
			if !p.eat(',') {
				return false
			}
		}
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	}
	for _, lit := range []string{"true", "false", "null"} {
		if len(p.b)-p.i >= len(lit) && string(p.b[p.i:p.i+len(lit)]) == lit {
			p.i += len(lit)
			return true
		}
	}
	return false
}

// number scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *jsonScan) number() bool {
	p.eat('-')
	if p.eat('0') {
		// no more integer digits after a leading zero
	} else if !p.digits() {
		return false
	}
	if p.eat('.') && !p.digits() {
		return false
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		if !p.digits() {
			return false
		}
	}
	return true
}

func (p *jsonScan) digits() bool {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}
