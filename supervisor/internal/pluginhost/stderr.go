package pluginhost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/livecgi/livecgi/proto"
)

// unavailableError is a plugin's own word that it has nothing to serve on
// this machine: no restart loop, a quiet "unavailable" status.
type unavailableError struct{ reason string }

func (e *unavailableError) Error() string { return "nothing to serve: " + e.reason }

// maxReason bounds the part of a plugin's stderr that goes into a status.
const maxReason = 300

// stderrTail keeps what a plugin process last said on stderr: its last
// line, and the first line of a Go panic or fatal error (the lines after
// it are a stack). go-plugin copies every raw stderr line to
// ClientConfig.Stderr, the line and its newline in separate writes, from
// one goroutine; a reader may look at any time.
type stderrTail struct {
	mu    sync.Mutex
	cur   []byte // the line being written
	last  string // last complete non-empty line
	panic string
}

func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			t.add(rest)
			break
		}
		t.add(rest[:i])
		t.endLine()
		rest = rest[i+1:]
	}
	return len(p), nil
}

// add appends to the current line, keeping only what a status can show.
func (t *stderrTail) add(b []byte) {
	if room := 4 * maxReason; len(t.cur) < room {
		t.cur = append(t.cur, b[:min(len(b), room-len(t.cur))]...)
	}
}

func (t *stderrTail) endLine() {
	line := strings.TrimSpace(strings.ToValidUTF8(string(t.cur), "?"))
	t.cur = t.cur[:0]
	if line == "" {
		return
	}
	t.last = line
	if t.panic == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
		t.panic = line
	}
}

// line returns the plugin's last word, readable: the panic if it panicked,
// else its last stderr line, an hclog JSON line made "message k=v …".
// With unavailable, a JSON line's "reason" alone is its last word.
func (t *stderrTail) line(unavailable bool) string {
	t.mu.Lock()
	last, pan := t.last, t.panic
	if len(t.cur) > 0 { // a last line without its newline
		last = strings.TrimSpace(strings.ToValidUTF8(string(t.cur), "?"))
	}
	t.mu.Unlock()
	if pan != "" && !unavailable {
		return cut(pan)
	}
	var m map[string]any
	if !strings.HasPrefix(last, "{") || json.Unmarshal([]byte(last), &m) != nil {
		return cut(last)
	}
	if r, ok := m["reason"].(string); ok && unavailable {
		return cut(r)
	}
	var b strings.Builder
	b.WriteString(fmt.Sprint(m["@message"]))
	keys := make([]string, 0, len(m))
	for k := range m {
		if !strings.HasPrefix(k, "@") && k != "time" && k != "level" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, m[k])
	}
	return cut(b.String())
}

func cut(s string) string {
	if len(s) <= maxReason {
		return s
	}
	return strings.ToValidUTF8(s[:maxReason], "") + "…"
}

// exitedOnItsOwn explains a plugin that ended while it was being started
// (phase: "the handshake", "describe"), once its process has been waited
// for: the plugin's own exit status and last stderr line instead of
// go-plugin's generic text. It returns nil if the process did not end by
// itself (it hung and was killed, or never ran).
func exitedOnItsOwn(cmd *exec.Cmd, tail *stderrTail, phase string) error {
	ps := cmd.ProcessState
	if ps == nil {
		return nil
	}
	ws, _ := ps.Sys().(syscall.WaitStatus)
	switch {
	case ps.Exited() && ps.ExitCode() == proto.ExitUnavailable:
		reason := tail.line(true)
		if reason == "" {
			reason = "the plugin has nothing to serve on this machine"
		}
		return &unavailableError{reason: reason}
	case ps.Exited(), ws.Signaled() && ws.Signal() != syscall.SIGKILL:
		msg := fmt.Sprintf("plugin exited during %s (%v)", phase, ps)
		if line := tail.line(false); line != "" {
			msg += ": " + line
		}
		return errors.New(msg)
	}
	return nil
}

// firstLine cuts go-plugin's multi-line errors (with advice that rarely
// applies) to their first line.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return strings.TrimSpace(s)
}
