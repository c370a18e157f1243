package cgi

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeps keeps the stub free of what the supervisor and plugins need:
// it is exec'd on every page load. The stub's size rule shows in what it
// imports: of this module, only packages light by construction (the
// control socket in system calls and hand-written JSON, the config, the
// users file, the trust rule), and of the standard library nothing that
// the supervisor's side brings in.
func TestDeps(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./cgi", "./cmd/live.cgi")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/livecgi/livecgi/"
	own := map[string]bool{
		mod + "cgi": true, mod + "cgi/assets": true, mod + "cmd/live.cgi": true,
		mod + "proto/control": true, // not ctlserver, the server side (net, encoding/json)
		mod + "proto/config":  true,
		mod + "proto/auth":    true,
		mod + "proto/trust":   true,
	}
	// Forbidden packages, with "/..." for everything under one.
	forbidden := []string{
		"google.golang.org/grpc/...",
		"github.com/hashicorp/go-plugin/...",
		"github.com/coder/websocket/...",
		"google.golang.org/protobuf/...",
		"net",           // 0.3 MiB on linux/arm: control speaks its socket in system calls
		"net/http/...",  // 1.5 MiB on linux/arm; see doc.go
		"encoding/json", // reflect-driven; control writes and reads its few documents by hand
		"crypto/tls",    // with crypto/x509: the supervisor's wss://, not the stub's
		"text/template", // reflect-driven
		"regexp/...",    // 0.25 MiB, and compiled at every start
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			tree, all := strings.CutSuffix(f, "/...")
			if dep == tree || all && strings.HasPrefix(dep, tree+"/") {
				t.Errorf("the stub depends on %s", dep)
			}
		}
		if strings.HasPrefix(dep, mod) {
			if !own[dep] {
				t.Errorf("the stub depends on %s: not one of the light packages it may link", dep)
			}
			continue
		}
		if !strings.Contains(strings.SplitN(dep, "/", 2)[0], ".") {
			continue // standard library
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
