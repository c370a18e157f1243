package cgi

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// An auth_command must die with the stub, and so must everything it
// started, even when the stub is killed with SIGKILL (or SIGTERM, which
// lighttpd sends when the client leaves), which no handler sees. So the
// stub does not run the command itself: it runs its own executable again
// (/proc/self/exe) under the name reaperArg0, as a reaper that holds
// Pdeathsig SIGTERM. The reaper runs the command in a process group of its
// own and kills that group when the command exits, when the stub dies
// (Pdeathsig) and when the stub gives up on it (SIGTERM at the timeout).
// The command holds Pdeathsig SIGKILL in turn, for a reaper killed
// outright. A process that leaves the group (setsid) escapes; nothing
// short of a cgroup would catch it.

// reaperArg0 is argv[0] of the stub run as a reaper; a web server gives
// a CGI its own path there, never this.
const reaperArg0 = "live.cgi: auth_command reaper"

// reaperPath is how the stub finds its own executable, even if it was
// replaced on disk since it started.
const reaperPath = "/proc/self/exe"

func init() {
	if len(os.Args) == 2 && os.Args[0] == reaperArg0 {
		os.Exit(reap(os.Args[1]))
	}
}

// reap is the reaper's main: it runs path with its own environment and
// stdout, and exits as path did. A command killed by SIGKILL kills the
// reaper with it; one killed by another signal makes it exit 128+signal.
// Only the reaper's own failures go to its stderr.
func reap(path string) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	cmd := &exec.Cmd{
		Path:        path,
		Args:        []string{path},
		Env:         os.Environ(),
		Dir:         "/",
		Stdout:      os.Stdout,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-sigs:
		err = errors.New("stopped")
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group: whatever is left
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if !ws.Signaled() {
			return ws.ExitStatus()
		}
		if ws.Signal() == syscall.SIGKILL {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		return 128 + int(ws.Signal())
	}
	return 128 + int(syscall.SIGTERM)
}
