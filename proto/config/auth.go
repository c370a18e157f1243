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
// token. README.md, "Who can do what", has a recipe for each.
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
