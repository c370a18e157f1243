package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/control/ctlserver"
	"github.com/livecgi/livecgi/supervisor/brokertest"
)

// checkSetup lays out a working installation in a temp dir: a config, a
// state dir, a supervisor binary and one plugin (copies of /bin/true: ELF
// executables), listen on a free loopback port.
func checkSetup(t *testing.T) (conf string, cfg config.Config) {
	t.Helper()
	dir := t.TempDir()
	prog, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	plugins := filepath.Join(dir, "plugins")
	os.Mkdir(plugins, 0o755)
	for _, p := range []string{filepath.Join(dir, "livecgid"), filepath.Join(plugins, "system")} {
		if err := os.WriteFile(p, prog, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg = config.Default()
	cfg.StateDir, cfg.PluginsDir, cfg.Supervisor, cfg.Listen = filepath.Join(dir, "state"), plugins, filepath.Join(dir, "livecgid"), "127.0.0.1:0"
	conf = filepath.Join(dir, "livecgi.conf")
	text := "state_dir = " + cfg.StateDir + "\nplugins_dir = " + plugins + "\nsupervisor = " + cfg.Supervisor + "\nlisten = 127.0.0.1:0\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf, cfg
}

func fails(out string) []string {
	var f []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "FAIL") {
			f = append(f, l)
		}
	}
	return f
}

// TestCheck: a working setup is all ok; each broken one gives its own FAIL
// line, with a fix, and nothing else fails.
func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(t *testing.T, conf string, cfg *config.Config)
		want    string // in the one FAIL line; "" for none
	}{
		{"working", func(*testing.T, string, *config.Config) {}, ""},
		{"missing plugins dir", func(t *testing.T, _ string, cfg *config.Config) {
			os.RemoveAll(cfg.PluginsDir)
		}, "FAIL  plugins    open "},
		{"empty plugins dir", func(t *testing.T, _ string, cfg *config.Config) {
			os.Remove(filepath.Join(cfg.PluginsDir, "system"))
		}, "holds no plugin"},
		{"group-writable plugin", func(t *testing.T, _ string, cfg *config.Config) {
			os.Chmod(filepath.Join(cfg.PluginsDir, "system"), 0o775)
		}, "FAIL  plugin     system: plugin binary not trusted: "},
		{"group-writable plugins dir", func(t *testing.T, _ string, cfg *config.Config) {
			os.Chmod(cfg.PluginsDir, 0o777)
		}, "is writable by group or others (mode -rwxrwxrwx): every plugin is refused"},
		{"plugin not executable", func(t *testing.T, _ string, cfg *config.Config) {
			os.WriteFile(filepath.Join(cfg.PluginsDir, "half"), []byte("\x7fELF"), 0o755)
		}, "FAIL  plugin     half: not a complete ELF binary"},
		{"plugin not in the allowlist", func(t *testing.T, _ string, cfg *config.Config) {
			cfg.PluginSHA256 = map[string]string{"other": strings.Repeat("0", 64)}
		}, "system: plugin binary not trusted: "},
		{"unusable state dir", func(t *testing.T, _ string, cfg *config.Config) {
			file := filepath.Join(t.TempDir(), "file")
			os.WriteFile(file, nil, 0o600)
			cfg.StateDir = filepath.Join(file, "state")
			t.Setenv("TMPDIR", file) // and no fallback either
		}, "FAIL  state dir  state dir not usable: "},
		{"supervisor missing", func(t *testing.T, _ string, cfg *config.Config) {
			os.Remove(cfg.Supervisor)
		}, "FAIL  supervisor stat "},
		{"supervisor writable by others", func(t *testing.T, _ string, cfg *config.Config) {
			os.Chmod(cfg.Supervisor, 0o757)
		}, "livecgid is writable by group or others (mode -rwxr-xrwx)"},
		{"config writable by others", func(t *testing.T, conf string, cfg *config.Config) {
			os.Chmod(conf, 0o666)
		}, "livecgi.conf is writable by group or others (mode -rw-rw-rw-)"},
		{"bad alarm rule", func(t *testing.T, _ string, cfg *config.Config) {
			cfg.Sensors.Alarms = map[string]string{"hot": "system.thermal_zone0_celsius above 70 for a minute"}
		}, `livecgi.conf: alarm.hot: for "a": want a duration`},
		{"port in use by something else", func(t *testing.T, _ string, cfg *config.Config) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			cfg.Listen = ln.Addr().String()
		}, "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, cfg := checkSetup(t)
			tt.breakIt(t, conf, &cfg)
			var out bytes.Buffer
			ok := check(&out, conf, cfg, nil)
			f := fails(out.String())
			switch {
			case tt.want == "" && (!ok || len(f) > 0):
				t.Fatalf("ok = %v, want all ok:\n%s", ok, out.String())
			case tt.want != "" && (ok || len(f) != 1 || !strings.Contains(f[0], tt.want)):
				t.Fatalf("ok = %v, want one FAIL line with %q:\n%s", ok, tt.want, out.String())
			case tt.want != "" && !strings.Contains(out.String(), "fix: "):
				t.Fatalf("no fix:\n%s", out.String())
			}
		})
	}
}

// TestCheckPortHeldBySupervisor: a port held by the supervisor answering
// on the control socket is ok, and the browser line names its port.
func TestCheckPortHeldBySupervisor(t *testing.T) {
	conf, cfg := checkSetup(t)
	ws, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	cfg.Listen = ws.Addr().String()
	os.Mkdir(cfg.StateDir, 0o700)
	cln, err := net.Listen("unix", filepath.Join(cfg.StateDir, control.ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := ws.Addr().(*net.TCPAddr).Port
	go ctlserver.Serve(ctx, cln, func() control.Status {
		return control.Status{PID: 4242, Port: port, Version: "v9"}
	})
	var out bytes.Buffer
	if !check(&out, conf, cfg, nil) {
		t.Fatalf("check failed:\n%s", out.String())
	}
	p := ws.Addr().(*net.TCPAddr).AddrPort().Port()
	for _, want := range []string{"held by livecgid v9, pid 4242", "ws://HOST:" + strconv.Itoa(int(p)) + "/live"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestCheckRun: livecgid -check with a bad config value reports it as a
// FAIL line (and goes on with the rest) and fails.
func TestCheckRun(t *testing.T) {
	conf, cfg := checkSetup(t)
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, append(b, "rate = fast\n"...), 0o644)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-check", "-config", conf}, &stdout, &stderr)
	f := fails(stdout.String())
	if err == nil || len(f) != 1 || !strings.Contains(f[0], "FAIL  config     "+conf+":5: rate = fast: want a number") {
		t.Fatalf("err = %v, output:\n%s", err, stdout.String())
	}
	if !strings.Contains(stdout.String(), "ok    plugin     system") || !strings.Contains(stdout.String(), "ok    state dir  "+cfg.StateDir) {
		t.Errorf("the rest was not checked:\n%s", stdout.String())
	}
}

// TestCheckBroker: with mqtt_url set, -check connects to the broker (a
// real Mosquitto) and says so; a wrong password and a closed port are
// FAIL lines with the broker's reason.
func TestCheckBroker(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{Users: map[string]string{"dev": "s3cret"}})
	pw := filepath.Join(t.TempDir(), "pw")
	conf, cfg := checkSetup(t)
	cfg.MQTT.URL, cfg.MQTT.DeviceID, cfg.MQTT.Username, cfg.MQTT.PasswordFile = b.URL, "chk", "dev", pw
	for _, tt := range []struct{ name, password, url, want string }{
		{"ok", "s3cret", b.URL, `ok    mqtt       tcp://127.0.0.1:` + strconv.Itoa(b.Port) + ` as "livecgi-chk"`},
		{"wrong password", "guess", b.URL, "FAIL  mqtt       connect:"},
		{"closed port", "s3cret", "tcp://127.0.0.1:1", "FAIL  mqtt       dial tcp 127.0.0.1:1: connect: connection refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(pw, []byte(tt.password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.MQTT.URL = tt.url
			var out bytes.Buffer
			check(&out, conf, cfg, nil)
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("-check says:\n%s\nwant a line with %q", out.String(), tt.want)
			}
		})
	}
}
