package cgi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/trust"
)

// StartLockFile serialises stubs that find no supervisor, so that only one
// of them starts it.
const StartLockFile = "start.lock"

// supervisorEnv is the whole environment of a started supervisor: nothing
// of the request (HTTP_COOKIE, ...) or the web server may leak into it.
var supervisorEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

// StartError is a failure to get a supervisor running. Status is 500 when
// an administrator must fix something, 503 when trying again may help.
type StartError struct {
	Status int
	Reason string
}

func (e *StartError) Error() string { return e.Reason }

// starter starts livecgid for one stub run.
type starter struct {
	cfg        config.Config
	configPath string // absolute; passed as -config
	stateDir   string // absolute; passed as -state-dir
	log        func(format string, args ...any)
}

// ensure returns the status of the running supervisor, starting it first
// if its control socket does not answer. Of many stubs that call ensure at
// once, one starts the supervisor and the others wait for it on the start
// lock. Every wait is bounded by the config's start_timeout.
func (s *starter) ensure(ctx context.Context) (control.Status, error) {
	if st, err := s.probe(ctx); err == nil {
		return st, nil
	}
	st, err := s.startOnce(ctx)
	if err != nil {
		s.log("%v", err) // one line per failed request; the log rotates at maxLog
	}
	return st, err
}

// startOnce starts the supervisor unless another stub does so first.
func (s *starter) startOnce(ctx context.Context) (control.Status, error) {
	if err := checkBinary(s.cfg.Supervisor); err != nil {
		return control.Status{}, err
	}
	// The holder of the lock waits at most start_timeout for its
	// supervisor; wait a little longer than that for the lock.
	unlock, err := lockWait(ctx, filepath.Join(s.stateDir, StartLockFile), s.cfg.StartTimeout+time.Second)
	if err != nil {
		return control.Status{}, err
	}
	defer unlock()
	if st, err := s.probe(ctx); err == nil {
		return st, nil // another stub started it while we waited
	}
	pid, err := s.start()
	if err != nil {
		return control.Status{}, &StartError{500, fmt.Sprintf("cannot start supervisor %s: %v", s.cfg.Supervisor, err)}
	}
	st, err := s.waitReady(ctx, pid)
	if err != nil {
		return control.Status{}, err
	}
	s.log("started supervisor pid %d, port %d", st.PID, st.Port)
	return st, nil
}

// probe asks the control socket for the status, with a short deadline.
func (s *starter) probe(ctx context.Context) (control.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return control.Probe(ctx, s.stateDir)
}

// checkBinary says in words what is wrong with the supervisor binary, if
// anything, before an attempt to run it: missing, not executable, or open
// to others (trust.Check: whoever can replace it runs as the web
// server's user).
func checkBinary(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &StartError{500, fmt.Sprintf("supervisor binary not found at %s (set \"supervisor\" in the config file)", path)}
	case err != nil:
		return &StartError{500, fmt.Sprintf("supervisor binary %s: %v", path, err)}
	case !fi.Mode().IsRegular():
		return &StartError{500, fmt.Sprintf("supervisor binary %s is not a regular file", path)}
	case syscall.Access(path, 1) != nil:
		return &StartError{500, fmt.Sprintf("supervisor binary %s is not executable by uid %d", path, os.Getuid())}
	}
	if err := trust.Check(path, trust.Options{}); err != nil {
		return &StartError{500, fmt.Sprintf("supervisor binary not trusted, not started: %v", err)}
	}
	return nil
}

// lockWait takes an exclusive flock on path, polling until wait has passed.
// The kernel drops the lock if this process dies, so a killed stub never
// leaves it held.
func lockWait(ctx context.Context, path string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, &StartError{500, fmt.Sprintf("state dir not writable: %v", err)}
	}
	deadline := time.Now().Add(wait)
	for delay := time.Millisecond; ; delay = min(2*delay, 20*time.Millisecond) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			f.Close()
			return nil, &StartError{500, fmt.Sprintf("lock %s: %v", path, err)}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			f.Close()
			return nil, &StartError{503, fmt.Sprintf("another live.cgi has been starting the supervisor for %v; try again", wait)}
		}
		time.Sleep(delay)
	}
}

// start runs the supervisor fully detached from this process and the web
// server: every inherited fd >= 3 close-on-exec, /dev/null on 0/1/2, a new
// session, working directory /, a clean environment, umask 077 (set by
// control.StateDir) and default signal dispositions.
func (s *starter) start() (pid int, err error) {
	closeOnExecFrom(3)
	cmd := &exec.Cmd{
		Path: s.cfg.Supervisor,
		Args: []string{s.cfg.Supervisor, "-config", s.configPath, "-state-dir", s.stateDir},
		Env:  supervisorEnv,
		Dir:  "/",
		// Stdin, Stdout and Stderr nil: exec opens /dev/null for each.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	// Go resets to the default, in the child, every signal it handles.
	// It does not handle SIGHUP and SIGINT when they were ignored at
	// start (boa and nohup do that), so the child would inherit them
	// ignored. Handling them for the length of the fork makes the child
	// get SIG_DFL. SIGPIPE, which boa 0.94.13 ignores, is always handled
	// by Go and so is reset anyway.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT)
	err = cmd.Start()
	signal.Stop(sigs)
	if err != nil {
		return 0, err
	}
	pid = cmd.Process.Pid
	cmd.Process.Release()
	return pid, nil
}

// waitReady polls the control socket until the supervisor answers, it
// exits with an error, or start_timeout passes.
func (s *starter) waitReady(ctx context.Context, pid int) (control.Status, error) {
	deadline := time.Now().Add(s.cfg.StartTimeout)
	exited := false
	for delay := 2 * time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		st, err := s.probe(ctx)
		if err == nil {
			return st, nil
		}
		if !exited {
			var ws syscall.WaitStatus
			if p, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); p == pid {
				exited = true
				// Exit 0 is a supervisor that found another one
				// holding its lock: keep probing for that one.
				if !ws.Exited() || ws.ExitStatus() != 0 {
					return control.Status{}, &StartError{500, fmt.Sprintf("supervisor %s %s at once; %s",
						s.cfg.Supervisor, describeExit(ws), s.logHint())}
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return control.Status{}, &StartError{503, fmt.Sprintf("supervisor %s did not answer on %s within %v (last error: %v); %s",
				s.cfg.Supervisor, filepath.Join(s.stateDir, control.ControlFile), s.cfg.StartTimeout, err, s.logHint())}
		}
		time.Sleep(delay)
	}
}

func describeExit(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "was killed by " + ws.Signal().String()
	}
	return "exited with status " + strconv.Itoa(ws.ExitStatus())
}

// logHint points at the supervisor's log, quoting its last line if it has
// one.
func (s *starter) logHint() string {
	path := filepath.Join(s.stateDir, control.LogFile)
	if last := lastLine(path); last != "" {
		return fmt.Sprintf("its log %s ends: %s", path, last)
	}
	return "see its log " + path
}

// lastLine returns the last non-empty line of the file's final 512 bytes.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 512)
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-int64(len(buf)), 0)
	n, _ := f.ReadAt(buf, off)
	lines := strings.Split(strings.TrimSpace(string(buf[:n])), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// closeOnExecFrom marks every open fd >= from close-on-exec, so that a
// child keeps none of the pipes, sockets and files the web server leaked
// into this CGI (Go only closes the fds it opened itself). Without /proc
// it tries every fd number up to a bound.
func closeOnExecFrom(from int) {
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, e := range ents {
			if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= from {
				syscall.CloseOnExec(fd)
			}
		}
		return
	}
	limit := uint64(65536)
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < limit {
		limit = rl.Cur
	}
	for fd := from; uint64(fd) < limit; fd++ {
		syscall.CloseOnExec(fd)
	}
}
