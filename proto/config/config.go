package config

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/livecgi/livecgi/proto/trust"
)

// Build-time defaults, settable with -ldflags -X.
var (
	DefaultStateDir   = "/var/run/livecgi"
	DefaultPluginsDir = "/usr/lib/livecgi/plugins"
	DefaultSupervisor = "/usr/sbin/livecgid"
)

// SampleConfig is a commented configuration file with every key at its
// default (livecgid -print-config prints it).
//
//go:embed sample.conf
var SampleConfig string

// Config is what livecgi.conf sets. The zero value is not useful; start
// from Default.
type Config struct {
	Listen         string            // WebSocket listen address
	StateDir       string            // lock, control socket, secret, log
	PluginsDir     string            // plugin binaries
	Supervisor     string            // path of livecgid, for the stub
	LogLevel       string            // debug, info, warn, error
	MaxClients     int               // concurrent clients: WebSockets and poll sessions
	MaxFrame       int64             // bytes per client frame
	Rate           float64           // client messages per second
	Burst          int               // client messages in a burst
	PingInterval   time.Duration     // server pings; 0 disables
	WriteTimeout   time.Duration     // a client that takes longer to accept a frame is closed
	CommandTimeout time.Duration     // per command
	TokenTTL       time.Duration     // lifetime of a connect token
	History        int               // readings kept for resume
	IdleTimeout    time.Duration     // exit with no client for this long; 0 = never
	StartTimeout   time.Duration     // how long the stub waits for a starting supervisor
	ProcRoot       string            // root of procfs for plugins
	SysRoot        string            // root of sysfs for plugins
	ExecDir        string            // programs the exec plugin runs (NAME.conf files)
	NetInterfaces  string            // the system plugin's interfaces: up, all, or names
	PluginSHA256   map[string]string // plugin file name → allowed SHA-256 (hex); empty = any
	GOGC           int               // supervisor's GC target percent (GOGC); 0 = Go's default
	MemoryLimitMB  int               // supervisor's soft memory limit (GOMEMLIMIT) in MiB; 0 = none
	AllowedHosts   []string          // host names pages may be loaded from; nil = the defaults (see HostAllowed)
	// MaxClientsPerAddr bounds the clients of one address and user, so
	// that one address cannot take every place; above MaxClients it is
	// MaxClients.
	MaxClientsPerAddr int
	// How browsers reach the supervisor (see PublicBase).
	TLSCert      string        // PEM certificate (chain) of the WebSocket port; with TLSKey, it serves wss://
	TLSKey       string        // PEM private key of TLSCert
	PublicPort   int           // port browsers dial instead of the listen port (a port-forward); 0 = the listen port
	PublicURL    string        // ws:// or wss:// base URL browsers dial instead (a reverse proxy); "" = none
	PollTimeout  time.Duration // longest a long poll waits for news
	PollInterval time.Duration // shortest time between two answers to one poll session
	// Who may watch and act: see auth.go.
	Auth         string            // none, webserver, basic or command
	AuthUsers    string            // users file: name, role, password hash
	AuthCommand  string            // program that checks a request's session (auth = command)
	CommandRoles map[string]string // command id → role it needs (default operator)
	// The broker bridge (mqtt.go); none without mqtt_url.
	MQTT MQTT
	// Report by exception, alarms and history (sensors.go).
	Sensors Sensors

	// Sum is the SHA-256 (hex) of the file Load read, "" without one:
	// which version of the file a configuration came from (livecgid
	// reports the one it runs in Status.ConfigSum).
	Sum string
}

// Default returns the configuration used when there is no file.
func Default() Config {
	return Config{
		Listen:         ":8081",
		StateDir:       DefaultStateDir,
		PluginsDir:     DefaultPluginsDir,
		Supervisor:     DefaultSupervisor,
		LogLevel:       "info",
		MaxClients:     1024,
		MaxFrame:       64 << 10,
		Rate:           20,
		Burst:          40,
		PingInterval:   20 * time.Second,
		WriteTimeout:   10 * time.Second,
		CommandTimeout: 5 * time.Second,
		TokenTTL:       60 * time.Second,
		History:        1024,
		StartTimeout:   3 * time.Second,
		IdleTimeout:    10 * time.Minute,
		ProcRoot:       "/proc",
		SysRoot:        "/sys",
		ExecDir:        "/etc/livecgi/exec.d",
		NetInterfaces:  "up",
		GOGC:           50,
		MemoryLimitMB:  64,
		Auth:           AuthNone,
		PollTimeout:    25 * time.Second,
		PollInterval:   250 * time.Millisecond,
		MQTT:           DefaultMQTT(),
		Sensors:        DefaultSensors(),
		// A person's tabs and phone, or a household or small office
		// behind one NAT; 64 addresses are needed to fill max_clients.
		MaxClientsPerAddr: 16,
	}
}

// Load reads the configuration file at path over Default. A missing file is
// not an error: it yields the defaults. A file that others could have
// written (trust.Check) is refused. Unknown keys, bad values and repeated
// keys are errors naming the file, line and key. Sum is set whenever the
// file could be read, errors included.
func Load(path string) (Config, error) {
	c := Default()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	sum := sha256.Sum256(b)
	c.Sum = hex.EncodeToString(sum[:])
	if err := trust.Check(path, trust.Options{}); err != nil {
		return c, fmt.Errorf("config file not trusted: %w", err)
	}
	if err := c.Parse(b); err != nil {
		return c, fmt.Errorf("%s:%w", path, err)
	}
	return c, nil
}

// Parse applies "key = value" lines to c. Blank lines and lines starting
// with # are ignored. plugin_sha256 ("name sum") and command_role ("id role")
// may repeat.
func (c *Config) Parse(b []byte) error {
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%d: want key = value, got %q", n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if seen[k] && k != "plugin_sha256" && k != "command_role" {
			return fmt.Errorf("%d: %q set twice", n, k)
		}
		seen[k] = true
		if err := c.set(k, v); err != nil {
			if _, ok := err.(valueError); ok {
				return fmt.Errorf("%d: %s = %s: %w", n, k, v, err)
			}
			return fmt.Errorf("%d: %s: %w", n, k, err)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return c.Validate()
}

func (c *Config) set(k, v string) error {
	str := map[string]*string{
		"listen": &c.Listen, "state_dir": &c.StateDir, "plugins_dir": &c.PluginsDir,
		"supervisor": &c.Supervisor, "log_level": &c.LogLevel, "proc_root": &c.ProcRoot, "sys_root": &c.SysRoot,
		"tls_cert": &c.TLSCert, "tls_key": &c.TLSKey, "public_url": &c.PublicURL,
		"exec_dir": &c.ExecDir, "net_interfaces": &c.NetInterfaces,
	}
	dur := map[string]*time.Duration{
		"ping_interval": &c.PingInterval, "write_timeout": &c.WriteTimeout, "command_timeout": &c.CommandTimeout,
		"token_ttl": &c.TokenTTL, "idle_timeout": &c.IdleTimeout, "start_timeout": &c.StartTimeout,
		"poll_timeout": &c.PollTimeout, "poll_interval": &c.PollInterval,
	}
	num := map[string]*int{"max_clients": &c.MaxClients, "max_clients_per_addr": &c.MaxClientsPerAddr, "burst": &c.Burst, "history": &c.History,
		"gogc": &c.GOGC, "memory_limit_mb": &c.MemoryLimitMB, "public_port": &c.PublicPort}
	if p, ok := str[k]; ok {
		*p = v
		return nil
	}
	if p, ok := dur[k]; ok {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		*p = d
		return nil
	}
	if p, ok := num[k]; ok {
		i, err := parseInt(v, "100")
		if err != nil {
			return err
		}
		*p = int(i)
		return nil
	}
	switch k {
	case "max_frame":
		i, err := parseInt(v, "65536")
		c.MaxFrame = i
		return err
	case "rate":
		f, err := parseFloat(v)
		c.Rate = f
		return err
	case "allowed_hosts":
		c.AllowedHosts = nil
		for _, h := range strings.FieldsFunc(strings.ToLower(v), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if strings.ContainsAny(h, ":/[]") {
				return fmt.Errorf("%q: want a host name without scheme or port", h)
			}
			c.AllowedHosts = append(c.AllowedHosts, strings.TrimSuffix(h, "."))
		}
		if len(c.AllowedHosts) == 0 {
			return errors.New("empty: leave the key out for the default")
		}
		return nil
	case "plugin_sha256":
		name, sum, ok := strings.Cut(v, " ")
		sum = strings.ToLower(strings.TrimSpace(sum))
		if !ok || len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			return fmt.Errorf("want \"<file name> <64 hex digits>\", got %q", v)
		}
		if c.PluginSHA256 == nil {
			c.PluginSHA256 = map[string]string{}
		}
		c.PluginSHA256[name] = sum
		return nil
	}
	if ok, err := c.setMQTT(k, v); ok {
		return err
	}
	if ok, err := c.setSensors(k, v); ok {
		return err
	}
	return c.setAuth(k, v)
}

// valueError says what a key wants; Parse puts "key = value: " before it.
type valueError string

func (e valueError) Error() string { return string(e) }

// parseDuration reads a Go duration ("500ms", "20s", "5m").
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err == nil {
		return d, nil
	}
	if _, nerr := strconv.ParseFloat(v, 64); nerr == nil {
		return 0, valueError("a duration needs a unit, e.g. " + v + "s")
	}
	return 0, valueError("want a duration with a unit, e.g. 500ms, 20s or 5m")
}

// parseInt reads a whole number; example is one the key would take.
func parseInt(v, example string) (int64, error) {
	i, err := strconv.ParseInt(v, 10, 32)
	if errors.Is(err, strconv.ErrRange) {
		return 0, valueError("too large")
	}
	if err != nil {
		return 0, valueError("want a whole number, e.g. " + example)
	}
	return i, nil
}

// parseFloat reads a finite number.
func parseFloat(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, valueError("too large")
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, valueError("want a number, e.g. 20 or 0.5")
	}
	return f, nil
}

// Validate checks that the values make sense together.
func (c *Config) Validate() error {
	switch {
	case c.MaxClients < 1:
		return errors.New("max_clients must be at least 1")
	case c.MaxClientsPerAddr < 1:
		return errors.New("max_clients_per_addr must be at least 1 (max_clients: no limit per address)")
	case c.MaxFrame < 256:
		return errors.New("max_frame must be at least 256")
	case c.Rate <= 0 || c.Burst < 1:
		return errors.New("rate and burst must be positive")
	case c.History < 0:
		return errors.New("history must not be negative")
	case c.GOGC < 0 || c.MemoryLimitMB < 0:
		return errors.New("gogc and memory_limit_mb must not be negative")
	case c.WriteTimeout <= 0 || c.CommandTimeout <= 0 || c.TokenTTL <= 0 || c.StartTimeout <= 0:
		return errors.New("write_timeout, command_timeout, token_ttl and start_timeout must be positive")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("tls_cert and tls_key go together: set both or neither")
	case c.PublicPort < 0 || c.PublicPort > 65535:
		return errors.New("public_port must be a port number (1-65535), or 0 for the listen port")
	case c.PublicPort != 0 && c.PublicURL != "":
		return errors.New("public_port and public_url exclude each other: public_url names the port too")
	case c.PollTimeout < time.Second || c.PollTimeout > 50*time.Second:
		// boa drops a connection that is silent for 60 s.
		return errors.New("poll_timeout must be between 1s and 50s")
	case c.PollInterval < 0 || c.PollInterval >= c.PollTimeout:
		return errors.New("poll_interval must not be negative and must be shorter than poll_timeout")
	}
	if _, _, err := c.PublicBase(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if err := c.validateMQTT(); err != nil {
		return err
	}
	if err := c.validateSensors(); err != nil {
		return err
	}
	return c.validateAuth()
}

// HostAllowed reports whether a page may be served to, or a WebSocket
// accepted from, a browser that names host (a Host header or the host of an
// Origin: name or address, with or without :port, IPv6 in brackets). It is
// the defence against DNS rebinding, where a hostile page's own name comes
// to resolve to the device. IP literals are always allowed (rebinding needs
// a name). Names are compared without case and without a final dot. With
// allowed_hosts unset, the names allowed are localhost and the machine's
// host name (as os.Hostname, its first label, and that label with .local);
// otherwise exactly the listed ones, and "*" allows any name.
func (c Config) HostAllowed(host string) bool {
	name := host
	if strings.HasPrefix(name, "[") {
		end := strings.IndexByte(name, ']')
		if end < 0 {
			return false
		}
		name = name[1:end]
	} else if strings.Count(name, ":") == 1 {
		name, _, _ = strings.Cut(name, ":")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" {
		return false
	}
	allowed := c.AllowedHosts
	if allowed == nil {
		allowed = []string{"localhost"}
		if h, err := os.Hostname(); err == nil && h != "" {
			h = strings.TrimSuffix(strings.ToLower(h), ".")
			short, _, _ := strings.Cut(h, ".")
			allowed = append(allowed, h, short, short+".local")
		}
	}
	for _, a := range allowed {
		if a == "*" || a == name {
			return true
		}
	}
	return false
}

// PublicBase returns public_url checked and split: its scheme, "ws" or
// "wss", and the rest without a final slash (host[:port] and an optional
// path), to which browsers' URLs append /live. Both are "" when
// public_url is unset.
func (c Config) PublicBase() (scheme, rest string, err error) {
	if c.PublicURL == "" {
		return "", "", nil
	}
	scheme, rest, ok := strings.Cut(c.PublicURL, "://")
	host, _, _ := strings.Cut(rest, "/")
	switch {
	case !ok || scheme != "ws" && scheme != "wss":
		return "", "", fmt.Errorf("public_url %q: want ws:// or wss://, e.g. wss://device.example.net:8443", c.PublicURL)
	case host == "" || strings.ContainsAny(rest, "?#@ \t") || strings.Trim(host, "0123456789.:[]abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "":
		return "", "", fmt.Errorf("public_url %q: want scheme://host[:port][/path], no query, user or spaces", c.PublicURL)
	}
	return scheme, strings.TrimSuffix(rest, "/"), nil
}
