package supervisor

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
)

// TestRoles: hello says who is signed in and what each command needs; a
// viewer's command is refused with "forbidden" before it reaches the
// plugin, an operator's runs, a command_role override lets viewers run
// one command; every command lands in the audit trail (mode 0600) and no
// token in any log.
func TestRoles(t *testing.T) {
	ts := startSup(t, func(c *config.Config) {
		c.CommandRoles = map[string]string{"helper_counter.fail": auth.RoleViewer}
	}, "counter")
	state := filepath.Join(filepath.Dir(ts.dir), "state")
	viewerURL := ts.urlFor(ts.origin(), auth.Identity{User: "vera", Role: auth.RoleViewer})
	viewer, err := ts.tryDial(viewerURL, ts.origin())
	if err != nil {
		t.Fatal(err)
	}
	anon, err := ts.tryDial(ts.urlFor(ts.origin(), auth.Identity{}), ts.origin())
	if err != nil {
		t.Fatal(err)
	}
	op, err := ts.tryDial(ts.urlFor(ts.origin(), auth.Identity{User: "otto", Role: auth.RoleOperator}), ts.origin())
	if err != nil {
		t.Fatal(err)
	}
	online(op, "helper_counter")

	hello := viewer.next("hello with commands", func(m map[string]any) bool {
		cs, _ := m["commands"].([]any)
		return m["type"] == "hello" && len(cs) > 0
	})
	if u := fmt.Sprint(hello["user"]); u != "map[name:vera role:viewer]" {
		t.Errorf("viewer's hello.user = %s", u)
	}
	roles := map[string]string{}
	for _, c := range hello["commands"].([]any) {
		c := c.(map[string]any)
		roles[c["id"].(string)] = fmt.Sprint(c["role"])
	}
	if roles["helper_counter.add"] != "operator" || roles["helper_counter.fail"] != "viewer" {
		t.Errorf("command roles in hello: %v", roles)
	}
	if u := fmt.Sprint(anon.next("anonymous hello", is("hello"))["user"]); u != "map[name: role:viewer]" {
		t.Errorf("anonymous hello.user = %s", u)
	}

	add := wire.CommandMsg{Type: "command", ID: "v1", Name: "helper_counter.add", Args: map[string]any{"a": 1}}
	viewer.send(add)
	m := viewer.next("answer to v1", func(m map[string]any) bool { return m["id"] == "v1" })
	if m["type"] != "error" || m["code"] != wire.ErrForbidden || !strings.Contains(fmt.Sprint(m["message"]), `helper_counter.add needs role operator; "vera" is viewer`) {
		t.Errorf("viewer's command: %v", m)
	}
	// An unknown command is refused the same way: a viewer learns no names.
	anon.send(wire.CommandMsg{Type: "command", ID: "a1", Name: "nope.nothing"})
	if m := anon.next("answer to a1", func(m map[string]any) bool { return m["id"] == "a1" }); m["code"] != wire.ErrForbidden {
		t.Errorf("anonymous unknown command: %v", m)
	}
	viewer.send(wire.CommandMsg{Type: "command", ID: "v2", Name: "helper_counter.fail"})
	if m := viewer.next("answer to v2", func(m map[string]any) bool { return m["id"] == "v2" }); m["type"] != "result" || m["ok"] != false {
		t.Errorf("viewer's command open to viewers: %v", m)
	}
	add.ID = "o1"
	op.send(add)
	if m := op.next("answer to o1", func(m map[string]any) bool { return m["id"] == "o1" }); m["type"] != "result" || m["ok"] != true {
		t.Errorf("operator's command: %v", m)
	}

	// The audit trail: one line per command, in order of their answers.
	path := filepath.Join(state, AuditFile)
	var recs []auditRecord
	deadline := time.Now().Add(10 * time.Second)
	for len(recs) < 4 && time.Now().Before(deadline) {
		recs = readAudit(t, path)
		time.Sleep(20 * time.Millisecond) // the operator's record is written after its result is queued
	}
	byID := map[string]auditRecord{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	want := map[string]string{"v1": "vera viewer helper_counter.add forbidden:", "a1": " viewer nope.nothing forbidden:",
		"v2": "vera viewer helper_counter.fail failed:", "o1": "otto operator helper_counter.add ok"}
	for id, w := range want {
		r := byID[id]
		if got := r.User + " " + r.Role + " " + r.Command + " " + r.Result; !strings.HasPrefix(got, w) || !strings.HasPrefix(r.Remote, "127.0.0.1:") || r.Time == "" {
			t.Errorf("audit of %s: %+v, want %q", id, r, w)
		}
	}
	if r := byID["o1"]; string(r.Args) != `{"a":1}` {
		t.Errorf("audit of o1: args %s", r.Args)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit trail: %v, mode %v", err, fi.Mode())
	}

	// A token in the URL is never logged, neither on success nor on a
	// refused (reused) upgrade.
	if _, err := ts.tryDial(viewerURL, ts.origin()); err == nil {
		t.Error("a reused token was accepted")
	}
	tok := viewerURL[strings.Index(viewerURL, "token=")+len("token="):]
	ts.stop()
	audit, _ := os.ReadFile(path)
	for name, text := range map[string]string{"log": ts.logs.String(), "audit": string(audit)} {
		if strings.Contains(text, tok) || strings.Contains(text, tok[:20]) {
			t.Errorf("the %s holds a token", name)
		}
	}
}

// TestTamperedTokenRole: flipping the role byte of a viewer's token makes
// it fail verification; the upgrade is refused.
func TestTamperedTokenRole(t *testing.T) {
	ts := startSup(t, nil)
	u := ts.urlFor(ts.origin(), auth.Identity{User: "vera", Role: auth.RoleViewer})
	i := strings.Index(u, "token=") + len("token=")
	raw, err := base64.RawURLEncoding.DecodeString(u[i:])
	if err != nil {
		t.Fatal(err)
	}
	raw[20] = 2 // the role byte: operator
	if _, err := ts.tryDial(u[:i]+base64.RawURLEncoding.EncodeToString(raw), ts.origin()); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("tampered role: %v, want 403", err)
	}
	if !strings.Contains(ts.logs.String(), control.ErrTokenInvalid.Error()) {
		t.Errorf("log has no refusal:\n%s", ts.logs.String())
	}
}

func readAudit(t *testing.T, path string) []auditRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []auditRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestAuditAtShutdown: a command still running when livecgid stops has
// its record in the audit trail, written before the trail is closed.
func TestAuditAtShutdown(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.CommandTimeout = 300 * time.Millisecond }, "counter")
	c := ts.dial(t)
	online(c, "helper_counter")
	c.send(wire.CommandMsg{Type: "command", ID: "b1", Name: "helper_counter.block"})
	waitFor(t, "the command in the plugin", func() bool {
		_, _, inFlight := ts.plugins.Slot("helper_counter")
		return inFlight > 0
	})
	ts.stop()
	for _, r := range readAudit(t, filepath.Join(ts.config().StateDir, AuditFile)) {
		if r.ID == "b1" {
			if r.Command != "helper_counter.block" || !strings.HasPrefix(r.Result, "failed: ") {
				t.Errorf("audit of the command running at shutdown: %+v", r)
			}
			return
		}
	}
	t.Error("no audit record of the command running at shutdown")
}
