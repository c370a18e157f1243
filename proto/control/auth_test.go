package control

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
)

func TestAuthConfig(t *testing.T) {
	c := Default()
	if c.Auth != AuthNone {
		t.Fatalf("default auth = %q", c.Auth)
	}
	if err := c.Parse([]byte("auth = basic\nauth_users = /etc/livecgi/users\ncommand_role = leds.blink viewer\ncommand_role = leds.set_brightness operator\n")); err != nil {
		t.Fatal(err)
	}
	if c.Auth != AuthBasic || c.CommandRole("leds.blink") != auth.RoleViewer || c.CommandRole("leds.set_brightness") != auth.RoleOperator || c.CommandRole("other.x") != auth.RoleOperator {
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
	c.CommandRoles = map[string]string{"leds.blink": auth.RoleViewer}
	for _, tt := range []struct {
		id      auth.Identity
		command string
		want    string // "" allowed
	}{
		{auth.Identity{User: "otto", Role: auth.RoleOperator}, "leds.set", ""},
		{auth.Identity{User: "otto", Role: auth.RoleOperator}, "leds.blink", ""},
		{auth.Identity{User: "vera", Role: auth.RoleViewer}, "leds.blink", ""},
		{auth.Identity{User: "vera", Role: auth.RoleViewer}, "leds.set", `forbidden: leds.set needs role operator; "vera" is viewer`},
		{auth.Identity{User: "", Role: auth.RoleViewer}, "leds.set", "an anonymous visitor is viewer"},
		{auth.Identity{User: "x", Role: ""}, "leds.blink", "needs role viewer; \"x\" is no role"},
		{auth.Identity{User: "x", Role: "admin"}, "leds.blink", "forbidden"},
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
	long := strings.Repeat("ü", auth.MaxUser/2)
	for _, id := range []auth.Identity{{User: "vera", Role: auth.RoleViewer}, {User: "otto", Role: auth.RoleOperator}, {User: long, Role: auth.RoleOperator}, {User: "", Role: auth.RoleViewer}} {
		tok, _ := MintToken(secret, origin, "run1", now, time.Minute, id)
		c, err := VerifyToken(secret, tok, origin, "run1", now)
		if err != nil || c.Identity != id || len(c.Nonce) != nonceLen {
			t.Errorf("%+v: %+v %v", id, c, err)
		}
	}
	if c, _ := VerifyToken(secret, mustMint(secret, origin, now, auth.Identity{}), origin, "run1", now); c.Role != auth.RoleViewer {
		t.Errorf("empty identity minted as %+v, want an anonymous viewer", c.Identity)
	}
	tok := mustMint(secret, origin, now, auth.Identity{User: "vera", Role: auth.RoleViewer})
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

func mustMint(secret []byte, origin string, now time.Time, id auth.Identity) string {
	tok, _ := MintToken(secret, origin, "run1", now, time.Minute, id)
	return tok
}
