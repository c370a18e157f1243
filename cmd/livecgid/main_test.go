package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/supervisor"
)

func TestRunFlags(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("listen = :0\nlisten_port = 1\n"), 0o600)
	tests := []struct {
		name    string
		args    []string
		out     string
		wantErr string
	}{
		{"print config", []string{"-print-config"}, "# livecgi.conf", ""},
		{"version", []string{"-version"}, "livecgid dev", ""},
		{"help", []string{"-help"}, "Usage of livecgid:", ""},
		{"h", []string{"-h"}, "Usage of livecgid:", ""},
		{"unknown flag", []string{"-bogus"}, "Usage of livecgid:", "flag provided but not defined: -bogus"},
		{"extra argument", []string{"start"}, "", `unexpected arguments ["start"]`},
		{"unknown config key", []string{"-config", bad}, "", bad + ":2: listen_port: unknown key"},
		{"bad log level", []string{"-config", filepath.Join(dir, "none"), "-log-level", "loud"}, "", `log_level "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if !strings.Contains(stderr.String(), tt.out) || stdout.Len() > 0 {
					t.Fatalf("stdout = %q, stderr = %q, want %q on stderr", stdout.String(), stderr.String(), tt.out)
				}
				return
			}
			if err != nil || !strings.HasPrefix(stdout.String(), tt.out) {
				t.Fatalf("err = %v, stdout = %q", err, stdout.String())
			}
		})
	}
}

// TestRunServesAndStops starts the daemon in process: it answers on its
// control socket, a second one exits quietly, and cancelling stops it.
func TestRunServesAndStops(t *testing.T) {
	dir := t.TempDir()
	state, plugins := filepath.Join(dir, "state"), filepath.Join(dir, "plugins")
	os.Mkdir(plugins, 0o700)
	conf := filepath.Join(dir, "livecgi.conf")
	os.WriteFile(conf, []byte("listen = 127.0.0.1:0\nstate_dir = "+state+"\nplugins_dir = "+plugins+"\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var log bytes.Buffer
	go func() { done <- run(ctx, []string{"-config", conf}, &log, &log) }()
	var st control.Status
	var err error
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if st, err = control.Probe(context.Background(), state); err == nil {
			break
		}
	}
	if err != nil || st.PID != os.Getpid() || st.Port == 0 {
		t.Fatalf("probe = %+v, %v", st, err)
	}
	if err := run(context.Background(), []string{"-config", conf}, &log, &log); err != nil {
		t.Errorf("second instance: %v, want a quiet exit", err)
	}
	b, _ := os.ReadFile(filepath.Join(state, control.LogFile))
	if !strings.Contains(string(b), "another livecgid is running") {
		t.Errorf("log lacks the second instance's exit:\n%s", b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if _, err := os.Stat(filepath.Join(state, control.ControlFile)); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// brokenListener fails every accept for good, as a listener gone bad.
type brokenListener struct{ net.Listener }

func (l brokenListener) Accept() (net.Conn, error) {
	return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EINVAL)}
}

// TestServeStopsOnControlFailure: a control socket that fails for good
// stops the supervisor too, so the process exits and the stub starts a
// fresh one (TestListenerFailsForGood in supervisor breaks the WebSocket
// listener of a real livecgid).
func TestServeStopsOnControlFailure(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.PluginsDir, cfg.StateDir = filepath.Join(dir, "plugins"), filepath.Join(dir, "state")
	os.Mkdir(cfg.PluginsDir, 0o700)
	sup, err := supervisor.New(supervisor.Options{Config: cfg, Secret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cln, err := net.Listen("unix", filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(context.Background(), sup, ln, brokenListener{cln}, nil) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "control socket") || !errors.Is(err, syscall.EINVAL) {
			t.Errorf("serve = %v, want the control socket's error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still serving 15s after the control socket failed")
	}
}

// TestPluginName: livecgid serves a built-in plugin when run through a
// link named after it or as "livecgid plugin NAME", and is the
// supervisor otherwise.
func TestPluginName(t *testing.T) {
	for _, tt := range []struct {
		args []string
		name string
		ok   bool
	}{
		{[]string{"/usr/lib/livecgi/plugins/system"}, "system", true},
		{[]string{"leds"}, "leds", true},
		{[]string{"/usr/sbin/livecgid", "plugin", "system"}, "system", true},
		{[]string{"livecgid", "plugin", "nope"}, "nope", true}, // servePlugin names the built-in ones
		{[]string{"/usr/sbin/livecgid"}, "", false},
		{[]string{"/usr/sbin/livecgid", "-config", "x"}, "", false},
		{[]string{"/usr/lib/livecgi/plugins/thirdparty"}, "", false},
		{nil, "", false},
	} {
		name, ok := pluginName(tt.args)
		if name != tt.name || ok != tt.ok {
			t.Errorf("pluginName(%q) = %q, %v; want %q, %v", tt.args, name, ok, tt.name, tt.ok)
		}
	}
	if err := servePlugin("nope"); err == nil || !strings.Contains(err.Error(), "built in are exec, leds, system") {
		t.Errorf("servePlugin(nope): %v", err)
	}
}

// TestHelpListsAddUser: -help lists -adduser and its -role and -users,
// and says which users file -adduser writes by default; -role or -users
// without -adduser is an error, not silently ignored.
func TestHelpListsAddUser(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"-help"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-adduser name", "-role string", "operator or viewer", "-users file", "auth_users", "/etc/livecgi/users"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("-help lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, args := range [][]string{{"-role", "viewer"}, {"-users", "/tmp/u"}} {
		if err := run(context.Background(), args, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "go with -adduser") {
			t.Errorf("%q: %v", args, err)
		}
	}
}
