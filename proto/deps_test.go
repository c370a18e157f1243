package proto_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependenciesFlowOneWay keeps the package boundaries: the supervisor
// knows plugins only through proto, plugins never see the supervisor, and
// the contracts the stub shares (wire, control) stay standard-library only,
// as does the tests' kit (testkit), which no program links.
// cmd/livecgid is wiring: it links the built-in plugins (system, leds, exec) to
// serve them as processes of their own, and nothing else of plugins/.
func TestDependenciesFlowOneWay(t *testing.T) {
	const mod = "github.com/livecgi/livecgi/"
	tests := []struct {
		pkgs []string
		bad  func(dep string) bool
	}{
		{[]string{mod + "supervisor"}, func(d string) bool {
			return strings.HasPrefix(d, mod+"plugins") || strings.HasPrefix(d, mod+"cgi")
		}},
		{[]string{mod + "cmd/livecgid"}, func(d string) bool {
			builtin := d == mod+"plugins/sdk" || d == mod+"plugins/system" || d == mod+"plugins/leds" || d == mod+"plugins/exec"
			return strings.HasPrefix(d, mod+"plugins") && !builtin || strings.HasPrefix(d, mod+"cgi")
		}},
		{[]string{mod + "plugins/..."}, func(d string) bool {
			return strings.HasPrefix(d, mod+"supervisor") || strings.HasPrefix(d, mod+"cgi")
		}},
		{[]string{mod + "proto/wire", mod + "proto/control"}, func(d string) bool {
			first, _, _ := strings.Cut(d, "/")
			return strings.Contains(first, ".") && !strings.HasPrefix(d, mod+"proto/")
		}},
		// The tests' kit: standard library only (the stub's tests use it),
		// and in no program.
		{[]string{mod + "proto/testkit"}, func(d string) bool {
			first, _, _ := strings.Cut(d, "/")
			return strings.Contains(first, ".") && d != mod+"proto/testkit"
		}},
		{[]string{mod + "cmd/...", mod + "supervisor/...", mod + "cgi/...", mod + "plugins/...", mod + "proto"}, func(d string) bool {
			return d == mod+"proto/testkit"
		}},
	}
	for _, tt := range tests {
		out, err := exec.Command("go", append([]string{"list", "-deps"}, tt.pkgs...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %v: %v\n%s", tt.pkgs, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if tt.bad(dep) {
				t.Errorf("%v must not depend on %s", tt.pkgs, dep)
			}
		}
	}
}
