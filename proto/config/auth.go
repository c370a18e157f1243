package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/livecgi/livecgi/proto/auth"
)

// Authentication modes (the auth key): how the stub learns who asks for a
// token. cgi/README.md, "Who can do what", has a recipe for each.
const (
	AuthNone      = "none"      // nobody signs in; every visitor is an anonymous viewer
	AuthWebserver = "webserver" // the web server authenticates and passes REMOTE_USER
	AuthBasic     = "basic"     // the stub checks HTTP Basic against auth_users
	AuthCommand   = "command"   // auth_command (the vendor's session check) decides
)

// ErrForbidden is wrapped by Authorize's refusals.
var ErrForbidden = errors.New("forbidden")

// CommandRole is the role command needs: its command_role override, else
// operator.
func (c *Config) CommandRole(command string) string {
	if r, ok := c.CommandRoles[command]; ok {
		return r
	}
	return auth.RoleOperator
}

// Authorize is the one check of every transport (the WebSocket today; the
// same-port, long-poll and MQTT paths call it too) before a command runs:
// nil if id may run command, else an error wrapping ErrForbidden that says
// why.
func (c *Config) Authorize(id auth.Identity, command string) error {
	need := c.CommandRole(command)
	if auth.Rank(id.Role) >= auth.Rank(need) {
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
func (c *Config) Recheck(id auth.Identity, setup string, users func() ([]auth.User, error)) (auth.Identity, error) {
	same := setup == c.AuthSetup()
	capTo := func(role string) auth.Identity {
		if auth.Rank(role) < auth.Rank(id.Role) {
			id.Role = role
		}
		return id
	}
	fromFile := func(unlisted string, needHash bool) (auth.Identity, error) {
		us, err := users()
		if err != nil {
			return capTo(""), err
		}
		u, ok := auth.Lookup(us, id.User)
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
			return fromFile(auth.RoleViewer, false)
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
	return capTo(auth.RoleViewer), nil
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
		if !ok || name == "" || !auth.ValidRole(role) {
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
