package proto_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependenciesFlowOneWay keeps the package boundaries: the supervisor
// knows plugins only through proto, plugins never see the supervisor, and
// the contracts the stub shares (wire, control) and the report-by-exception
// rule both sides of the plugin RPC apply (rbe) stay standard-library only.
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
		{[]string{mod + "proto/wire", mod + "proto/control", mod + "proto/rbe"}, func(d string) bool {
			first, _, _ := strings.Cut(d, "/")
			return strings.Contains(first, ".") && !strings.HasPrefix(d, mod+"proto/")
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
