package supervisor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/wire"
)

// TestUsableBinary: a complete binary with compressed DWARF sections (a
// plain go build) is usable; any prefix of it is not.
func TestUsableBinary(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o600)
	bin := filepath.Join(dir, "full")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fi, _ := os.Stat(bin)
	if err := usableBinary(bin, fi); err != nil {
		t.Fatalf("complete binary refused: %v", err)
	}
	b, _ := os.ReadFile(bin)
	for _, n := range []int{16, len(b) / 3, len(b) - 1} {
		part := filepath.Join(dir, "part")
		os.WriteFile(part, b[:n], 0o755)
		fi, _ := os.Stat(part)
		if err := usableBinary(part, fi); err == nil {
			t.Errorf("first %d of %d bytes accepted", n, len(b))
		}
	}
	os.Chmod(bin, 0o644)
	fi, _ = os.Stat(bin)
	if err := usableBinary(bin, fi); err == nil || err.Error() != "not executable" {
		t.Errorf("non-executable: %v", err)
	}
}

// TestPluginsDirAppears starts livecgid before its plugins directory (and
// the directory above it) exist: once created, a plugin dropped in loads;
// removed and created again, the same. Only the watch on the nearest
// ancestor can notice: the retry is set to an hour.
func TestPluginsDirAppears(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.settle = 150 * time.Millisecond })
	setTiming(t, func(tm *timing) { tm.dirRetryMin, tm.dirRetryMax = time.Hour, time.Hour })
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
