package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/control"
)

// The real livecgid binary, killed with SIGKILL: its plugins must not
// outlive it, and the next one must serve again, run each plugin once and
// clear the sockets left behind.

// buildDaemon builds livecgid (with its built-in plugins) into dir.
func buildDaemon(t *testing.T, dir string) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("go tool not found: cannot build livecgid")
		}
		t.Skip("go tool not found: cannot build livecgid")
	}
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", dir+"/", "../cmd/livecgid")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
}

// proc is one process as /proc tells it.
type proc struct {
	pid, ppid int
	state     string
	arg0      string
}

func procs() []proc {
	var out []proc
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		arg0, _, _ := strings.Cut(string(cl), "\x00")
		out = append(out, proc{pid: pid, ppid: ppid, state: f[0], arg0: arg0})
	}
	return out
}

// running returns the live (not zombie) processes whose program is in dir.
func running(dir string) []proc {
	var out []proc
	for _, p := range procs() {
		if filepath.Dir(p.arg0) == dir && p.state != "Z" && p.state != "X" {
			out = append(out, p)
		}
	}
	return out
}

// daemon is one livecgid child process.
type daemon struct {
	cmd  *exec.Cmd
	log  *syncBuf
	done chan struct{} // closed when it exited
	err  error         // its exit, once done is closed
}

func startDaemon(t *testing.T, bin, conf string) *daemon {
	t.Helper()
	d := &daemon{log: &syncBuf{}, done: make(chan struct{})}
	d.cmd = exec.Command(bin, "-config", conf, "-log", "-")
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("livecgid %d log:\n%s", d.cmd.Process.Pid, d.log.String())
		}
	})
	return d
}

// readingFrom dials the supervisor in state and waits for a reading of
// each sensor prefix.
func readingFrom(t *testing.T, state string, prefixes ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := control.Probe(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(state, control.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", st.Port)
	origin := "http://" + addr
	tok, _ := control.MintToken(secret, origin, st.Epoch, time.Now(), time.Minute, auth.Identity{})
	c, err := (&testSup{t: t}).tryDial("ws://"+addr+"/live?token="+tok, origin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.CloseNow()
	for _, p := range prefixes {
		c.next("a reading of "+p, func(m map[string]any) bool {
			return m["type"] == "reading" && strings.HasPrefix(fmt.Sprint(m["sensor"]), p)
		})
	}
}

func TestSupervisorKilled(t *testing.T) {
	root := t.TempDir()
	bin, plugins, state := filepath.Join(root, "bin"), filepath.Join(root, "plugins"), filepath.Join(root, "state")
	buildDaemon(t, bin)
	if err := os.Mkdir(plugins, 0o700); err != nil {
		t.Fatal(err)
	}
	// The system plugin, built into livecgid and linked as make install
	// does, and a helper.
	if err := os.Symlink(filepath.Join(bin, "livecgid"), filepath.Join(plugins, "system")); err != nil {
		t.Fatal(err)
	}
	writeHelper(t, filepath.Join(plugins, "helper_counter"), 0o755, "counter", "daemon")
	wantPlugins := []string{filepath.Join(plugins, "helper_counter"), filepath.Join(plugins, "system")}
	conf := filepath.Join(root, "livecgi.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen = 127.0.0.1:0\nstate_dir = %s\nplugins_dir = %s\nlog_level = debug\n", state, plugins), 0o600); err != nil {
		t.Fatal(err)
	}
	livecgid := filepath.Join(bin, "livecgid")

	// serving waits for d to answer on the control socket and run each
	// plugin exactly once, as its own children.
	serving := func(d *daemon) {
		t.Helper()
		waitFor(t, "livecgid to answer on its control socket", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st, err := control.Probe(ctx, state)
			return err == nil && st.PID == d.cmd.Process.Pid
		})
		waitFor(t, "livecgid's plugins to run", func() bool {
			var got []string
			for _, p := range running(plugins) {
				if p.ppid != d.cmd.Process.Pid {
					return false
				}
				got = append(got, p.arg0)
			}
			slices.Sort(got)
			return slices.Equal(got, wantPlugins)
		})
		readingFrom(t, state, "system.", "helper_counter.count")
	}

	first := startDaemon(t, livecgid, conf)
	serving(first)
	sockets, _ := filepath.Glob(filepath.Join(state, control.SocketDir, "plugin*"))
	if len(sockets) != len(wantPlugins) {
		t.Errorf("plugin sockets %v, want one per plugin", sockets)
	}

	t0 := time.Now()
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	waitFor(t, "the plugins of the killed livecgid to exit", func() bool { return len(running(plugins)) == 0 })
	t.Logf("plugins gone %v after livecgid was killed", time.Since(t0).Round(time.Millisecond))
	left, _ := filepath.Glob(filepath.Join(state, control.SocketDir, "plugin*"))
	t.Logf("sockets left behind by the killed plugins: %d", len(left))

	// Two start at once, as two page loads would: one serves, the other
	// sees the lock and leaves.
	a, b := startDaemon(t, livecgid, conf), startDaemon(t, livecgid, conf)
	var winner, loser *daemon
	select {
	case <-a.done:
		winner, loser = b, a
	case <-b.done:
		winner, loser = a, b
	case <-time.After(15 * time.Second):
		t.Fatal("both livecgid still running after 15s")
	}
	if loser.err != nil {
		t.Errorf("second livecgid: %v", loser.err)
	}
	if !strings.Contains(loser.log.String(), "another livecgid is running") {
		t.Errorf("second livecgid log does not say why it left:\n%s", loser.log.String())
	}
	serving(winner)
	for _, s := range left {
		if _, err := os.Stat(s); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale socket %s not removed: %v", s, err)
		}
	}
	// Still one process per plugin a moment later.
	time.Sleep(500 * time.Millisecond)
	if n := len(running(plugins)); n != len(wantPlugins) {
		t.Errorf("%d plugin processes, want %d", n, len(wantPlugins))
	}

	// A clean stop takes the plugins along too.
	if err := winner.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-winner.done:
		if winner.err != nil {
			t.Errorf("livecgid after SIGTERM: %v", winner.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("livecgid still running 20s after SIGTERM")
	}
	waitFor(t, "plugins to exit after SIGTERM", func() bool { return len(running(plugins)) == 0 })
}
