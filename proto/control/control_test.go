package control

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
			return c.Listen == d.Listen && c.StateDir == d.StateDir && c.History == d.History
		}, ""},
		{"unknown key", "listen = :1\nlisten_addr = :2", nil, `2: listen_addr: unknown key`},
		{"no equals", "listen :1", nil, `1: want key = value`},
		{"twice", "listen = :1\nlisten = :2", nil, `2: "listen" set twice`},
		{"bad duration", "ping_interval = 20", nil, "ping_interval: time: missing unit"},
		{"bad number", "max_clients = many", nil, "max_clients: strconv.Atoi"},
		{"bad sum", "plugin_sha256 = system abc", nil, "want \"<file name> <64 hex digits>\""},
		{"invalid value", "max_clients = 0", nil, "max_clients must be at least 1"},
		{"bad level", "log_level = loud", nil, `log_level "loud"`},
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
	tok, exp := MintToken(secret, origin, now, time.Minute)
	if exp.Sub(now) != time.Minute {
		t.Errorf("expires %v", exp)
	}
	n1, err := VerifyToken(secret, tok, origin, now.Add(59*time.Second))
	if err != nil || n1 == "" {
		t.Fatalf("valid token: %v", err)
	}
	tok2, _ := MintToken(secret, origin, now, time.Minute)
	if n2, _ := VerifyToken(secret, tok2, origin, now); n2 == n1 {
		t.Error("two tokens share a nonce")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[len(raw)-1] ^= 1 // one bit of the MAC
	flipped := base64.RawURLEncoding.EncodeToString(raw)
	tests := []struct {
		name, tok, origin string
		at                time.Time
		want              error
	}{
		{"missing", "", origin, now, ErrTokenMissing},
		{"garbage", "%%%", origin, now, ErrTokenMalformed},
		{"truncated", tok[:20], origin, now, ErrTokenMalformed},
		{"expired", tok, origin, now.Add(61 * time.Second), ErrTokenExpired},
		{"other origin", tok, "http://evil.example", now, ErrTokenInvalid},
		{"other port", tok, origin + ":8081", now, ErrTokenInvalid},
		{"tampered", flipped, origin, now, ErrTokenInvalid},
		{"other secret", tok, origin, now, ErrTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := secret
			if tt.name == "other secret" {
				s = []byte("another secret, just as long....")
			}
			if _, err := VerifyToken(s, tt.tok, tt.origin, tt.at); !errors.Is(err, tt.want) {
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
