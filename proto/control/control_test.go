package control

import (
	"context"
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

func TestProbe(t *testing.T) {
	dir := t.TempDir()
	if _, err := Probe(context.Background(), dir); err == nil {
		t.Fatal("probe with nobody listening succeeded")
	}
	ln, err := net.Listen("unix", filepath.Join(dir, ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeControl(ctx, ln, func() Status { return Status{PID: 42, Port: 8081, Version: "v"} })
	st, err := Probe(context.Background(), dir)
	if err != nil || st.PID != 42 || st.Port != 8081 {
		t.Fatalf("probe = %+v, %v", st, err)
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

// failingListener fails its first accepts with errs, then accepts from
// the listener under it.
type failingListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", errno)}
}

// TestServeControlShortage: a shortage of descriptors, buffers or memory
// is waited out; any other accept error ends ServeControl.
func TestServeControlShortage(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln, errs: []error{
		acceptErr(syscall.EMFILE), acceptErr(syscall.ENFILE), acceptErr(syscall.ENOBUFS),
		acceptErr(syscall.ENOMEM), acceptErr(syscall.ECONNABORTED),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, fl, func() Status { return Status{PID: 42, Port: 8081} }) }()
	if st, err := Probe(context.Background(), dir); err != nil || st.PID != 42 {
		t.Fatalf("probe after a shortage = %+v, %v", st, err)
	}

	fl.mu.Lock()
	fl.errs = []error{acceptErr(syscall.EINVAL)}
	fl.mu.Unlock()
	Probe(context.Background(), dir) // wakes the accept, which fails
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("ServeControl = %v, want the listener's error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ServeControl still running after its listener failed for good")
	}
}
