package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto"
)

// readmeGo returns the first ```go block of the markdown file path.
func readmeGo(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```go\n")
	src, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatalf("%s has no ```go block", path)
	}
	return src
}

// TestMakePluginsOwnVersion: a plugin built as plugins/README.md says, as
// a module of its own (its example program, with the SDK from this tree),
// and dropped into plugins/, is built by make plugins (make build and
// make install run it) with its own version: its VERSION file's, or
// without one the version its source declares, never this repository's.
func TestMakePluginsOwnVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two plugins")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	src := readmeGo(t, filepath.Join(root, "plugins", "README.md"))
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	module := func(name, version string) string {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		files := map[string]string{
			"go.mod": "module example.com/" + name + "\n\ngo 1.26.8\n\nrequire github.com/livecgi/livecgi v0.0.0\n\n" +
				"replace github.com/livecgi/livecgi => " + root + "\n",
			"go.sum":  string(sum), // the SDK's dependencies, all in the module cache: no network
			"main.go": src,
		}
		if version != "" {
			files["VERSION"] = version + "\n"
		}
		for f, content := range files {
			if err := os.WriteFile(filepath.Join(d, f), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tidy := exec.Command("go", "mod", "tidy", "-e") // -e: test-only modules of dependencies are not in the cache
		tidy.Dir = d
		tidy.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
		if out, err := tidy.CombinedOutput(); err != nil {
			t.Fatalf("go mod tidy in %s: %v\n%s", d, err, out)
		}
		return d
	}
	own, plain := module("board", "1.4.2"), module("plain", "")
	bin := filepath.Join(dir, "bin")
	if out, err := makeIn(t, "plugins", "BIN="+bin, "PLUGINS="+own+" "+plain); err != nil {
		t.Fatalf("make plugins: %v\n%s", err, out)
	}
	for name, want := range map[string]string{"board": "1.4.2", "plain": "dev"} {
		c, _ := sdktest.Start(t, filepath.Join(bin, "plugins", name))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		d, err := c.Describe(ctx, &proto.DescribeRequest{})
		cancel()
		if err != nil || d.Version != want || len(d.Sensors) != 1 || d.Sensors[0].Id != "temp_celsius" {
			t.Errorf("%s: %v, %v; want version %s and the README's sensor", name, d, err, want)
		}
	}
}
