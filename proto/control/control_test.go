package control

import (
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
)

func TestTokens(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	const origin = "http://device.local"
	tok, exp := MintToken(secret, origin, "run1", now, time.Minute, auth.Identity{})
	if exp.Sub(now) != time.Minute {
		t.Errorf("expires %v", exp)
	}
	c1, err := VerifyToken(secret, tok, origin, "run1", now.Add(59*time.Second))
	if err != nil || c1.Nonce == "" {
		t.Fatalf("valid token: %v", err)
	}
	tok2, _ := MintToken(secret, origin, "run1", now, time.Minute, auth.Identity{})
	if c2, _ := VerifyToken(secret, tok2, origin, "run1", now); c2.Nonce == c1.Nonce {
		t.Error("two tokens share a nonce")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[len(raw)-1] ^= 1 // one bit of the MAC
	flipped := base64.RawURLEncoding.EncodeToString(raw)
	tests := []struct {
		name, tok, origin string
		epoch             string
		at                time.Time
		want              error
	}{
		{"missing", "", origin, "run1", now, ErrTokenMissing},
		{"garbage", "%%%", origin, "run1", now, ErrTokenMalformed},
		{"truncated", tok[:20], origin, "run1", now, ErrTokenMalformed},
		{"expired", tok, origin, "run1", now.Add(61 * time.Second), ErrTokenExpired},
		{"other origin", tok, "http://evil.example", "run1", now, ErrTokenInvalid},
		{"other port", tok, origin + ":8081", "run1", now, ErrTokenInvalid},
		{"tampered", flipped, origin, "run1", now, ErrTokenInvalid},
		{"other secret", tok, origin, "run1", now, ErrTokenInvalid},
		{"other supervisor run", tok, origin, "run2", now, ErrTokenInvalid},
		{"epoch moved into the origin", tok, origin + "\x00run1", "", now, ErrTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := secret
			if tt.name == "other secret" {
				s = []byte("another secret, just as long....")
			}
			if _, err := VerifyToken(s, tt.tok, tt.origin, tt.epoch, tt.at); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestStateDirUnderBoaUmask(t *testing.T) {
	old := syscall.Umask(0o177) // boa's: a plain MkdirAll(0700) would give a dir without x
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "a", "state")
	got, fallback, err := StateDir(dir)
	if err != nil || fallback != nil || got != dir {
		t.Fatalf("StateDir = %q, %v, %v", got, fallback, err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, %v", fi.Mode().Perm(), err)
	}
	// A dir that cannot be made falls back to a private temp dir, saying why.
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o600)
	got, fallback, err = StateDir(filepath.Join(blocker, "state"))
	if err != nil || fallback == nil || !strings.HasPrefix(got, os.TempDir()) {
		t.Fatalf("fallback: %q, %v, %v", got, fallback, err)
	}
}

func TestSecretConcurrentFirstUse(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	got := make([]string, 20)
	for i := range got {
		wg.Go(func() {
			b, err := Secret(dir)
			if err != nil {
				t.Error(err)
			}
			got[i] = string(b)
		})
	}
	wg.Wait()
	for _, s := range got {
		if s != got[0] || len(s) != 32 {
			t.Fatal("callers got different secrets")
		}
	}
	fi, _ := os.Stat(filepath.Join(dir, SecretFile))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secret mode %v", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
}

// TestStateDirSquatted: another user owning the fallback name does not
// stop us: a private dir of ours is used, the same one each time.
func TestStateDirSquatted(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to make a directory of another user")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	blocker := filepath.Join(tmp, "file")
	os.WriteFile(blocker, nil, 0o600)
	want := filepath.Join(blocker, "state") // never usable
	squat := filepath.Join(tmp, "livecgi-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(squat, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(squat, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// A decoy of the other user's, named like ours, is skipped.
	decoy := squat + "-0000000000000000-00"
	os.Mkdir(decoy, 0o700)
	os.Chown(decoy, 65534, 65534)

	got, fallback, err := StateDir(want)
	if err != nil || fallback == nil {
		t.Fatalf("StateDir = %q, %v, %v", got, fallback, err)
	}
	if got == squat || got == decoy || !strings.HasPrefix(got, squat+"-") {
		t.Fatalf("StateDir = %q, want a fresh dir next to %s", got, squat)
	}
	fi, err := os.Lstat(got)
	if err != nil || fi.Mode().Perm() != 0o700 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
		t.Fatalf("%s: %v %v", got, fi.Mode(), err)
	}
	again, _, err := StateDir(want)
	if err != nil || again != got {
		t.Fatalf("second StateDir = %q, %v, want %q", again, err, got)
	}

	// Two of ours (stubs that made one each at once): the one a
	// supervisor answers in wins, even if it is the younger.
	younger := squat + "-ffffffffffffffff-00"
	if err := os.Mkdir(younger, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(younger, ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if d, _, err := StateDir(want); err != nil || d != younger {
		t.Fatalf("StateDir = %q, %v, want the one with a live control socket %s", d, err, younger)
	}
}
