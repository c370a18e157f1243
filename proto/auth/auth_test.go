package auth

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
