// Package exec is the livecgi plugin that turns ordinary programs (shell
// scripts, C programs) into sensors and commands, each declared by a
// NAME.conf file in the exec dir (livecgid's exec_dir, passed in
// LIVECGI_EXEC_DIR). It follows the directory: confs added, edited or
// removed, and programs replaced, take effect while it runs. It is built
// into livecgid and runs as its own process: a link named exec to
// livecgid in the plugins directory, or livecgid plugin exec.
//
// Start with Plugin; the rest is in exec.go (the directory), conf.go (the
// conf format), program.go (periodic, streaming and command programs) and
// run.go (starting and killing them). See README.md.
package exec

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/livecgi/livecgi/plugins/sdk"
	"github.com/livecgi/livecgi/proto"
)

// term gets the SIGTERM the plugin asks for when livecgid dies.
var term = make(chan os.Signal, 1)

// Prepare asks for SIGTERM instead of the SIGKILL livecgid sets as the
// plugin's parent-death signal, which would leave what the programs forked
// running. It must run on the main thread, before anything else (the
// kernel keeps the setting per thread and looks at the main one): call it
// from an init function of package main, which runs there.
func Prepare() {
	if os.Getenv(proto.Handshake.MagicCookieKey) != proto.Handshake.MagicCookieValue {
		return
	}
	signal.Notify(term, syscall.SIGTERM)
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
}

// Plugin returns the plugin over the exec dir livecgid configured, with
// version. When the SIGTERM that Prepare asked for comes, it kills the
// programs' process groups and exits.
func Plugin(version string) (sdk.Plugin, error) {
	dir := os.Getenv(proto.EnvExecDir)
	if dir == "" {
		dir = "/etc/livecgi/exec.d"
	}
	p := newPlugin(dir, version, sdk.Logger())
	p.Title = "NAME.conf files in " + dir // where to add one, on the page
	go func() {
		<-term
		p.Close() // kill the programs' process groups before going
		os.Exit(0)
	}()
	return p, nil
}
