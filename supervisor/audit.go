package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// AuditFile is the audit trail in the state directory: one JSON line per
// command a client sent (time, user, role, remote address, command,
// arguments, result), mode 0600, moved to AuditFile+".1" past maxAudit
// bytes, so at most twice that is kept.
const (
	AuditFile = "audit.log"
	maxAudit  = 256 << 10
	maxArgs   = 1024 // bytes of arguments kept in one audit line
)

// auditRecord is one line of the audit trail.
type auditRecord struct {
	Time    string          `json:"time"` // RFC 3339, UTC, milliseconds
	User    string          `json:"user"` // "" for an anonymous viewer
	Role    string          `json:"role"`
	Remote  string          `json:"remote"`
	Command string          `json:"command"`
	ID      string          `json:"id"`
	Args    json.RawMessage `json:"args,omitempty"`
	Cut     bool            `json:"args_cut,omitempty"` // args were longer than maxArgs and are left out
	Result  string          `json:"result"`             // ok, or the error code and message
}

// openAudit opens the audit trail in stateDir; if it cannot, the records
// go to the supervisor's log instead.
func (s *Supervisor) openAudit() {
	lf, err := OpenLog(filepath.Join(s.config().StateDir, AuditFile), maxAudit)
	if err != nil {
		s.log.Error("audit trail not writable: commands are audited in this log instead", "err", err)
		return
	}
	s.audit = lf
}

// auditCommand records one command of who (with the role it was held
// to) from remote and what became of it: "ok", or an error ("forbidden:
// ...", "failed: ...").
func (s *Supervisor) auditCommand(who auth.Identity, remote string, m *wire.CommandMsg, result string) {
	r := auditRecord{
		Time: time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"), User: who.User, Role: who.Role,
		Remote: remote, Command: m.Name, ID: m.ID, Result: result,
	}
	if b, err := json.Marshal(m.Args); err == nil && len(b) <= maxArgs {
		r.Args = b
	} else {
		r.Cut = true
	}
	line, _ := json.Marshal(r)
	if s.audit == nil {
		s.log.Info("audit", "record", string(line))
		return
	}
	if _, err := s.audit.Write(append(line, '\n')); err != nil {
		s.log.Error("audit trail write failed", "err", err, "record", string(line))
	}
}

// authorize checks c's role under cfg, the configuration in force, for
// command m before anything else is done with it, and returns who c is
// held to (see hold); a refused command is answered with a "forbidden"
// error and audited. Every transport's commands go through it and
// config.Config.Authorize.
func (s *Supervisor) authorize(cfg *config.Config, c *fanout.Client, m *wire.CommandMsg) (auth.Identity, bool) {
	who, err := s.hold(cfg, c)
	if err == nil {
		err = cfg.Authorize(who, m.Name)
	}
	if err == nil {
		return who, true
	}
	if !errors.Is(err, config.ErrForbidden) {
		err = fmt.Errorf("%w: %v", config.ErrForbidden, err)
	}
	c.Log().Info("command refused", "command", m.Name, "id", m.ID, "err", err)
	c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrForbidden, ID: m.ID, Message: err.Error()})
	s.auditCommand(who, c.Remote(), m, err.Error())
	return who, false
}

// closeAudit closes the audit trail once every command that got in has
// its record; commands after it are answered without being run.
func (s *Supervisor) closeAudit() {
	s.cmds.mu.Lock()
	s.cmds.closed = true
	s.cmds.mu.Unlock()
	s.cmds.wg.Wait()
	if s.audit != nil {
		s.audit.Close()
	}
}

// commands counts the commands being handled, so that the audit trail is
// closed only after their records are written.
type commands struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// enter counts one more command, or reports false once the audit trail
// is closing.
func (cs *commands) enter() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	cs.wg.Add(1)
	return true
}
