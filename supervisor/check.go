package supervisor

import (
	"context"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/supervisor/internal/mqttbridge"
	"github.com/livecgi/livecgi/supervisor/internal/pluginhost"
)

// What livecgid -check asks of the parts it cannot reach itself (they
// are internal to the supervisor).

// ErrRefused is the error of a plugin binary livecgid does not trust:
// see CheckPluginFile.
var ErrRefused = pluginhost.ErrRefused

// CheckPluginFile reports why livecgid would not run the file name in the
// plugins directory dir: not a complete executable, not trusted (see
// trust.Check), or not allowed by sums (cfg plugin_sha256; empty allows
// any). ok is false for names livecgid ignores (".x", "x~", "x.tmp", …).
func CheckPluginFile(dir, name string, sums map[string]string) (ok bool, err error) {
	return pluginhost.CheckPluginFile(dir, name, sums)
}

// CheckBroker connects to the broker cfg names, as the bridge would but
// under a client id of its own (the running bridge keeps its session),
// and disconnects. It says where it connected.
func CheckBroker(ctx context.Context, cfg config.Config) (string, error) {
	return mqttbridge.Check(ctx, cfg.MQTT, cfg.MaxFrame)
}
