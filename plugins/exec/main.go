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

func main() {
	if os.Getenv(proto.Handshake.MagicCookieKey) != proto.Handshake.MagicCookieValue {
		sdk.Serve(sdk.Plugin{}) // run by hand: it says what this is and exits, before any program runs
	}
	dir := os.Getenv(proto.EnvExecDir)
	if dir == "" {
		dir = "/etc/livecgi/exec.d"
	}
	p := newPlugin(dir, sdk.Logger())
	// livecgid starts plugins with Pdeathsig SIGKILL, which would leave
	// what the programs forked running: ask for SIGTERM instead and kill
	// the programs' process groups before going.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		p.Close()
		os.Exit(0)
	}()
	sdk.Serve(p)
}
