package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livecgi/livecgi/proto/auth"
)

// TestAddUser: -adduser writes a users file (0600) the stub can check
// passwords against, odd bytes included; it replaces an entry on a second
// run and refuses an empty password or a bad role.
func TestAddUser(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	conf := filepath.Join(dir, "livecgi.conf")
	os.WriteFile(conf, []byte("auth = basic\nauth_users = "+users+"\n"), 0o600)
	add := func(pass string, args ...string) (string, error) {
		in := filepath.Join(t.TempDir(), "stdin")
		os.WriteFile(in, []byte(pass), 0o600)
		f, err := os.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var out bytes.Buffer
		old := os.Stdin
		os.Stdin = f
		defer func() { os.Stdin = old }()
		err = run(context.Background(), args, &out, &out)
		return out.String(), err
	}
	odd := "p:a\xff\xfe ss:\t" // colons, non-UTF-8, a space and a tab
	if out, err := add(odd+"\r\n", "-config", conf, "-adduser", "alice"); err != nil || !strings.Contains(out, "added alice (operator)") {
		t.Fatalf("adduser: %v %q", err, out)
	}
	if out, err := add("secret\n", "-adduser=vera", "-role", "viewer", "-config", conf); err != nil || !strings.Contains(out, "added vera (viewer)") {
		t.Fatalf("adduser viewer: %v %q", err, out)
	}
	fi, err := os.Stat(users)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v %v", err, fi.Mode())
	}
	list, err := auth.ReadUsers(users)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := auth.CheckPassword(list, "alice", odd); !ok || u.Role != auth.RoleOperator {
		t.Errorf("alice with her odd password: %v %v", u, ok)
	}
	for _, wrong := range []string{"", "p", odd + "\r", strings.ToValidUTF8(odd, "?")} {
		if _, ok := auth.CheckPassword(list, "alice", wrong); ok {
			t.Errorf("alice with %q accepted", wrong)
		}
	}
	if out, err := add("new\n", "-users", users, "-adduser", "alice", "-role", "viewer"); err != nil || !strings.Contains(out, "changed alice (viewer)") {
		t.Fatalf("change alice: %v %q", err, out)
	}
	list, _ = auth.ReadUsers(users)
	if u, ok := auth.CheckPassword(list, "alice", "new"); !ok || u.Role != auth.RoleViewer || len(list) != 2 {
		t.Errorf("alice changed: %v %v, %d users", u, ok, len(list))
	}
	for _, tt := range []struct{ pass, want string }{
		{"\n", "empty password"},
		{"", "empty password"},
	} {
		if _, err := add(tt.pass, "-users", users, "-adduser", "bob"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("password %q: %v, want %q", tt.pass, err, tt.want)
		}
	}
	if _, err := add("x\n", "-users", users, "-adduser", "bob", "-role", "admin"); err == nil || !strings.Contains(err.Error(), `role "admin"`) {
		t.Errorf("bad role: %v", err)
	}
	if _, err := add("x\n", "-users", users, "-adduser", "bo:b"); err == nil || !strings.Contains(err.Error(), "bad user name") {
		t.Errorf("bad name: %v", err)
	}
}
