package proto_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependenciesFlowOneWay keeps the package boundaries: the supervisor
// knows plugins only through proto, plugins never see the supervisor, its
// plugin host and broker bridge see neither it nor each other, the
// contracts the stub shares (wire, control, config, auth, trust) and the
// report-by-exception rule both sides of the plugin RPC apply (rbe) stay
// standard-library only, what the stub links stays light, and the tests'
// kit (testkit) is standard library only and linked by no program.
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
		// The plugin host and the broker bridge are parts of their own: they
		// never reach back into the supervisor that wires them, nor into
		// each other; the host publishes through its own interfaces, not
		// the fan-out.
		{[]string{mod + "supervisor/internal/pluginhost"}, func(d string) bool {
			return d == mod+"supervisor" || d == mod+"supervisor/internal/mqttbridge" || d == mod+"supervisor/internal/fanout" ||
				strings.HasPrefix(d, mod+"plugins") || strings.HasPrefix(d, mod+"cgi")
		}},
		{[]string{mod + "supervisor/internal/mqttbridge"}, func(d string) bool {
			return d == mod+"supervisor" || d == mod+"supervisor/internal/pluginhost" ||
				strings.HasPrefix(d, mod+"plugins") || strings.HasPrefix(d, mod+"cgi")
		}},
		{[]string{mod + "plugins/..."}, func(d string) bool {
			return strings.HasPrefix(d, mod+"supervisor") || strings.HasPrefix(d, mod+"cgi")
		}},
		{[]string{mod + "proto/wire", mod + "proto/control", mod + "proto/control/ctlserver", mod + "proto/config", mod + "proto/auth", mod + "proto/trust", mod + "proto/rbe"}, func(d string) bool {
			first, _, _ := strings.Cut(d, "/")
			return strings.Contains(first, ".") && !strings.HasPrefix(d, mod+"proto/")
		}},
		// What the stub links is light by construction: no package net,
		// no encoding/json (reflect), no server side, no browser protocol.
		{[]string{mod + "proto/control", mod + "proto/config", mod + "proto/auth", mod + "proto/trust"}, func(d string) bool {
			return d == "net" || strings.HasPrefix(d, "net/http") || d == "encoding/json" || d == "crypto/tls" ||
				strings.HasPrefix(d, mod) && d != mod+"proto/control" && d != mod+"proto/config" && d != mod+"proto/auth" && d != mod+"proto/trust"
		}},
		// The trust rule and the users file know nothing of the rest.
		{[]string{mod + "proto/trust"}, func(d string) bool { return strings.HasPrefix(d, mod) && d != mod+"proto/trust" }},
		{[]string{mod + "proto/auth"}, func(d string) bool {
			return strings.HasPrefix(d, mod) && d != mod+"proto/auth" && d != mod+"proto/trust"
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
