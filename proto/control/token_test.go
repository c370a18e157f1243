package control

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
)

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
