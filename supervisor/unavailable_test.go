package supervisor

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
)

// buildPlugin builds the command pkg (relative to this directory)
// into path.
func buildPlugin(t *testing.T, pkg, path string) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("go tool not found: cannot build " + pkg)
		}
		t.Skip("go tool not found: cannot build " + pkg)
	}
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", path, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
}

// buildBuiltin builds livecgid and links the built-in plugin name to it
// in dir, as make install does.
func buildBuiltin(t *testing.T, name, dir string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "livecgid")
	buildPlugin(t, "../cmd/livecgid", bin)
	if err := os.Symlink(bin, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// everyReading turns report by exception off for the sensors ids in c:
// each reading is sent, changed or not.
func everyReading(c *config.Config, ids ...string) {
	for _, id := range ids {
		if c.Sensors.Deadband == nil {
			c.Sensors.Deadband = map[string]float64{}
		}
		if c.Sensors.Heartbeat == nil {
			c.Sensors.Heartbeat = map[string]time.Duration{}
		}
		c.Sensors.Deadband[id], c.Sensors.Heartbeat[id] = 0, 0
	}
}

// restartsReadings waits for n readings of the built-in restart counter
// and returns their values; other frames go to seen.
func restartsReadings(c *tclient, n int, seen func(map[string]any)) []float64 {
	c.t.Helper()
	var vs []float64
	for len(vs) < n {
		m := c.next("a reading of the restarts counter", func(m map[string]any) bool {
			if m["type"] == "reading" && m["sensor"] == builtinPlugin+".plugin_restarts_total" {
				return true
			}
			seen(m)
			return false
		})
		vs = append(vs, m["value"].(float64))
	}
	return vs
}

// TestLEDsWithoutLEDs runs the real leds plugin on a machine without LEDs
// (an empty sys root, then an empty LED class): it is "unavailable" with
// its reason, is not restarted while other things happen (a swap of
// another plugin, ten ticks of the built-in figures), and comes online
// when LEDs appear and its binary changes.
func TestLEDsWithoutLEDs(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	for _, tt := range []struct {
		name, reason string
		prepare      func(sysRoot string)
	}{
		{"no LED class", "no LEDs: %s/class/leds does not exist", func(string) {}},
		{"empty LED class", "no LEDs in %s/class/leds", func(root string) {
			if err := os.MkdirAll(filepath.Join(root, "class/leds/not-an-led"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sysRoot := t.TempDir()
			tt.prepare(sysRoot)
			reason := fmt.Sprintf(tt.reason, sysRoot)
			ts := startSup(t, func(c *config.Config) {
				everyReading(c, builtinPlugin+".plugin_restarts_total") // a clock: ten ticks below
				c.SysRoot = sysRoot
				buildBuiltin(t, "leds", c.PluginsDir)
				writeHelper(t, filepath.Join(c.PluginsDir, "helper_counter"), 0o755, "counter", "1")
			})
			waitFor(t, "leds unavailable", func() bool {
				return pluginInfo(ts, "leds").State == wire.StateUnavailable
			})
			if info := pluginInfo(ts, "leds"); info.Reason != reason {
				t.Errorf("reason %q, want %q", info.Reason, reason)
			}
			c := ts.dial(t)
			h := c.next("hello", is("hello"))
			if s := fmt.Sprint(h["plugins"]); !strings.Contains(s, "id:leds reason:"+reason+" state:unavailable") {
				t.Errorf("hello lists plugins %s, want leds unavailable with %q", s, reason)
			}
			if !strings.Contains(fmt.Sprint(h["plugins"]), "id:helper_counter state:online") {
				online(c, "helper_counter") // not yet when the hello was made
			}

			// Later events: a swap of another plugin, then ten ticks of
			// the built-in figures. leds stays quiet all along.
			var leds []string
			seen := func(m map[string]any) {
				if m["type"] == "status" && m["plugin"] == "leds" {
					leds = append(leds, fmt.Sprint(m["state"], ": ", m["reason"]))
				}
			}
			deployMv(t, ts.dir, "helper_counter", 0o755, "counter", "2")
			c.next("the swap of helper_counter", func(m map[string]any) bool {
				seen(m)
				return m["type"] == "status" && m["plugin"] == "helper_counter" && m["state"] == wire.StateSwapped
			})
			for _, v := range restartsReadings(c, 10, seen) {
				if v != 0 {
					t.Errorf("plugin_restarts_total = %v, want 0", v)
				}
			}
			if len(leds) > 0 {
				t.Errorf("leds statuses after it said it was unavailable: %q", leds)
			}
			if n := strings.Count(ts.logs.String(), `msg="starting plugin" plugin=leds`); n != 1 {
				t.Errorf("leds started %d times, want once", n)
			}

			// LEDs appear; a new binary (here: a new mtime) is tried at once.
			if err := os.RemoveAll(filepath.Join(sysRoot, "class")); err != nil {
				t.Fatal(err)
			}
			fixture := mustCopyLEDs(t)
			if err := os.Rename(filepath.Join(fixture, "class"), filepath.Join(sysRoot, "class")); err != nil {
				t.Fatal(err)
			}
			later := time.Now().Add(time.Second)
			if err := os.Chtimes(filepath.Join(ts.dir, "leds"), later, later); err != nil {
				t.Fatal(err)
			}
			online(c, "leds")
			c.next("a reading of an LED", is("reading", "sensor", "leds.led0_brightness"))
		})
	}
}

// mustCopyLEDs copies the leds plugin's sysfs fixture into a temporary
// directory, unescaping its names like sdktest.CopyFixture (the supervisor
// does not import plugins/), and returns the copy.
func mustCopyLEDs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	src := "../plugins/leds/testdata/sys"
	err := filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		name, err := url.PathUnescape(rel)
		if err != nil {
			return err
		}
		dst := filepath.Join(root, name)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestStartFailureReasons: a plugin that dies in the handshake is shown
// with its own last stderr line (or its panic), not go-plugin's generic
// text; each retry counts as a restart; a plugin that says it has nothing
// to serve, in the plain protocol without the SDK, is unavailable and not
// restarted.
func TestStartFailureReasons(t *testing.T) {
	ts := startSup(t, nil, "crashmsg", "panic", "nothing")
	waitFor(t, "helper_nothing unavailable", func() bool { return pluginInfo(ts, "helper_nothing").State == wire.StateUnavailable })
	if r := pluginInfo(ts, "helper_nothing").Reason; r != "no widget on this board" {
		t.Errorf("helper_nothing unavailable because %q, want its reason", r)
	}
	c := ts.dial(t)
	st := status(c, "helper_crashmsg", wire.StateRestarting, "helper: cannot open /dev/widget0: no such device")
	if r := fmt.Sprint(st["reason"]); r != "plugin exited during the handshake (exit status 3): helper: cannot open /dev/widget0: no such device" {
		t.Errorf("reason %q", r)
	}
	status(c, "helper_panic", wire.StateRestarting, "plugin exited during the handshake (exit status 2): panic: widget exploded")
	// Two more failures of each: the counter on the page counts them.
	for range 2 {
		status(c, "helper_crashmsg", wire.StateRestarting, "no such device")
	}
	c.next("the restarts counter at 2 or more", func(m map[string]any) bool {
		v, _ := m["value"].(float64)
		return m["type"] == "reading" && m["sensor"] == builtinPlugin+".plugin_restarts_total" && v >= 2
	})
	if n := strings.Count(ts.logs.String(), `msg="starting plugin" plugin=helper_nothing`); n != 1 {
		t.Errorf("helper_nothing started %d times, want once", n)
	}
}
