// Command fakesupervisor implements only the part of livecgid's contract
// that the stub relies on, so the stub's tests do not depend on the real
// supervisor: it appends "start PID" to <state>/fake-starts.log, takes a
// non-blocking flock on <state>/livecgid.lock (exiting 0 quietly if another
// holds it), listens on a TCP port of 127.0.0.1, removes a stale
// control.sock and answers "status" on it with its pid and that port, and
// then stays alive.
//
// Behaviour files in the state dir (the stub gives it a clean environment,
// so tests steer it with files): fake.fail makes it exit 3 at once after
// writing the file's text to livecgid.log; fake.delay holds a duration to
// sleep before serving the control socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/control/ctlserver"
)

func main() {
	config := flag.String("config", "", "config file (ignored)")
	state := flag.String("state-dir", "", "state directory")
	flag.Parse()
	_ = *config
	if err := run(*state); err != nil {
		os.WriteFile(filepath.Join(*state, "fake-error.log"), []byte(err.Error()+"\n"), 0o600)
		os.Exit(1)
	}
}

func run(state string) error {
	if state == "" {
		return fmt.Errorf("no -state-dir")
	}
	f, err := os.OpenFile(filepath.Join(state, "fake-starts.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "start %d\n", os.Getpid())
	f.Close()
	if msg, err := os.ReadFile(filepath.Join(state, "fake.fail")); err == nil {
		os.WriteFile(filepath.Join(state, control.LogFile), msg, 0o600)
		os.Exit(3)
	}
	lock, err := os.OpenFile(filepath.Join(state, control.LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		os.Exit(0) // another one runs
	}
	ws, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ws.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if b, err := os.ReadFile(filepath.Join(state, "fake.delay")); err == nil {
		d, _ := time.ParseDuration(strings.TrimSpace(string(b)))
		time.Sleep(d)
	}
	sock := filepath.Join(state, control.ControlFile)
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	port := ws.Addr().(*net.TCPAddr).Port
	return ctlserver.Serve(context.Background(), ln, func() control.Status {
		return control.Status{PID: os.Getpid(), Port: port, Version: "fake", Epoch: "e"}
	})
}
