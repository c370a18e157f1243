package supervisor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/wire"
)

// The audit trail: one JSON line per command a client sent (time, user,
// role, remote address, command, arguments, result), in two files of the
// state directory, mode 0600, each moved to <file>.1 past maxAudit bytes
// (so at most twice that is kept of each):
//
//   - AuditFile, the commands of operators (any role above viewer);
//   - ViewerAuditFile, those of viewers: anonymous visitors, signed-in
//     viewers, a broker bridge with mqtt_role viewer.
//
// So no flood of viewers' commands, refused or not, can push an
// operator's record out. A record is at most maxRecord bytes whatever
// the client sent (names are bounded at decoding, wire.ValidName; args,
// the result and the other fields are cut here). The refused commands
// (forbidden, unknown, bad arguments) of one identity that come faster
// than refusalBurst, then one per refusalEvery, are counted instead of
// written one by one, and written as one summary record.
const (
	AuditFile       = "audit.log"
	ViewerAuditFile = "audit-viewer.log"
	maxAudit        = 256 << 10
	maxArgs         = 1024     // bytes of arguments kept in one record
	maxRecord       = 2 << 10  // bytes of one record, whole
	maxResult       = 512      // bytes of a result kept in one record
	maxField        = 2*64 + 1 // bytes of any other field kept in one record: a command name's
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
	Cut     bool            `json:"args_cut,omitempty"` // args (or, rarely, other fields) were too long and are left out or cut
	Result  string          `json:"result"`             // ok, or the error code and message
	// A summary of refused commands not written one by one: how many,
	// since when; Command, ID and Result are the last one's.
	Refused int    `json:"refused,omitempty"`
	Since   string `json:"since,omitempty"`
}

// auditTime is the form of auditRecord.Time.
const auditTime = "2006-01-02T15:04:05.000Z07:00"

// encode returns r as one line of at most maxRecord bytes, newline
// included: the fields cut to their bounds, then, if escapes still make
// it longer, without args, then every field cut short.
func (r auditRecord) encode() []byte {
	var cut [6]bool
	r.User, cut[0] = clip(r.User, maxField)
	r.Role, cut[1] = clip(r.Role, maxField)
	r.Remote, cut[2] = clip(r.Remote, maxField)
	r.Command, cut[3] = clip(r.Command, maxField)
	r.ID, cut[4] = clip(r.ID, maxField)
	r.Result, cut[5] = clip(r.Result, maxResult)
	for _, c := range cut {
		r.Cut = r.Cut || c
	}
	line, _ := json.Marshal(r)
	if len(line) < maxRecord {
		return append(line, '\n')
	}
	r.Args, r.Cut = nil, true
	line, _ = json.Marshal(r)
	if len(line) < maxRecord {
		return append(line, '\n')
	}
	// Only escapes (6 bytes for a control character) get here.
	for _, f := range []*string{&r.User, &r.Role, &r.Remote, &r.Command, &r.ID, &r.Result} {
		*f, _ = clip(*f, 32)
	}
	line, _ = json.Marshal(r)
	return append(line, '\n')
}

// clip cuts s to at most n bytes, at a character's start, and reports
// whether it did.
func clip(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

// trail is the audit trail. Its methods may be called concurrently.
type trail struct {
	log *slog.Logger
	// The files (nil: records go to log instead); set by open, before
	// any command, and closed by close, after every command.
	main, viewer *LogFile
	refused      refusals
}

// open opens the trail's files in stateDir; one it cannot open is
// replaced by the log, loudly.
func (t *trail) open(stateDir string) {
	if t.refused.every <= 0 {
		t.refused.every = refusalEvery
	}
	t.refused.due = func() {
		for _, r := range t.refused.flush(time.Now(), false) {
			t.write(r)
		}
	}
	var err error
	if t.main, err = OpenLog(filepath.Join(stateDir, AuditFile), maxAudit); err != nil {
		t.log.Error("audit trail not writable: operators' commands are audited in this log instead", "err", err)
	}
	if t.viewer, err = OpenLog(filepath.Join(stateDir, ViewerAuditFile), maxAudit); err != nil {
		t.log.Error("audit trail not writable: viewers' commands are audited in this log instead", "err", err)
	}
}

// close writes the summaries still pending and closes the files.
func (t *trail) close() {
	for _, r := range t.refused.flush(time.Now(), true) {
		t.write(r)
	}
	for _, f := range []*LogFile{t.main, t.viewer} {
		if f != nil {
			f.Close()
		}
	}
}

// record audits one command of who (with the role it was held to) from
// remote, and what became of it: "ok", or an error ("forbidden: ...",
// "failed: ..."). refused: it was not run (forbidden, unknown, bad
// arguments), and may be summarised.
func (t *trail) record(who auth.Identity, remote string, m *wire.CommandMsg, result string, refused bool) {
	now := time.Now()
	r := auditRecord{
		Time: now.UTC().Format(auditTime), User: who.User, Role: who.Role,
		Remote: remote, Command: m.Name, ID: m.ID, Result: result,
	}
	if b, err := json.Marshal(m.Args); err == nil && len(b) <= maxArgs {
		r.Args = b
	} else {
		r.Cut = true
	}
	if refused {
		write, summaries := t.refused.take(now, clientKey(who.User, remote)+" "+who.Role, r)
		for _, s := range summaries {
			t.write(s)
		}
		if !write {
			return
		}
	}
	t.write(r)
}

// write appends r to its file: the viewers' for a role of viewer or none,
// else the main one.
func (t *trail) write(r auditRecord) {
	f := t.main
	if r.Role == auth.RoleViewer || r.Role == "" {
		f = t.viewer
	}
	line := r.encode()
	if f == nil {
		t.log.Info("audit", "record", string(line[:len(line)-1]))
		return
	}
	if _, err := f.Write(line); err != nil {
		t.log.Error("audit trail write failed", "err", err, "record", string(line[:len(line)-1]))
	}
}

// How fast one identity's refused commands are written one by one: a
// burst of refusalBurst, then one per refusalEvery. The rest are counted,
// and summarised in one record refusalEvery after the first left out (or
// before the identity's next record).
const (
	refusalBurst = 10
	refusalEvery = 6 * time.Second
	// maxRefusers bounds the identities followed; past it every pending
	// summary is written and the table starts afresh.
	maxRefusers = 1024
)

// refusals follows the refused commands of each identity (address, user
// and role). Its methods may be called concurrently.
type refusals struct {
	every time.Duration // refusalEvery; tests shorten it
	due   func()        // writes the summaries due (flush); set by open

	mu    sync.Mutex
	by    map[string]*refuser
	timer *time.Timer // the next call of due, while a summary is pending
}

// refuser is one identity's refused commands: a token bucket of records,
// and those left out since since.
type refuser struct {
	tokens float64
	last   time.Time
	n      int
	since  time.Time
	rec    auditRecord // the last one left out
}

// take counts r, a refused command of identity key, at now, and reports
// whether r is to be written; summaries are records to write first.
func (rs *refusals) take(now time.Time, key string, r auditRecord) (write bool, summaries []auditRecord) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.by == nil {
		rs.by = map[string]*refuser{}
	}
	f := rs.by[key]
	if f == nil {
		if len(rs.by) >= maxRefusers {
			summaries = rs.flushLocked(now, true)
			clear(rs.by)
		}
		f = &refuser{tokens: refusalBurst, last: now}
		rs.by[key] = f
	}
	f.tokens = min(refusalBurst, f.tokens+now.Sub(f.last).Seconds()/rs.every.Seconds())
	f.last = now
	if f.tokens >= 1 {
		f.tokens--
		if f.n > 0 {
			summaries = append(summaries, f.summary(now))
		}
		return true, summaries
	}
	if f.n == 0 {
		f.since = now
	}
	f.n++
	f.rec = r
	if rs.timer == nil && rs.due != nil {
		rs.timer = time.AfterFunc(rs.every, rs.due)
	}
	return false, summaries
}

// flush returns the summaries due at now (all with force) and forgets
// the identities that are quiet; while summaries are still pending (and
// not force) it sets the next call of due.
func (rs *refusals) flush(now time.Time, force bool) []auditRecord {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.timer != nil {
		rs.timer.Stop()
		rs.timer = nil
	}
	out := rs.flushLocked(now, force)
	for _, f := range rs.by {
		if f.n > 0 && !force && rs.due != nil {
			rs.timer = time.AfterFunc(rs.every, rs.due)
			break
		}
	}
	return out
}

func (rs *refusals) flushLocked(now time.Time, force bool) []auditRecord {
	var out []auditRecord
	for k, f := range rs.by {
		switch {
		case f.n > 0 && (force || now.Sub(f.since) >= rs.every):
			out = append(out, f.summary(now))
		case f.n == 0 && now.Sub(f.last) >= refusalBurst*rs.every:
			delete(rs.by, k) // its bucket is full again
		}
	}
	return out
}

// summary is the record, at now, of f's commands left out, which it
// then forgets.
func (f *refuser) summary(now time.Time) auditRecord {
	r := f.rec
	r.Refused, r.Since = f.n, f.since.UTC().Format(auditTime)
	r.Result = fmt.Sprintf("%d refused commands not recorded one by one since %s; the last: %s", f.n, r.Since, r.Result)
	r.Time = now.UTC().Format(auditTime)
	f.n = 0
	return r
}

// closeAudit closes the audit trail once every command that got in has
// its record; commands after it are answered without being run.
func (s *Supervisor) closeAudit() {
	s.cmds.mu.Lock()
	s.cmds.closed = true
	s.cmds.mu.Unlock()
	s.cmds.wg.Wait()
	s.audit.close()
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
