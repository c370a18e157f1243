package control

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAuthConfig(t *testing.T) {
	c := Default()
	if c.Auth != AuthNone {
		t.Fatalf("default auth = %q", c.Auth)
	}
	if err := c.Parse([]byte("auth = basic\nauth_users = /etc/livecgi/users\ncommand_role = leds.blink viewer\ncommand_role = leds.set_brightness operator\n")); err != nil {
		t.Fatal(err)
	}
	if c.Auth != AuthBasic || c.CommandRole("leds.blink") != RoleViewer || c.CommandRole("leds.set_brightness") != RoleOperator || c.CommandRole("other.x") != RoleOperator {
		t.Errorf("parsed: %+v", c)
	}
	for in, want := range map[string]string{
		"auth = ldap":                      `auth "ldap": want none, webserver, basic or command`,
		"auth = basic":                     "auth = basic needs auth_users",
		"auth = command":                   "auth = command needs auth_command, an absolute path",
		"auth = command\nauth_command = x": "auth = command needs auth_command, an absolute path",
		"auth_users = users":               "auth_users \"users\": want an absolute path",
		"command_role = leds.blink admin":  "want \"<command id> viewer|operator\"",
	} {
		c := Default()
		if err := c.Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
}

func TestAuthorize(t *testing.T) {
	c := Default()
	c.CommandRoles = map[string]string{"leds.blink": RoleViewer}
	for _, tt := range []struct {
		id      Identity
		command string
		want    string // "" allowed
	}{
		{Identity{"otto", RoleOperator}, "leds.set", ""},
		{Identity{"otto", RoleOperator}, "leds.blink", ""},
		{Identity{"vera", RoleViewer}, "leds.blink", ""},
		{Identity{"vera", RoleViewer}, "leds.set", `forbidden: leds.set needs role operator; "vera" is viewer`},
		{Identity{"", RoleViewer}, "leds.set", "an anonymous visitor is viewer"},
		{Identity{"x", ""}, "leds.blink", "needs role viewer; \"x\" is no role"},
		{Identity{"x", "admin"}, "leds.blink", "forbidden"},
	} {
		err := c.Authorize(tt.id, tt.command)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v %s: %v, want %q", tt.id, tt.command, err, tt.want)
		}
	}
}

// TestTokenIdentity: user and role are signed; a flipped role byte or a
// changed user fails verification.
func TestTokenIdentity(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	const origin = "http://device.local"
	long := strings.Repeat("ü", MaxUser/2)
	for _, id := range []Identity{{"vera", RoleViewer}, {"otto", RoleOperator}, {long, RoleOperator}, {"", RoleViewer}} {
		tok, _ := MintToken(secret, origin, "run1", now, time.Minute, id)
		c, err := VerifyToken(secret, tok, origin, "run1", now)
		if err != nil || c.Identity != id || len(c.Nonce) != nonceLen {
			t.Errorf("%+v: %+v %v", id, c, err)
		}
	}
	if c, _ := VerifyToken(secret, mustMint(secret, origin, now, Identity{}), origin, "run1", now); c.Role != RoleViewer {
		t.Errorf("empty identity minted as %+v, want an anonymous viewer", c.Identity)
	}
	tok := mustMint(secret, origin, now, Identity{"vera", RoleViewer})
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for name, edit := range map[string]func(b []byte) []byte{
		"role":        func(b []byte) []byte { b[8+nonceLen] = 2; return b },
		"user":        func(b []byte) []byte { b[headLen] = 'V'; return b },
		"bad role":    func(b []byte) []byte { b[8+nonceLen] = 9; return b },
		"user length": func(b []byte) []byte { b[headLen-1] = 3; return b },
	} {
		b := edit(append([]byte(nil), raw...))
		if _, err := VerifyToken(secret, base64.RawURLEncoding.EncodeToString(b), origin, "run1", now); err == nil {
			t.Errorf("tampered %s: accepted", name)
		}
	}
}

func mustMint(secret []byte, origin string, now time.Time, id Identity) string {
	tok, _ := MintToken(secret, origin, "run1", now, time.Minute, id)
	return tok
}

func TestParseBasic(t *testing.T) {
	b64 := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tt := range []struct {
		h, user, pass string
		err           string
	}{
		{b64("alice:pa:ss"), "alice", "pa:ss", ""},
		{b64("alice:"), "alice", "", ""},
		{b64("alice:\xff\x00é"), "alice", "\xff\x00é", ""},
		{"basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), "a", "b", ""},
		{"", "", "", "no credentials"},
		{"Bearer xyz", "", "", "want Basic"},
		{"Basic %%%", "", "", "bad base64"},
		{b64("alice"), "", "", "no colon"},
		{"Basic " + strings.Repeat("A", 1<<20), "", "", "over 1024 bytes"},
	} {
		u, p, err := ParseBasic(tt.h)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%.40q: err %v, want %q", tt.h, err, tt.err)
			}
			continue
		}
		if err != nil || u != tt.user || p != tt.pass {
			t.Errorf("%.40q: %q %q %v", tt.h, u, p, err)
		}
	}
}

// TestUsersFileTrust: a users file others could write or read is refused,
// as plugins are.
func TestUsersFileTrust(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "users")
	hash, _ := HashPassword("pw")
	os.WriteFile(path, []byte("# users\nalice operator "+hash+"\nbob viewer -\n"), 0o600)
	users, err := ReadUsers(path)
	if err != nil || len(users) != 2 {
		t.Fatalf("ReadUsers: %v %v", users, err)
	}
	if _, ok := CheckPassword(users, "bob", ""); ok {
		t.Error("bob (no password) signed in with an empty one")
	}
	if _, ok := CheckPassword(users, "nobody", "pw"); ok {
		t.Error("unknown user signed in")
	}
	for mode, want := range map[os.FileMode]string{
		0o640: "",
		0o644: "readable by others",
		0o620: "writable by group or others",
		0o606: "writable by group or others",
	} {
		os.Chmod(path, mode)
		_, err := ReadUsers(path)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("mode %v: %v, want %q", mode, err, want)
		}
	}
	os.Chmod(path, 0o600)
	os.Chmod(dir, 0o777)
	if _, err := ReadUsers(path); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("dir 0777: %v", err)
	}
	os.Chmod(dir, 0o700)
	for text, want := range map[string]string{
		"alice operator":                   "want \"name role hash\"",
		"alice admin -":                    `role "admin"`,
		"al:ce viewer -":                   "bad user name",
		"alice viewer md5$x":               "hash: want pbkdf2-sha256",
		"alice viewer pbkdf2-sha256$0$a$b": "bad iteration count",
		"a viewer -\na operator -":         `user "a" listed twice`,
	} {
		os.WriteFile(path, []byte(text), 0o600)
		if _, err := ReadUsers(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
}

// TestRecheck: an identity is held to the rules in force: a users file
// lowers or removes a role, an anonymous visitor has none where sign-in
// is needed, a changed setup caps or clears what cannot be checked, and
// a role is never raised.
func TestRecheck(t *testing.T) {
	users := []User{{Name: "otto", Role: RoleOperator, Hash: "x"}, {Name: "vera", Role: RoleViewer, Hash: "x"}, {Name: "nopw", Role: RoleOperator}}
	read := func() ([]User, error) { return users, nil }
	broken := func() ([]User, error) { return nil, errors.New("users file refused") }
	conf := func(auth, usersFile string) Config {
		c := Default()
		c.Auth, c.AuthUsers = auth, usersFile
		if auth == AuthCommand {
			c.AuthCommand = "/usr/bin/check"
		}
		return c
	}
	none, basic, web, webUsers, cmd := conf(AuthNone, ""), conf(AuthBasic, "/u"), conf(AuthWebserver, ""), conf(AuthWebserver, "/u"), conf(AuthCommand, "")
	op := func(u string) Identity { return Identity{User: u, Role: RoleOperator} }
	for _, tt := range []struct {
		name  string
		c     Config
		id    Identity
		setup string // "" = the config's own
		want  string // the role held to
	}{
		{"none, same setup", none, op("otto"), "", RoleOperator},
		{"none after basic", none, op("otto"), basic.AuthSetup(), RoleViewer},
		{"basic, operator in file", basic, op("otto"), "", RoleOperator},
		{"basic, lowered in file", basic, op("vera"), "", RoleViewer},
		{"basic, not in file", basic, op("gone"), "", ""},
		{"basic, no password", basic, op("nopw"), "", ""},
		{"basic, anonymous", basic, Identity{Role: RoleViewer}, none.AuthSetup(), ""},
		{"basic, never raised", basic, Identity{User: "otto", Role: RoleViewer}, "", RoleViewer},
		{"webserver, no users file", web, op("anyone"), "", RoleOperator},
		{"webserver, anonymous", web, Identity{Role: RoleViewer}, none.AuthSetup(), ""},
		{"webserver users file, unlisted", webUsers, op("anyone"), "", RoleViewer},
		{"webserver users file, listed", webUsers, op("vera"), "", RoleViewer},
		{"command, same setup", cmd, op("otto"), "", RoleOperator},
		{"command after basic", cmd, op("otto"), basic.AuthSetup(), ""},
	} {
		setup := tt.setup
		if setup == "" {
			setup = tt.c.AuthSetup()
		}
		got, err := tt.c.Recheck(tt.id, setup, read)
		if err != nil || got.Role != tt.want || got.User != tt.id.User {
			t.Errorf("%s: %+v, %v; want role %q", tt.name, got, err, tt.want)
		}
	}
	if got, err := basic.Recheck(op("otto"), basic.AuthSetup(), broken); err == nil || got.Role != "" {
		t.Errorf("unreadable users file: %+v, %v", got, err)
	}
}
