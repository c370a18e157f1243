package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(Config) bool
		wantErr  string
	}{
		{"empty", "", func(c Config) bool { return c.Listen == ":8081" && c.MaxFrame == 64<<10 }, ""},
		{"comments and blanks", "# hi\n\n   # indented\nlisten = 127.0.0.1:9000\n", func(c Config) bool { return c.Listen == "127.0.0.1:9000" }, ""},
		{"durations and numbers", "ping_interval = 5s\nmax_clients = 10\nrate = 2.5\nmax_frame = 1024", func(c Config) bool {
			return c.PingInterval == 5*time.Second && c.MaxClients == 10 && c.Rate == 2.5 && c.MaxFrame == 1024
		}, ""},
		{"sha256 allowlist", "plugin_sha256 = system " + strings.Repeat("ab", 32) + "\nplugin_sha256 = leds " + strings.Repeat("CD", 32),
			func(c Config) bool {
				return c.PluginSHA256["system"] == strings.Repeat("ab", 32) && c.PluginSHA256["leds"] == strings.Repeat("cd", 32)
			}, ""},
		{"the sample is the defaults", SampleConfig, func(c Config) bool {
			d := Default()
			return c.Listen == d.Listen && c.StateDir == d.StateDir && c.History == d.History && c.IdleTimeout == d.IdleTimeout
		}, ""},
		{"unknown key", "listen = :1\nlisten_addr = :2", nil, `2: listen_addr: unknown key`},
		{"no equals", "listen :1", nil, `1: want key = value`},
		{"twice", "listen = :1\nlisten = :2", nil, `2: "listen" set twice`},
		{"bad sum", "plugin_sha256 = system abc", nil, "want \"<file name> <64 hex digits>\""},
		{"invalid value", "max_clients = 0", nil, "max_clients must be at least 1"},
		{"bad level", "log_level = loud", nil, `log_level "loud"`},
		{"allowed hosts", "allowed_hosts = Device.LAN., other.local  localhost,*", func(c Config) bool {
			return strings.Join(c.AllowedHosts, " ") == "device.lan other.local localhost *"
		}, ""},
		{"allowed hosts with port", "allowed_hosts = device.lan:8080", nil, `want a host name without scheme or port`},
		{"allowed hosts empty", "allowed_hosts = ,", nil, `allowed_hosts: empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := c.Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(c) {
				t.Fatalf("err = %v, config = %+v", err, c)
			}
		})
	}
}

// TestConfigValueErrors: a bad value of each kind of key is named with
// what the key wants, in the file's words, not Go's.
func TestConfigValueErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"token_ttl = 60", "1: token_ttl = 60: a duration needs a unit, e.g. 60s"},
		{"ping_interval = 1.5", "1: ping_interval = 1.5: a duration needs a unit, e.g. 1.5s"},
		{"idle_timeout = soon", "1: idle_timeout = soon: want a duration with a unit, e.g. 500ms, 20s or 5m"},
		{"max_clients = many", "1: max_clients = many: want a whole number, e.g. 100"},
		{"history = 1.5", "1: history = 1.5: want a whole number, e.g. 100"},
		{"gogc = 99999999999", "1: gogc = 99999999999: too large"},
		{"max_frame = 64k", "1: max_frame = 64k: want a whole number, e.g. 65536"},
		{"rate = fast", "1: rate = fast: want a number, e.g. 20 or 0.5"},
		{"rate = NaN", "1: rate = NaN: want a number, e.g. 20 or 0.5"},
		{"rate = 1e999", "1: rate = 1e999: too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c := Default()
			err := c.Parse([]byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	c, err := Load(filepath.Join(dir, "missing.conf"))
	if err != nil || c.Listen != Default().Listen {
		t.Fatalf("missing file: %v %+v", err, c)
	}
	p := filepath.Join(dir, "bad.conf")
	os.WriteFile(p, []byte("nope = 1\n"), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p+":1: nope: unknown key") {
		t.Fatalf("err = %v", err)
	}
}

func TestHostAllowed(t *testing.T) {
	name, err := os.Hostname()
	if err != nil || name == "" {
		t.Fatalf("hostname: %q %v", name, err)
	}
	short, _, _ := strings.Cut(strings.ToLower(name), ".")
	def := Default()
	listed := Default()
	listed.AllowedHosts = []string{"device.lan", "other.example"}
	any := Default()
	any.AllowedHosts = []string{"*"}
	tests := []struct {
		host              string
		def, listed, star bool
	}{
		{"127.0.0.1", true, true, true},
		{"127.0.0.1:8080", true, true, true},
		{"192.168.1.20:80", true, true, true},
		{"[::1]", true, true, true},
		{"[::1]:8081", true, true, true},
		{"::1", true, true, true},
		{"[fe80::1%25eth0]:80", true, true, true}, // with a zone
		{"localhost", true, false, true},
		{"LocalHost.:8080", true, false, true},
		{name, true, false, true},
		{strings.ToUpper(name) + ".:80", true, false, true},
		{short + ".local", true, false, true},
		{short + ".local.", true, false, true},
		{"evil.example", false, false, true},
		{"evil.example:8080", false, false, true},
		{"localhost.evil.example", false, false, true},
		{name + ".evil.example", false, false, true},
		{"device.lan", false, true, true},
		{"DEVICE.lan.:8080", false, true, true},
		{"", false, false, false},
		{"[", false, false, false},
		{":80", false, false, false},
	}
	for _, tt := range tests {
		if got := def.HostAllowed(tt.host); got != tt.def {
			t.Errorf("default: HostAllowed(%q) = %v", tt.host, got)
		}
		if got := listed.HostAllowed(tt.host); got != tt.listed {
			t.Errorf("listed: HostAllowed(%q) = %v", tt.host, got)
		}
		if got := any.HostAllowed(tt.host); got != tt.star {
			t.Errorf("*: HostAllowed(%q) = %v", tt.host, got)
		}
	}
}

// TestLoadUntrusted: a config file others could have written is refused.
func TestLoadUntrusted(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "livecgi.conf")
	os.WriteFile(p, []byte("listen = :9\n"), 0o620)
	os.Chmod(p, 0o620)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "config file not trusted: "+p+" is writable by group or others") || !strings.Contains(err.Error(), "chmod go-w "+p) {
		t.Fatalf("group-writable config: %v", err)
	}
	os.Chmod(p, 0o640)
	if c, err := Load(p); err != nil || c.Listen != ":9" {
		t.Fatalf("fixed config: %v", err)
	}
}

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

// TestReachConfig: tls_cert/tls_key, public_port and public_url parse,
// and what makes no sense is refused with the key's name.
func TestReachConfig(t *testing.T) {
	var c Config
	c = Default()
	if err := c.Parse([]byte("tls_cert = /etc/c.pem\ntls_key = /etc/k.pem\npublic_port = 443\n")); err != nil || c.TLSCert != "/etc/c.pem" || c.PublicPort != 443 {
		t.Errorf("good keys: %+v %v", c, err)
	}
	c = Default()
	if err := c.Parse([]byte("public_url = wss://device.example.net:8443/livecgi/\n")); err != nil {
		t.Errorf("public_url: %v", err)
	}
	if scheme, rest, _ := c.PublicBase(); scheme != "wss" || rest != "device.example.net:8443/livecgi" {
		t.Errorf("PublicBase = %q %q", scheme, rest)
	}
	for conf, want := range map[string]string{
		"tls_cert = /c.pem\n":                    "tls_cert and tls_key go together",
		"tls_key = /k.pem\n":                     "tls_cert and tls_key go together",
		"public_port = 70000\n":                  "public_port must be a port number",
		"public_port = -1\n":                     "public_port must be a port number",
		"public_port = 1\npublic_url = ws://h\n": "exclude each other",
		"public_url = http://h\n":                "want ws:// or wss://",
		"public_url = wss://\n":                  "want scheme://host",
		"public_url = wss://h/x?token=1\n":       "no query",
		"public_url = wss://user@h\n":            "no query, user",
		"public_url = wss://h\"onerror=\"x\n":    "want scheme://host",
	} {
		c := Default()
		if err := c.Parse([]byte(conf)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", conf, err, want)
		}
	}
}

// TestRecheck: an identity is held to the rules in force: a users file
// lowers or removes a role, an anonymous visitor has none where sign-in
// is needed, a changed setup caps or clears what cannot be checked, and
// a role is never raised.
func TestRecheck(t *testing.T) {
	users := []auth.User{{Name: "otto", Role: auth.RoleOperator, Hash: "x"}, {Name: "vera", Role: auth.RoleViewer, Hash: "x"}, {Name: "nopw", Role: auth.RoleOperator}}
	read := func() ([]auth.User, error) { return users, nil }
	broken := func() ([]auth.User, error) { return nil, errors.New("users file refused") }
	conf := func(auth, usersFile string) Config {
		c := Default()
		c.Auth, c.AuthUsers = auth, usersFile
		if auth == AuthCommand {
			c.AuthCommand = "/usr/bin/check"
		}
		return c
	}
	none, basic, web, webUsers, cmd := conf(AuthNone, ""), conf(AuthBasic, "/u"), conf(AuthWebserver, ""), conf(AuthWebserver, "/u"), conf(AuthCommand, "")
	op := func(u string) auth.Identity { return auth.Identity{User: u, Role: auth.RoleOperator} }
	for _, tt := range []struct {
		name  string
		c     Config
		id    auth.Identity
		setup string // "" = the config's own
		want  string // the role held to
	}{
		{"none, same setup", none, op("otto"), "", auth.RoleOperator},
		{"none after basic", none, op("otto"), basic.AuthSetup(), auth.RoleViewer},
		{"basic, operator in file", basic, op("otto"), "", auth.RoleOperator},
		{"basic, lowered in file", basic, op("vera"), "", auth.RoleViewer},
		{"basic, not in file", basic, op("gone"), "", ""},
		{"basic, no password", basic, op("nopw"), "", ""},
		{"basic, anonymous", basic, auth.Identity{Role: auth.RoleViewer}, none.AuthSetup(), ""},
		{"basic, never raised", basic, auth.Identity{User: "otto", Role: auth.RoleViewer}, "", auth.RoleViewer},
		{"webserver, no users file", web, op("anyone"), "", auth.RoleOperator},
		{"webserver, anonymous", web, auth.Identity{Role: auth.RoleViewer}, none.AuthSetup(), ""},
		{"webserver users file, unlisted", webUsers, op("anyone"), "", auth.RoleViewer},
		{"webserver users file, listed", webUsers, op("vera"), "", auth.RoleViewer},
		{"command, same setup", cmd, op("otto"), "", auth.RoleOperator},
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
