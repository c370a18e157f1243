package cgi

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeps keeps the stub free of what the supervisor and plugins need:
// it is exec'd on every page load.
func TestDeps(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./cgi", "./cmd/live.cgi")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{
		"google.golang.org/grpc",
		"github.com/hashicorp/go-plugin",
		"github.com/coder/websocket",
		"google.golang.org/protobuf",
		"net/http", // 1.5 MiB on linux/arm; see doc.go
		"regexp",   // 0.25 MiB, and compiled at every start
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("the stub depends on %s", dep)
			}
		}
		if !strings.Contains(strings.SplitN(dep, "/", 2)[0], ".") || strings.HasPrefix(dep, "github.com/livecgi/livecgi/") {
			continue // standard library or this module
		}
		if !strings.HasPrefix(dep, "vendor/") {
			t.Errorf("the stub depends on %s outside the standard library", dep)
		}
	}
}

// TestSize builds live.cgi for linux/arm as a release does and holds it to
// its budget of 3 MiB.
func TestSize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds for linux/arm")
	}
	const budget = 3 << 20
	out := filepath.Join(t.TempDir(), "live.cgi")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/live.cgi")
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("live.cgi linux/arm: %d bytes (%.2f MiB)", fi.Size(), float64(fi.Size())/(1<<20))
	if fi.Size() > budget {
		t.Errorf("live.cgi is %d bytes for linux/arm, over the budget of %d", fi.Size(), budget)
	}
}
