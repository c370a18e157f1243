package alarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Runner defaults and limits.
const (
	DefaultTimeout = 30 * time.Second
	DefaultQueue   = 64
	MaxOutput      = 4 << 10 // bytes of a program's stdout and stderr kept
	// ProgramPath is the PATH programs get, and where a program named
	// without a slash is looked for (as for the exec plugin's programs).
	ProgramPath = "/usr/sbin:/usr/bin:/sbin:/bin"
)

// RunnerConfig configures NewRunner.
type RunnerConfig struct {
	// Argv is the program (alarm_exec) and its arguments, already split:
	// no shell. A program named without a slash is looked up in
	// ProgramPath.
	Argv    []string
	Timeout time.Duration // per run; 0: DefaultTimeout
	Queue   int           // transitions waiting at most; 0: DefaultQueue
	// Done is called after each run, from Run's goroutine (nil: nothing).
	Done func(Result)
}

// Result is what became of one run.
type Result struct {
	Transition Transition
	Err        error  // nil when the program exited 0: exit status, timeout, start failure
	Output     string // its stdout and stderr together, at most MaxOutput bytes
	Cut        bool   // the output was longer
	Elapsed    time.Duration
	// Dropped counts the transitions dropped since the last Result
	// because the queue was full: they were never run.
	Dropped int
}

// Runner runs a program on each alarm transition: one at a time, in
// order, each in its own process group with the environment PATH and
// LIVECGI_ALARM_NAME, _SENSOR, _STATE, _PREVIOUS, _VALUE (empty without
// a value), _SINCE (RFC 3339, UTC), _MESSAGE, _SEVERITY; stdin /dev/null.
// A run past its timeout is killed with its whole group, and when a run
// ends whatever it left in its group is killed too. Submit may be called
// concurrently with everything; Run runs once.
type Runner struct {
	c     RunnerConfig
	path  string
	queue chan Transition

	mu      sync.Mutex
	dropped int  // since the last Result
	closed  bool // Close was called: queue is closed
}

// NewRunner returns a Runner for c; start it with Run.
func NewRunner(c RunnerConfig) (*Runner, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return nil, errors.New("alarm_exec: no program")
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Queue <= 0 {
		c.Queue = DefaultQueue
	}
	return &Runner{c: c, path: lookPath(c.Argv[0]), queue: make(chan Transition, c.Queue)}, nil
}

// Submit queues a run for tr without blocking. When the queue is full it
// drops tr, counts it for the next Result, and reports false; after
// Close it drops tr and reports false.
func (x *Runner) Submit(tr Transition) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return false
	}
	select {
	case x.queue <- tr:
		return true
	default:
		x.dropped++
		return false
	}
}

// Close ends the runner's intake: Submit drops from now on, and Run
// returns once it has run what was queued (or when its ctx is done,
// first). For a new alarm_exec, close the old runner and start another:
// the transitions already queued run the program they were queued for.
func (x *Runner) Close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.closed {
		x.closed = true
		close(x.queue)
	}
}

// Run runs the queued transitions until ctx is done, which kills a
// running program's group (transitions still queued then are not run),
// or until the queue is empty after Close.
func (x *Runner) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case tr, ok := <-x.queue:
			if !ok {
				return
			}
			res := x.run(ctx, tr)
			x.mu.Lock()
			res.Dropped, x.dropped = x.dropped, 0
			x.mu.Unlock()
			if x.c.Done != nil {
				x.c.Done(res)
			}
		}
	}
}

// run runs the program once for tr.
func (x *Runner) run(ctx context.Context, tr Transition) (res Result) {
	res.Transition = tr
	start := time.Now()
	defer func() { res.Elapsed = time.Since(start) }()
	outR, outW, err := os.Pipe()
	if err != nil {
		res.Err = err
		return res
	}
	defer outR.Close()
	cmd := &exec.Cmd{
		Path: x.path, Args: x.c.Argv, Env: Env(tr), Stdout: outW, Stderr: outW,
		// Pdeathsig: a killed livecgid takes its programs along.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	err = cmd.Start()
	outW.Close()
	if err != nil {
		res.Err = fmt.Errorf("start %s: %w", x.c.Argv[0], unwrapExec(err))
		return res
	}
	pg := cmd.Process.Pid
	var mu sync.Mutex
	var killedBy string
	kill := func(why string) {
		mu.Lock()
		if killedBy == "" {
			killedBy = why
		}
		mu.Unlock()
		syscall.Kill(-pg, syscall.SIGKILL)
	}
	timer := time.AfterFunc(x.c.Timeout, func() { kill(fmt.Sprintf("killed after its %v timeout", x.c.Timeout)) })
	stop := context.AfterFunc(ctx, func() { kill("stopped") })

	var out capped
	read := make(chan struct{})
	go func() {
		io.Copy(&out, outR)
		close(read)
	}()
	werr := cmd.Wait()
	timer.Stop() // a run that ended did not time out
	stop()
	// Whatever it forked dies with it. (Its pid cannot have been reused
	// while the group has members; an empty group gives ESRCH.)
	syscall.Kill(-pg, syscall.SIGKILL)
	// A grandchild that left the group (setsid) may hold the pipe: stop
	// reading soon.
	outR.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	<-read
	res.Output, res.Cut = string(out.b), out.cut
	mu.Lock()
	defer mu.Unlock()
	switch {
	case killedBy != "":
		res.Err = errors.New(killedBy)
	case werr != nil:
		res.Err = werr
	}
	return res
}

// Env is the environment of a run for tr: PATH and the LIVECGI_ALARM_*
// variables, nothing else.
func Env(tr Transition) []string {
	v := ""
	if tr.Value != nil {
		v = num(*tr.Value)
	}
	return []string{
		"PATH=" + ProgramPath,
		"LIVECGI_ALARM_NAME=" + tr.Name,
		"LIVECGI_ALARM_SENSOR=" + tr.Sensor,
		"LIVECGI_ALARM_STATE=" + tr.State.State,
		"LIVECGI_ALARM_PREVIOUS=" + tr.Previous,
		"LIVECGI_ALARM_VALUE=" + v,
		"LIVECGI_ALARM_SINCE=" + tr.Since.UTC().Format(time.RFC3339),
		"LIVECGI_ALARM_MESSAGE=" + tr.Message,
		"LIVECGI_ALARM_SEVERITY=" + tr.Severity,
	}
}

// capped keeps the first MaxOutput bytes written to it.
type capped struct {
	b   []byte
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	n := min(len(p), MaxOutput-len(c.b))
	c.b = append(c.b, p[:n]...)
	c.cut = c.cut || n < len(p)
	return len(p), nil
}

// lookPath finds a program named without a slash in ProgramPath (not in
// livecgid's own PATH); a missing one fails when it runs, and says so.
func lookPath(prog string) string {
	if strings.Contains(prog, "/") {
		return prog
	}
	for _, d := range filepath.SplitList(ProgramPath) {
		p := filepath.Join(d, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return filepath.Join("/usr/bin", prog)
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
