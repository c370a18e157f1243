// Command exec is the livecgi plugin that turns ordinary programs (shell
// scripts, C programs) into sensors and commands, each declared by a
// NAME.conf file in the exec dir (livecgid's exec_dir, passed in
// LIVECGI_EXEC_DIR). It follows the directory: confs added, edited or
// removed, and programs replaced, take effect while it runs.
//
// Everything but main is in exec.go (the directory), conf.go (the conf
// format), program.go (periodic, streaming and command programs) and
// run.go (starting and killing them). See README.md.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/livecgi/livecgi/plugins/sdk"
	"github.com/livecgi/livecgi/proto"
)

// version is set at build time with -ldflags '-X main.version=…'.
var version = "dev"

// term gets the SIGTERM the plugin asks for when livecgid dies.
var term = make(chan os.Signal, 1)

// init asks for SIGTERM instead of the SIGKILL livecgid sets as the
// plugin's parent-death signal, which would leave what the programs forked
// running. It must run on the main thread (the kernel keeps the setting
// per thread and looks at the main one), which init does.
func init() {
	if os.Getenv(proto.Handshake.MagicCookieKey) != proto.Handshake.MagicCookieValue {
		return
	}
	signal.Notify(term, syscall.SIGTERM)
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
}

func main() {
	if os.Getenv(proto.Handshake.MagicCookieKey) != proto.Handshake.MagicCookieValue {
		sdk.Serve(sdk.Plugin{}) // run by hand: it says what this is and exits, before any program runs
	}
	dir := os.Getenv(proto.EnvExecDir)
	if dir == "" {
		dir = "/etc/livecgi/exec.d"
	}
	p := newPlugin(dir, sdk.Logger())
	go func() {
		<-term
		p.Close() // kill the programs' process groups before going
		os.Exit(0)
	}()
	sdk.Serve(p)
}
