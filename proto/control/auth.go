package control

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
	"syscall"
	"unicode/utf8"
)

// Authentication modes (the auth key): how the stub learns who asks for a
// token. cgi/README.md, "Who can do what", has a recipe for each.
const (
	AuthNone      = "none"      // nobody signs in; every visitor is an anonymous viewer
	AuthWebserver = "webserver" // the web server authenticates and passes REMOTE_USER
	AuthBasic     = "basic"     // the stub checks HTTP Basic against auth_users
	AuthCommand   = "command"   // auth_command (the vendor's session check) decides
)

// Roles, from least to most allowed. A viewer sees readings; an operator
// may also run commands.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
)

// ErrForbidden is wrapped by Authorize's refusals.
var ErrForbidden = errors.New("forbidden")

// Identity is who a token was minted for. User is "" for an anonymous
// visitor (auth = none).
type Identity struct {
	User string
	Role string
}

// roleRank orders the roles; 0 is no role at all.
func roleRank(role string) int {
	switch role {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	}
	return 0
}

// ValidRole reports whether role is viewer or operator.
func ValidRole(role string) bool { return roleRank(role) > 0 }

// MaxUser is the longest user name a token carries.
const MaxUser = 64

// ValidUser reports whether name can be a user: 1 to MaxUser bytes of
// UTF-8 without spaces, colons (Basic splits at the first one) or control
// characters.
func ValidUser(name string) bool {
	if name == "" || len(name) > MaxUser || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r == ':' || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// CommandRole is the role command needs: its command_role override, else
// operator.
func (c *Config) CommandRole(command string) string {
	if r, ok := c.CommandRoles[command]; ok {
		return r
	}
	return RoleOperator
}

// Authorize is the one check of every transport (the WebSocket today; the
// same-port, long-poll and MQTT paths call it too) before a command runs:
// nil if id may run command, else an error wrapping ErrForbidden that says
// why.
func (c *Config) Authorize(id Identity, command string) error {
	need := c.CommandRole(command)
	if roleRank(id.Role) >= roleRank(need) {
		return nil
	}
	who := "an anonymous visitor"
	if id.User != "" {
		who = strconv.Quote(id.User)
	}
	role := id.Role
	if role == "" {
		role = "no role"
	}
	return fmt.Errorf("%w: %s needs role %s; %s is %s", ErrForbidden, command, need, who, role)
}

// AuthSetup names the rules by which the stub gives roles: the auth
// mode and what it asks (the users file, the auth command). An identity
// admitted under one setup is judged again under another (Recheck).
func (c *Config) AuthSetup() string {
	return c.Auth + "\x00" + c.AuthUsers + "\x00" + c.AuthCommand
}

// Recheck holds id, admitted under the auth setup setup, to c's rules
// now: what the stub would give that user now, never more than the role
// the token carries (a raised role takes a new connection). users reads
// the users file (auth_users) when the rules need it. By mode:
//   - basic: the user's entry in the users file; without one (or without
//     a password), or for an anonymous visitor, no role at all;
//   - webserver: with auth_users, the user's entry, else viewer; without,
//     the token's role; an anonymous visitor has no role;
//   - none: the token's role if id was admitted under this very setup,
//     else viewer at most (everyone is an anonymous viewer now);
//   - command: the token's role if id was admitted under this very setup,
//     else no role (only the auth command can tell, at the next sign-in).
//
// The role is "" when id may do nothing at all, not even watch; err says
// why when the users file could not be read.
func (c *Config) Recheck(id Identity, setup string, users func() ([]User, error)) (Identity, error) {
	same := setup == c.AuthSetup()
	capTo := func(role string) Identity {
		if roleRank(role) < roleRank(id.Role) {
			id.Role = role
		}
		return id
	}
	fromFile := func(unlisted string, needHash bool) (Identity, error) {
		us, err := users()
		if err != nil {
			return capTo(""), err
		}
		u, ok := Lookup(us, id.User)
		if !ok || needHash && u.Hash == "" {
			return capTo(unlisted), nil
		}
		return capTo(u.Role), nil
	}
	switch c.Auth {
	case AuthBasic:
		if id.User == "" {
			return capTo(""), nil
		}
		return fromFile("", true)
	case AuthWebserver:
		if id.User == "" {
			return capTo(""), nil
		}
		if c.AuthUsers != "" {
			return fromFile(RoleViewer, false)
		}
		return id, nil
	case AuthCommand:
		if same {
			return id, nil
		}
		return capTo(""), nil
	}
	if same {
		return id, nil
	}
	return capTo(RoleViewer), nil
}

// setAuth applies the auth keys; Config.set calls it for keys it does not
// know.
func (c *Config) setAuth(k, v string) error {
	switch k {
	case "auth":
		c.Auth = v
	case "auth_users":
		c.AuthUsers = v
	case "auth_command":
		c.AuthCommand = v
	case "command_role":
		name, role, ok := strings.Cut(v, " ")
		role = strings.TrimSpace(role)
		if !ok || name == "" || !ValidRole(role) {
			return fmt.Errorf("want \"<command id> viewer|operator\", got %q", v)
		}
		if c.CommandRoles == nil {
			c.CommandRoles = map[string]string{}
		}
		c.CommandRoles[name] = role
	default:
		return fmt.Errorf("unknown key")
	}
	return nil
}

// validateAuth checks the auth keys together.
func (c *Config) validateAuth() error {
	switch c.Auth {
	case AuthNone, AuthWebserver:
	case AuthBasic:
		if c.AuthUsers == "" {
			return errors.New("auth = basic needs auth_users")
		}
	case AuthCommand:
		if !filepath.IsAbs(c.AuthCommand) {
			return fmt.Errorf("auth = command needs auth_command, an absolute path (got %q)", c.AuthCommand)
		}
	default:
		return fmt.Errorf("auth %q: want none, webserver, basic or command", c.Auth)
	}
	if c.AuthUsers != "" && !filepath.IsAbs(c.AuthUsers) {
		return fmt.Errorf("auth_users %q: want an absolute path", c.AuthUsers)
	}
	return nil
}

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

// CheckTrusted refuses a file others could have written, as the supervisor
// refuses plugins: it and its directory must not be writable by group or
// others and must be owned by this user or root. A users file must also
// not be readable by others (it holds password hashes).
func CheckTrusted(path string, secret bool) error {
	uid := uint32(os.Getuid())
	for i, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if i == 0 && !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		if fi.Mode().Perm()&0o022 != 0 && !(i == 1 && fi.Mode()&fs.ModeSticky != 0) {
			return fmt.Errorf("%s is writable by group or others (mode %v)", p, fi.Mode().Perm())
		}
		if i == 0 && secret && fi.Mode().Perm()&0o004 != 0 {
			return fmt.Errorf("%s is readable by others (mode %v); chmod o-r it", p, fi.Mode().Perm())
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uid && st.Uid != 0 {
			return fmt.Errorf("%s is owned by uid %d, not %d or root", p, st.Uid, uid)
		}
	}
	return nil
}

// ReadUsers reads the users file at path after CheckTrusted. Errors name
// the line.
func ReadUsers(path string) ([]User, error) {
	if err := CheckTrusted(path, true); err != nil {
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
		if err := CheckTrusted(path, true); err != nil {
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

// Basic header limits: longer headers are refused unparsed.
const MaxAuthorization = 1024

// Errors of ParseBasic.
var (
	ErrNoCredentials = errors.New("no credentials")
	ErrHeaderTooLong = fmt.Errorf("header Authorization over %d bytes", MaxAuthorization)
)

// ParseBasic reads user and password from an Authorization header value
// (HTTP_AUTHORIZATION). Headers over MaxAuthorization bytes are refused
// before any decoding.
func ParseBasic(h string) (user, password string, err error) {
	if h == "" {
		return "", "", ErrNoCredentials
	}
	if len(h) > MaxAuthorization {
		return "", "", ErrHeaderTooLong
	}
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", fmt.Errorf("header Authorization: scheme %.16q: want Basic", scheme)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", errors.New("header Authorization: bad base64")
	}
	user, password, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New("header Authorization: no colon between user and password")
	}
	return user, password, nil
}
