package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
)

// TestPluginsDirAppears starts livecgid before its plugins directory (and
// the directory above it) exist: once created, a plugin dropped in loads;
// removed and created again, the same. Only the watch on the nearest
// ancestor can notice: the retry is set to an hour.
func TestPluginsDirAppears(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	setTiming(t, func(tm *timing) { tm.host.DirRetryMin, tm.host.DirRetryMax = time.Hour, time.Hour })
	var dir string
	ts := startSup(t, func(c *config.Config) {
		dir = filepath.Join(filepath.Dir(c.PluginsDir), "opt", "plugins")
		c.PluginsDir = dir
	})
	c := ts.dial(t)
	c.next("hello", is("hello"))
	waitFor(t, "the missing directory logged", func() bool {
		return strings.Contains(ts.logs.String(), `msg="cannot watch plugins dir`)
	})

	if err := os.Mkdir(filepath.Dir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	deployMv(t, dir, "helper_counter", 0o755, "counter", "1")
	if st := firstStatus(c, "helper_counter"); st["state"] != wire.StateOnline || st["version"] != "v-counter-1" {
		t.Fatalf("first status = %v, want online v-counter-1", st)
	}

	// Removed with its plugin, created again.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	status(c, "helper_counter", wire.StateRemoved, "")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	deployMv(t, dir, "helper_counter", 0o755, "counter", "2")
	if st := firstStatus(c, "helper_counter"); st["state"] != wire.StateOnline || st["version"] != "v-counter-2" {
		t.Fatalf("status after re-creating the directory = %v, want online v-counter-2", st)
	}
	count(c, "helper_counter.count")
}
