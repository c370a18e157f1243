// Package proto holds the contracts of livecgi: the plugin RPC (plugin.proto
// and its generated code), the go-plugin handshake and the client/server
// adapters in this file, and the rules on ids and descriptions that the
// supervisor and the SDK both check (ids.go: ValidID, CheckDescription).
// The browser wire protocol is in the wire sub-package and the
// stub↔supervisor contract in control; both are standard-library only so
// the CGI stub can use them without gRPC. README.md here documents the
// browser protocol and its transports.
//
// Start with Handshake and GRPCPlugin; plugin authors should use
// plugins/sdk instead of this package.
package proto

import (
	"context"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// PluginName is the key of the one plugin kind every livecgi binary serves.
const PluginName = "livecgi"

// Handshake is the go-plugin handshake shared by the supervisor and plugins.
// A binary run without the cookie in its environment knows it was started by
// hand, not by livecgid.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "LIVECGI_PLUGIN",
	MagicCookieValue: "4f1c0e5a-livecgi-sensor-command-plugin",
}

// Environment variables the supervisor sets for plugins: the roots of the
// proc and sys file systems, so tests can point plugins at fixtures, the
// exec plugin's directory (exec_dir) and the system plugin's interfaces
// (net_interfaces).
const (
	EnvProcRoot      = "LIVECGI_PROC_ROOT"
	EnvSysRoot       = "LIVECGI_SYS_ROOT"
	EnvExecDir       = "LIVECGI_EXEC_DIR"
	EnvNetInterfaces = "LIVECGI_NET_INTERFACES"
)

// ExitUnavailable is the exit status of a plugin that has nothing to serve
// on this machine (the LED plugin where there are no LEDs): it exits with
// it before the handshake, after writing the reason as its last stderr
// line (plain text, or hclog JSON with a "reason" or "@message" field).
// livecgid shows the plugin as unavailable with that reason and does not
// restart it in a loop. 69 is EX_UNAVAILABLE of sysexits.h.
const ExitUnavailable = 69

// DialOptions are the gRPC options of the supervisor's connection to a
// plugin (go-plugin's ClientConfig.GRPCDialOptions).
//
// No channel idleness: the connection breaks only when the process is
// gone, which is how an idle plugin's death is seen. And fixed flow-control
// windows: with the default ones gRPC estimates the bandwidth-delay
// product, answering every data frame with a window update and a ping, so
// each reading woke the plugin once more to read them and to answer the
// ping (BenchmarkStreamCPU in plugins/sdk: the plugin's thread runs per
// reading about halve without it). A window of 64 KiB or more turns the
// estimate off; 64 KiB is gRPC's default size, so what may be in flight
// stays as it was.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithIdleTimeout(0),
		grpc.WithInitialWindowSize(1 << 16),
		grpc.WithInitialConnWindowSize(1 << 16),
	}
}

// GRPCPlugin adapts the generated Plugin service to go-plugin. On the plugin
// side Impl is the server; on the supervisor side Impl is nil and Dispense
// returns a PluginClient.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl PluginServer
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterPluginServer(s, p.Impl)
	return nil
}

// GRPCClient returns a PluginClient over the connection to the plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewPluginClient(c), nil
}

// PluginSet returns the go-plugin plugin map with impl (nil on the
// supervisor side).
func PluginSet(impl PluginServer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
}
