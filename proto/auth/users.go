package auth

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/livecgi/livecgi/proto/trust"
)

// The users file (auth_users): one user a line, "name role hash", # for
// comments. hash is pbkdf2-sha256$<iterations>$<salt>$<key>, salt and key
// in unpadded standard base64. livecgid -adduser writes it.
const (
	hashScheme = "pbkdf2-sha256"
	// HashIterations is what -adduser uses: the stub checks a password on
	// every page load and ?connect, on CPUs far slower than a PC's (7 ms
	// on x86-64, 170 ms for linux/arm under qemu). Each entry keeps its own
	// count, so raising this later does not invalidate older entries.
	HashIterations = 10000
	saltLen        = 16
	keyLen         = 32
	maxUsersFile   = 256 << 10
	maxIterations  = 10_000_000
)

// User is one entry of the users file.
type User struct {
	Name, Role string
	Hash       string // empty for a webserver-mode entry without a password ("-")
}

// ReadUsers reads the users file at path after trust.Check (a secret, in
// a sticky directory if need be). Errors name the line.
func ReadUsers(path string) ([]User, error) {
	if err := trust.Check(path, trust.Options{Secret: true, StickyDirs: true}); err != nil {
		return nil, fmt.Errorf("users file refused: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	if len(b) > maxUsersFile {
		return nil, fmt.Errorf("users file %s: over %d bytes", path, maxUsersFile)
	}
	return ParseUsers(b)
}

// ParseUsers parses the text of a users file.
func ParseUsers(b []byte) ([]User, error) {
	var users []User
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("users file line %d: want \"name role hash\"", n)
		}
		u := User{Name: f[0], Role: f[1], Hash: f[2]}
		if !ValidUser(u.Name) {
			return nil, fmt.Errorf("users file line %d: bad user name %q", n, u.Name)
		}
		if !ValidRole(u.Role) {
			return nil, fmt.Errorf("users file line %d: role %q: want viewer or operator", n, u.Role)
		}
		if u.Hash == "-" {
			u.Hash = ""
		} else if _, _, _, err := parseHash(u.Hash); err != nil {
			return nil, fmt.Errorf("users file line %d: %v", n, err)
		}
		for _, o := range users {
			if o.Name == u.Name {
				return nil, fmt.Errorf("users file line %d: user %q listed twice", n, u.Name)
			}
		}
		users = append(users, u)
	}
	return users, sc.Err()
}

// Lookup returns the entry of name.
func Lookup(users []User, name string) (User, bool) {
	for _, u := range users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// HashPassword returns a fresh salted hash of password for the users file.
func HashPassword(password string) (string, error) {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, password, salt, HashIterations, keyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, HashIterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

func parseHash(h string) (iter int, salt, key []byte, err error) {
	f := strings.Split(h, "$")
	if len(f) != 4 || f[0] != hashScheme {
		return 0, nil, nil, fmt.Errorf("hash: want %s$<iterations>$<salt>$<key>", hashScheme)
	}
	iter, err = strconv.Atoi(f[1])
	if err != nil || iter < 1 || iter > maxIterations {
		return 0, nil, nil, fmt.Errorf("hash: bad iteration count %q", f[1])
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(f[2])
	key, err2 := base64.RawStdEncoding.DecodeString(f[3])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) != keyLen {
		return 0, nil, nil, errors.New("hash: bad salt or key")
	}
	return iter, salt, key, nil
}

// dummyHash is checked against when the user is unknown, so that a wrong
// name costs as much time as a wrong password.
var dummyHash = hashScheme + "$" + strconv.Itoa(HashIterations) + "$AAAAAAAAAAAAAAAAAAAAAA$" + strings.Repeat("A", 43)

// CheckPassword finds name in users and checks password against its hash
// in constant time. Passwords are bytes: any, colons and non-UTF-8
// included; an empty one never matches.
func CheckPassword(users []User, name, password string) (User, bool) {
	u, found := Lookup(users, name)
	h := u.Hash
	if !found || h == "" {
		h = dummyHash
	}
	iter, salt, key, err := parseHash(h)
	if err != nil {
		return User{}, false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, keyLen)
	ok := err == nil && subtle.ConstantTimeCompare(got, key) == 1
	if !found || u.Hash == "" || password == "" || !ok {
		return User{}, false
	}
	return u, true
}

// SetUser adds or replaces name's entry in the users file at path (mode
// 0600, written to a temp file and renamed into place) and returns whether
// it replaced one. Other lines are kept as they are.
func SetUser(path string, u User) (replaced bool, err error) {
	if !ValidUser(u.Name) {
		return false, fmt.Errorf("bad user name %q: 1 to %d bytes, no spaces, colons or control characters", u.Name, MaxUser)
	}
	if !ValidRole(u.Role) {
		return false, fmt.Errorf("role %q: want viewer or operator", u.Role)
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if len(old) > 0 {
		if err := trust.Check(path, trust.Options{Secret: true, StickyDirs: true}); err != nil {
			return false, fmt.Errorf("users file refused: %w", err)
		}
		if _, err := ParseUsers(old); err != nil {
			return false, err
		}
	}
	hash := u.Hash
	if hash == "" {
		hash = "-"
	}
	entry := u.Name + " " + u.Role + " " + hash
	var out []string
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == u.Name {
			line, replaced = entry, true
		}
		if line != "" || len(out) > 0 {
			out = append(out, line)
		}
	}
	if !replaced {
		out = append(out, entry)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".users-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(strings.Join(out, "\n") + "\n"); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Close(); err != nil { // CreateTemp made it 0600
		return false, err
	}
	return replaced, os.Rename(f.Name(), path)
}
