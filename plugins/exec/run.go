package exec

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto"
)

// runner starts programs: clean environment, cwd the exec dir, each in
// its own process group, killed with it.
type runner struct {
	dir string
	env []string // PATH and the LIVECGI_* variables the plugin got

	mu     sync.Mutex
	groups map[int]bool // process groups of running programs
	closed bool         // no new program starts
}

func newRunner(dir string) *runner {
	env := []string{"PATH=" + programPath}
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "LIVECGI_") && !strings.HasPrefix(e, proto.Handshake.MagicCookieKey+"=") {
			env = append(env, e)
		}
	}
	return &runner{dir: dir, env: env, groups: map[int]bool{}}
}

// killAll kills every running program's process group and refuses new
// ones: the plugin is stopping.
func (x *runner) killAll() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
	for pg := range x.groups {
		syscall.Kill(-pg, syscall.SIGKILL)
	}
}

// errStopped: the plugin is stopping, nothing is started.
var errStopped = errors.New("exec plugin stopping")

// run runs argv with env added to the runner's, stdin (nil: /dev/null)
// and a timeout (0: none), and calls onLine for each line of its stdout
// (without the newline; long is set, and line empty, for a line over
// maxLine bytes, which is dropped). When the program exits, its process
// group is killed too: nothing it forked outlives it. The error says why
// it failed (timeout, exit status with the last line of stderr).
func (x *runner) run(ctx context.Context, argv, env []string, stdin []byte, timeout time.Duration, onLine func(line string, long bool)) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return err
	}
	defer errR.Close()
	cmd := &exec.Cmd{
		Path: argv[0], Args: argv, Env: append(x.env[:len(x.env):len(x.env)], env...), Dir: x.dir,
		Stdout: outW, Stderr: errW,
		// Pdeathsig: a killed plugin takes its programs along.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		outW.Close()
		errW.Close()
		return errStopped
	}
	err = cmd.Start()
	if err == nil {
		x.groups[cmd.Process.Pid] = true
	}
	x.mu.Unlock()
	outW.Close()
	errW.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", argv[0], unwrapExec(err))
	}
	pg := cmd.Process.Pid
	var killedBy string
	var killMu sync.Mutex
	kill := func(why string) {
		killMu.Lock()
		if killedBy == "" {
			killedBy = why
		}
		killMu.Unlock()
		syscall.Kill(-pg, syscall.SIGKILL)
	}
	if timeout > 0 {
		t := time.AfterFunc(timeout, func() { kill(fmt.Sprintf("killed after its %v timeout", timeout)) })
		defer t.Stop()
	}
	stopCtx := context.AfterFunc(ctx, func() { kill("stopped") })
	defer stopCtx()

	var wg sync.WaitGroup
	var lastErr string
	wg.Add(2)
	go func() {
		defer wg.Done()
		readLines(outR, onLine)
	}()
	go func() {
		defer wg.Done()
		readLines(errR, func(line string, long bool) {
			if line = strings.TrimSpace(line); line != "" && !long {
				lastErr = line
			}
		})
	}()
	werr := cmd.Wait()
	// Whatever it forked dies with it. (Its pid cannot have been reused
	// while the group has members; an empty group gives ESRCH.)
	syscall.Kill(-pg, syscall.SIGKILL)
	x.mu.Lock()
	delete(x.groups, pg)
	x.mu.Unlock()
	// A grandchild that left the group (setsid) may hold the pipes: stop
	// reading soon.
	outR.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	errR.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	wg.Wait()
	killMu.Lock()
	why := killedBy
	killMu.Unlock()
	switch {
	case why != "":
		return errors.New(why)
	case werr != nil:
		if lastErr != "" {
			return fmt.Errorf("%v: %s", werr, trunc(lastErr))
		}
		return werr
	}
	return nil
}

// readLines calls onLine for each line of r until EOF (or a read error).
func readLines(r io.Reader, onLine func(line string, long bool)) {
	br := bufio.NewReaderSize(r, maxLine)
	long := false
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			long = true // drop it, up to its newline
			continue
		case long:
			onLine("", true)
			long = false
		case len(b) > 0:
			onLine(strings.TrimRight(string(b), "\r\n"), false)
		}
		if err != nil {
			return
		}
	}
}

// unwrapExec keeps the useful part of exec's start errors ("permission
// denied", "no such file or directory").
func unwrapExec(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
