// Package supervisor is livecgid: it runs the plugin binaries of a
// directory as go-plugin processes, keeps the last value of every sensor,
// and serves browsers over WebSockets (protocol in proto/wire).
//
// Start with New and Supervisor.Run. The fan-out (internal/fanout) sends
// readings to clients through a small pool of writers; the manager
// (plugins.go) starts, restarts and swaps plugin processes; watch.go follows
// the plugins directory.
package supervisor
