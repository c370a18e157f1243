package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// Systems compared, in table order.
var allSystems = []string{ModeLivecgi, ModeSamePort, ModeWebsocketd, ModeLongPoll, ModeBare, ModePoll, ModeExec, ModeExecPeriodic}

// maxSamePort is the most clients the same-port rows run: each connects
// through one run of the stub under nphd.
const maxSamePort = 100

// maxPollClients is the most clients the livecgi-poll points run with:
// every poll is a CGI run, and 1,000 pollers only measure a fork storm.
const maxPollClients = 100

// nowProg is the periodic exec sensor's program: it prints the time in
// Unix µs and exits.
const nowProg = `#include <stdio.h>
#include <sys/time.h>
int main(void) { struct timeval tv; gettimeofday(&tv, 0); printf("%lld\n", tv.tv_sec * 1000000LL + tv.tv_usec); return 0; }
`

// Report is everything one compare run measured; results.json holds it and
// report.go renders it.
type Report struct {
	Started  time.Time `json:"started"`
	Machine  Machine   `json:"machine"`
	Duration float64   `json:"seconds_per_point"`
	Points   []*Result `json:"points"`
	Ceiling  []*Result `json:"ceiling,omitempty"`
	// Repeats are more runs of the budget point (1,000 clients, 10 Hz):
	// loopback timings on a small VM vary from run to run, so the budgets
	// take the median over Points and Repeats.
	Repeats []*Result `json:"repeats,omitempty"`

	StubMedianMS   float64   `json:"stub_median_ms"`   // ?connect with the supervisor running
	FirstReadingMS []float64 `json:"first_reading_ms"` // first contact (no supervisor) to first reading
	SupervisorIdle Proc      `json:"supervisor_idle"`  // livecgid with the system plugin, no client
	SystemPlugin   Proc      `json:"system_plugin"`    // the system plugin beside it
	MemoryDefaults string    `json:"memory_defaults"`  // GOMEMLIMIT/GOGC the supervisor runs with
}

// Machine is what the run ran on.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Livecgi    string `json:"livecgi"`
	Websocketd string `json:"websocketd"`
	Busybox    string `json:"busybox"`
}

// rig is the built binaries, the web server and the state of one compare run.
type rig struct {
	work, bin, plugins, state, www string
	execDir                        string // the exec plugin's confs
	self                           string // this tool, for serve-bare
	httpd                          *exec.Cmd
	httpPort                       int
	nphd                           *exec.Cmd // serves cgi-bin/nph-live.cgi as boa rc21 (same-port)
	nphPort                        int
	log                            io.Writer
	hc                             *http.Client
}

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "cmd/livecgi-bench/results", "where results.json, compare.md and the SVG plots go")
	work := fs.String("work", "", "work `dir` for binaries and servers (default: a fresh temp dir, removed after)")
	ns := fs.String("n", "10,100,1000", "client counts")
	hzs := fs.String("hz", "10,100", "sensor rates")
	systems := fs.String("systems", strings.Join(allSystems, ","), "systems to run")
	d := fs.Duration("d", 10*time.Second, "measured window per point (the run time is bounded by it)")
	ceilHz := fs.String("ceiling-hz", "10,50,100,200,500,1000", "rates of the fan-out ceiling run (empty: skip)")
	ceilN := fs.Int("ceiling-n", 1000, "clients of the fan-out ceiling run")
	ceilD := fs.Duration("ceiling-d", 5*time.Second, "measured window per ceiling point")
	repeat := fs.Int("repeat", 2, "extra runs of livecgi, websocketd and bare at 1,000 clients and 10 Hz, for the budgets' medians")
	pollInterval := fs.Duration("poll-interval", 250*time.Millisecond, "poll_interval of livecgi over long polling")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nList, err := ints(*ns)
	if err != nil {
		return fmt.Errorf("-n: %w", err)
	}
	hzList, err := floats(*hzs)
	if err != nil {
		return fmt.Errorf("-hz: %w", err)
	}
	ceilList, err := floats(*ceilHz)
	if err != nil {
		return fmt.Errorf("-ceiling-hz: %w", err)
	}
	sysList := strings.Split(*systems, ",")
	for _, s := range sysList {
		if !contains(allSystems, s) {
			return fmt.Errorf("-systems: unknown system %q", s)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	r, err := newRig(ctx, *work, *pollInterval, stderr)
	if err != nil {
		return err
	}
	defer r.close(*work == "")

	rep := &Report{Started: time.Now().UTC(), Machine: machine(ctx), Duration: d.Seconds()}
	rep.MemoryDefaults = "memory_limit_mb = 64 (GOMEMLIMIT), gogc = 50: livecgi.conf defaults, see proto/config/sample.conf"
	if err := r.footprint(ctx, rep); err != nil {
		return fmt.Errorf("footprint: %w", err)
	}
	for _, hz := range hzList {
		for _, n := range nList {
			for _, sys := range sysList {
				if sys == ModeSamePort && (n > maxSamePort || hz != 10) || sys == ModePoll && n > maxPollClients {
					continue
				}
				fmt.Fprintf(stderr, "== %s, %d clients, %g Hz\n", sys, n, hz)
				res, err := r.point(ctx, rep, sys, n, hz, *d)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					fmt.Fprintf(stderr, "  failed: %v\n", err)
					res = &Result{Mode: sys, Clients: n, Hz: hz, FailureMsg: err.Error()}
				}
				printResult(stderr, res)
				rep.Points = append(rep.Points, res)
			}
		}
	}
	for i := range *repeat {
		for _, sys := range []string{ModeLivecgi, ModeWebsocketd, ModeBare} {
			fmt.Fprintf(stderr, "== repeat %d: %s, 1000 clients, 10 Hz\n", i+1, sys)
			res, err := r.point(ctx, nil, sys, 1000, 10, *d)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Fprintf(stderr, "  failed: %v\n", err)
				continue
			}
			printResult(stderr, res)
			rep.Repeats = append(rep.Repeats, res)
		}
	}
	for _, hz := range ceilList {
		for _, sys := range []string{ModeLivecgi, ModeBare} {
			fmt.Fprintf(stderr, "== ceiling: %s, %d clients, %g Hz\n", sys, *ceilN, hz)
			res, err := r.point(ctx, nil, sys, *ceilN, hz, *ceilD)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Fprintf(stderr, "  failed: %v\n", err)
				res = &Result{Mode: sys, Clients: *ceilN, Hz: hz, FailureMsg: err.Error()}
			}
			printResult(stderr, res)
			rep.Ceiling = append(rep.Ceiling, res)
		}
	}
	if err := writeReport(*out, rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(*out, "compare.md"))
	return nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive integers", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func floats(s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q: want positive numbers", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// newRig builds every binary into work and starts busybox httpd with the
// stub and the long-poll CGI in its cgi-bin.
func newRig(ctx context.Context, work string, pollInterval time.Duration, log io.Writer) (*rig, error) {
	for _, tool := range []string{"busybox", "websocketd", "gcc", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: apt-get install busybox websocketd gcc (and Go)", tool)
		}
	}
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "livecgi-bench-"); err != nil {
			return nil, err
		}
	}
	work, _ = filepath.Abs(work)
	r := &rig{
		work: work, bin: filepath.Join(work, "bin"), plugins: filepath.Join(work, "plugins"),
		state: filepath.Join(work, "state"), www: filepath.Join(work, "www"), execDir: filepath.Join(work, "exec.d"), log: log,
		hc: newClient(),
	}
	var err error
	if r.self, err = os.Executable(); err != nil {
		return nil, err
	}
	for _, d := range []string{r.bin, r.plugins, r.state, r.execDir, filepath.Join(r.www, "cgi-bin")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(work, "livecgi.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(
		"listen = 127.0.0.1:0\nstate_dir = %s\nplugins_dir = %s\nexec_dir = %s\nsupervisor = %s\nlog_level = warn\nmax_clients = 1100\npoll_interval = %s\n",
		r.state, r.plugins, r.execDir, filepath.Join(r.bin, "livecgid"), pollInterval)), 0o600); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "building into %s\n", r.bin)
	if err := goBuild(ctx, r.bin,
		goPkg{"./cmd/livecgid", "livecgid", ""},
		goPkg{"./cmd/live.cgi", "live.cgi", "-X github.com/livecgi/livecgi/cgi.ConfigPath=" + conf},
		goPkg{"./plugins/bench", "bench", ""},
		goPkg{"./cmd/livecgi-bench/sensorprog", "sensorprog", ""},
		goPkg{"./cmd/livecgi-bench/pollcgi", "pollcgi", ""},
		goPkg{"./cmd/livecgi-bench/nphd", "nphd", ""},
	); err != nil {
		return nil, err
	}
	src := filepath.Join(r.bin, "now.c")
	if err := os.WriteFile(src, []byte(nowProg), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "gcc", "-O2", "-o", filepath.Join(r.bin, "now"), src).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc: %v\n%s", err, out)
	}
	// The system and exec plugins are built into livecgid: a link named
	// after each serves it.
	for _, name := range []string{"system", "exec"} {
		os.Remove(filepath.Join(r.bin, name))
		if err := os.Symlink("livecgid", filepath.Join(r.bin, name)); err != nil {
			return nil, err
		}
	}
	for _, l := range [][2]string{{"live.cgi", "live.cgi"}, {"pollcgi", "poll"}} {
		if err := copyFile(filepath.Join(r.bin, l[0]), filepath.Join(r.www, "cgi-bin", l[1])); err != nil {
			return nil, err
		}
	}
	if err := os.Symlink("live.cgi", filepath.Join(r.www, "cgi-bin", "nph-live.cgi")); err != nil {
		return nil, err
	}
	r.nphd = exec.Command(filepath.Join(r.bin, "nphd"), "-root", r.www, "-listen", "127.0.0.1:0")
	nphOut, err := r.nphd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := start(r.nphd); err != nil {
		return nil, err
	}
	line, rerr := bufio.NewReader(nphOut).ReadString('\n')
	if r.nphPort, err = strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "listening ")); err != nil {
		return nil, fmt.Errorf("nphd said %q (%v): %w", line, rerr, err)
	}
	if r.httpPort, err = freePort(); err != nil {
		return nil, err
	}
	r.httpd = exec.Command("busybox", "httpd", "-f", "-p", "127.0.0.1:"+strconv.Itoa(r.httpPort), "-h", r.www)
	if err := start(r.httpd); err != nil {
		return nil, err
	}
	if err := waitPort(ctx, r.httpPort); err != nil {
		return nil, fmt.Errorf("busybox httpd: %w", err)
	}
	return r, nil
}

// goPkg is a package to build, the name of its binary and more -ldflags.
type goPkg struct{ pkg, out, ldflags string }

// goBuild builds each package (a path from the module root) into dir,
// static and stripped.
func goBuild(ctx context.Context, dir string, pkgs ...goPkg) error {
	for _, b := range pkgs {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w "+b.ldflags, "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, to)
}

// start runs cmd in its own process group, killed if this tool dies.
func start(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return nil
}

// stop ends a process started with start, and its group.
func stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stopGroup(cmd.Process.Pid, done)
}

// stopGroup sends SIGTERM to the process group pid leads and waits for
// done (its leader reaped); after 5 s it sends SIGKILL and reports true.
func stopGroup(pid int, done <-chan struct{}) (killed bool) {
	syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-done:
		return false
	case <-time.After(5 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		return true
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(ctx context.Context, port int) error {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("nothing listens on port %d after 10s", port)
}

func (r *rig) close(removeWork bool) {
	r.stopSupervisor()
	stop(r.httpd)
	stop(r.nphd)
	if removeWork {
		os.RemoveAll(r.work)
	}
}

func (r *rig) stubURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(r.httpPort) + "/cgi-bin/live.cgi"
}

func (r *rig) origin() string { return "http://127.0.0.1:" + strconv.Itoa(r.httpPort) }

// setPlugins leaves exactly the named plugins in the plugins dir, the bench
// plugin set to hz.
func (r *rig) setPlugins(hz float64, names ...string) error {
	ents, _ := os.ReadDir(r.plugins)
	for _, e := range ents {
		os.Remove(filepath.Join(r.plugins, e.Name()))
	}
	for _, n := range names {
		from := filepath.Join(r.bin, n)
		if fi, err := os.Lstat(from); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			// A built-in plugin: a link to livecgid, as installed.
			if err := os.Symlink(filepath.Join(r.bin, "livecgid"), filepath.Join(r.plugins, n)); err != nil {
				return err
			}
			continue
		}
		if err := copyFile(from, filepath.Join(r.plugins, n)); err != nil {
			return err
		}
	}
	env := fmt.Sprintf("LIVECGI_BENCH_HZ=%g\n", hz)
	return os.WriteFile(filepath.Join(r.plugins, ".bench.env"), []byte(env), 0o600)
}

// stopSupervisor ends the stub-started supervisor, if one runs.
func (r *rig) stopSupervisor() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := control.Probe(ctx, r.state)
	if err != nil {
		return
	}
	syscall.Kill(st.PID, syscall.SIGTERM)
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(st.PID, 0) != nil {
			return
		}
	}
	syscall.Kill(st.PID, syscall.SIGKILL)
}

// setExec leaves one conf in the exec dir, bench.conf (sensor
// exec.bench): for ModeExec the websocketd rig's program as a stream, for
// ModeExecPeriodic the C program run every 1/hz.
func (r *rig) setExec(sys string, hz float64) error {
	ents, _ := os.ReadDir(r.execDir)
	for _, e := range ents {
		os.Remove(filepath.Join(r.execDir, e.Name()))
	}
	conf := fmt.Sprintf("run = %s -hz %g -value\nmode = stream\n", filepath.Join(r.bin, "sensorprog"), hz)
	if sys == ModeExecPeriodic {
		conf = fmt.Sprintf("run = %s\ninterval = %v\n", filepath.Join(r.bin, "now"), time.Duration(float64(time.Second)/hz))
	}
	return os.WriteFile(filepath.Join(r.execDir, "bench.conf"), []byte(conf), 0o600)
}

// firstContact starts the supervisor through the stub, as a browser's
// first page would, and returns the time from the ?connect request to the
// first reading of a sensor whose id starts with prefix in the client.
func (r *rig) firstContact(ctx context.Context, prefix string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	t0 := time.Now()
	doc, err := StubConnect(ctx, r.hc, r.stubURL(), r.origin())
	if err != nil {
		return 0, err
	}
	conn, err := dialWS(ctx, r.hc, doc.URL, r.origin(), doc.Protocol)
	if err != nil {
		return 0, err
	}
	defer conn.CloseNow()
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return 0, fmt.Errorf("waiting for the first reading: %w", err)
		}
		if _, ok := parseReading(b, prefix); ok || strings.Contains(string(b), `"sensor":"`+prefix) {
			return time.Since(t0), nil
		}
	}
}

// footprint measures the stub, first contact, and the idle supervisor
// with the system plugin.
func (r *rig) footprint(ctx context.Context, rep *Report) error {
	r.stopSupervisor()
	if err := r.setPlugins(10, "system"); err != nil {
		return err
	}
	if _, err := StubConnect(ctx, r.hc, r.stubURL(), r.origin()); err != nil {
		return err
	}
	var times []float64
	for range 200 {
		t0 := time.Now()
		if _, err := StubConnect(ctx, r.hc, r.stubURL(), r.origin()); err != nil {
			return err
		}
		times = append(times, float64(time.Since(t0).Microseconds())/1000)
	}
	sort.Float64s(times)
	rep.StubMedianMS = times[len(times)/2]
	sleep(ctx, 5*time.Second) // let the system plugin settle
	st, err := control.Probe(ctx, r.state)
	if err != nil {
		return err
	}
	u, err := procFS{"/proc"}.usage(st.PID, true)
	if err != nil {
		return err
	}
	for _, p := range u.List {
		switch p.Comm {
		case "livecgid":
			rep.SupervisorIdle = p
		case "system":
			rep.SystemPlugin = p
		}
	}
	fmt.Fprintf(r.log, "stub median %.2f ms; idle livecgid RSS %d kB (anon %d kB); system plugin RSS %d kB, anon %d kB\n",
		rep.StubMedianMS, rep.SupervisorIdle.RSS, rep.SupervisorIdle.Anon, rep.SystemPlugin.RSS, rep.SystemPlugin.Anon)
	r.stopSupervisor()
	return nil
}

// point runs one system with n clients at hz. rep (if not nil) collects
// first-contact times.
func (r *rig) point(ctx context.Context, rep *Report, sys string, n int, hz float64, d time.Duration) (*Result, error) {
	l := Load{Mode: sys, Clients: n, Hz: hz, Duration: d, Warmup: time.Second}
	switch sys {
	case ModePoll:
		// Every client through the stub: ?connect, then its polls, each a
		// CGI run. The server is the supervisor's tree and the web
		// server's (the stubs).
		r.stopSupervisor()
		if err := r.setPlugins(hz, "bench"); err != nil {
			return nil, err
		}
		if _, err := r.firstContact(ctx, "bench."); err != nil {
			return nil, fmt.Errorf("first contact: %w", err)
		}
		defer r.stopSupervisor()
		st, err := control.Probe(ctx, r.state)
		if err != nil {
			return nil, err
		}
		l.URL, l.PID, l.Also, l.Origin = r.stubURL(), st.PID, r.httpd.Process.Pid, r.origin()
		l.Parallel = 8 // busybox httpd listens with a backlog of 9
		sleep(ctx, time.Second)
	case ModeLivecgi, ModeSamePort, ModeExec, ModeExecPeriodic:
		r.stopSupervisor()
		plugin := "bench"
		if sys == ModeExec || sys == ModeExecPeriodic {
			plugin, l.Prefix = "exec", "exec."
			if err := r.setExec(sys, hz); err != nil {
				return nil, err
			}
		}
		if err := r.setPlugins(hz, plugin); err != nil {
			return nil, err
		}
		ft, err := r.firstContact(ctx, plugin+".")
		if err != nil {
			return nil, fmt.Errorf("first contact: %w", err)
		}
		if rep != nil && sys == ModeLivecgi {
			rep.FirstReadingMS = append(rep.FirstReadingMS, float64(ft.Microseconds())/1000)
		}
		defer r.stopSupervisor()
		st, err := control.Probe(ctx, r.state)
		if err != nil {
			return nil, err
		}
		// The supervisor was started by the stub and ?connect is timed on
		// its own (stub median); the N clients then mint their tokens
		// with the state dir's secret, as the websocketd and bare clients
		// dial directly. Through the stub, 1,000 CGI forks on this 2-core
		// machine take tens of seconds while the first clients already
		// receive, which would measure the fork storm, not the fan-out.
		l.URL, l.PID = "ws://127.0.0.1:"+strconv.Itoa(st.Port)+"/live", st.PID
		l.SecretFile, l.Origin = filepath.Join(r.state, control.SecretFile), r.origin()
		if sys == ModeSamePort {
			// Each client's upgrade goes through one run of the stub
			// under nphd, which hands the socket to the same
			// supervisor; the server CPU counted is the supervisor's
			// tree, as for livecgi (the stubs' is the connect cost).
			l.URL = "ws://127.0.0.1:" + strconv.Itoa(r.nphPort) + "/cgi-bin/nph-live.cgi?ws"
			l.Origin = "http://127.0.0.1:" + strconv.Itoa(r.nphPort)
		}
		sleep(ctx, time.Second)
	case ModeWebsocketd:
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command("websocketd", "--port="+strconv.Itoa(port), "--address=127.0.0.1", "--loglevel=error",
			filepath.Join(r.bin, "sensorprog"), "-hz", strconv.FormatFloat(hz, 'g', -1, 64))
		cmd.Stderr = io.Discard
		if err := start(cmd); err != nil {
			return nil, err
		}
		defer stop(cmd)
		if err := waitPort(ctx, port); err != nil {
			return nil, err
		}
		l.URL, l.PID = "ws://127.0.0.1:"+strconv.Itoa(port)+"/", cmd.Process.Pid
	case ModeLongPoll:
		l.URL = "http://127.0.0.1:" + strconv.Itoa(r.httpPort) + "/cgi-bin/poll?hz=" + strconv.FormatFloat(hz, 'g', -1, 64)
		l.PID = r.httpd.Process.Pid
		// CGIs of the last run may still be finishing their wait.
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && len(procFS{"/proc"}.tree(l.PID)) > 1; {
			sleep(ctx, 50*time.Millisecond)
		}
	case ModeBare:
		cmd := exec.Command(r.self, "serve-bare", "-listen", "127.0.0.1:0", "-hz", strconv.FormatFloat(hz, 'g', -1, 64))
		cmd.Stderr = io.Discard
		outp, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := start(cmd); err != nil {
			return nil, err
		}
		defer stop(cmd)
		line, err := bufio.NewReader(outp).ReadString('\n')
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if err != nil || !ok {
			return nil, fmt.Errorf("serve-bare said %q: %v", line, err)
		}
		l.URL, l.PID = "ws://"+addr+"/", cmd.Process.Pid
	}
	return l.Run(ctx, r.log)
}

// machine describes this machine and the versions under test.
func machine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	first := func(name string, args ...string) string {
		out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	m.Livecgi = first("git", "describe", "--tags", "--always", "--dirty")
	m.Websocketd = first("dpkg-query", "-W", "-f", "${Version}", "websocketd")
	m.Busybox = first("dpkg-query", "-W", "-f", "${Version}", "busybox")
	return m
}

// writeReport writes results.json, compare.md and the plots.
func writeReport(dir string, rep *Report) error {
	// Keep the largest processes of each tree: websocketd's has one per
	// client.
	for _, list := range [][]*Result{rep.Points, rep.Repeats, rep.Ceiling} {
		for _, p := range list {
			for _, u := range []*Usage{&p.Before, &p.After} {
				if len(u.List) > 5 {
					u.List = u.List[:5]
				}
			}
		}
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	files := map[string]string{
		"compare.md":  markdown(rep),
		"compare.svg": plotCompare(rep),
	}
	if len(rep.Ceiling) > 0 {
		files["ceiling.svg"] = plotCeiling(rep)
	}
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// newClient is the HTTP client of the rigs: generous timeouts, many idle
// connections.
func newClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute,
	}}
}
