package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/rbe"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/brokertest"
)

// What report by exception and demand per sensor save, measured the way
// a device runs: livecgid started directly (as the stub would) with the
// built-in system plugin on this machine's /proc, its broker bridge to a
// real Mosquitto, and browsers on its WebSocket. Two builds compared on
// the same machine, interleaved: "before" and "after", each a git
// revision (the working tree for "").
//
//	livecgi-bench rbe     -before 955293f -rounds 2 -n 10 -d 60s
//	livecgi-bench records -d 60s
//
// rbe (with -n browsers and the bridge): the device tree's CPU
// (livecgid and its plugins, /proc/<pid>/stat over the window), the bytes
// of the frames the browsers received, the messages the broker passed
// on, and the latency of each reading (receipt minus its t), of those
// that moved past their deadband (the hello's) in particular.
//
// records (no browser, no bridge): the tree's CPU with 5 recorded
// sensors and 3 alarms configured, then with none.

// rbeVariant is one build under test.
type rbeVariant struct {
	name, rev, bin string
}

// RBERun is what one run of one build measured.
type RBERun struct {
	Variant    string  `json:"variant"`
	Round      int     `json:"round"`
	Seconds    float64 `json:"seconds"`
	Browsers   int     `json:"browsers"`
	CPUTicks   int64   `json:"cpu_ticks"`
	PluginCPU  int64   `json:"plugin_cpu_ticks"` // the plugins' part of it
	CPUPercent float64 `json:"cpu_percent"`      // of one core
	Frames     uint64  `json:"frames"`           // to all browsers
	Bytes      uint64  `json:"bytes"`            // frame payloads, to all browsers
	Readings   uint64  `json:"readings"`         // reading frames, to all browsers
	Messages   uint64  `json:"broker_messages"`
	Latency    Dist    `json:"latency"`         // every reading: receipt − t
	Moved      Dist    `json:"latency_changed"` // readings that moved past their deadband
}

func runRBE(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rbe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	before := fs.String("before", "955293f", "git `revision` of the build before (livecgid asks every reading)")
	after := fs.String("after", "", "git `revision` of the build after; empty: the working tree")
	rounds := fs.Int("rounds", 2, "rounds of before then after")
	n := fs.Int("n", 10, "browsers (WebSocket clients)")
	d := fs.Duration("d", 60*time.Second, "measured window per run")
	warmup := fs.Duration("warmup", 10*time.Second, "wait after the browsers connected, before the window")
	work := fs.String("work", "", "work `dir` (default: a temporary one, removed)")
	asJSON := fs.Bool("json", false, "print the runs as JSON")
	conf := fs.String("conf", "", "more configuration `lines` for both builds (\\n between lines), e.g. deadband.system.cpu_percent = 5")
	if err := fs.Parse(args); err != nil {
		return err
	}
	extra := strings.ReplaceAll(*conf, `\n`, "\n")
	if extra != "" && !strings.HasSuffix(extra, "\n") {
		extra += "\n"
	}
	if *rounds < 1 || *n < 1 || *d <= 0 {
		return errors.New("want -rounds ≥ 1, -n ≥ 1 and -d > 0")
	}
	if _, err := brokertest.Look("mosquitto"); err != nil {
		return err
	}
	dir, cleanup, err := workDir(*work, "livecgi-rbe-")
	if err != nil {
		return err
	}
	defer cleanup()
	vs := []*rbeVariant{{name: "before", rev: *before}, {name: "after", rev: *after}}
	for _, v := range vs {
		if v.bin, err = buildRev(ctx, dir, v.name, v.rev, stderr); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "broker"), 0o700); err != nil {
		return err
	}
	broker, err := brokertest.New(filepath.Join(dir, "broker"), brokertest.Options{})
	if err != nil {
		return err
	}
	defer broker.Kill()
	tally := &brokerTally{counts: map[string]uint64{}}
	sub, err := subscribe(ctx, broker.Port, "livecgi/#", tally.receive)
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	defer sub.Disconnect(&paho.Disconnect{ReasonCode: 0})

	var runs []*RBERun
	for round := 1; round <= *rounds; round++ {
		for _, v := range vs {
			fmt.Fprintf(stderr, "== %s (%s), round %d\n", v.name, revName(v.rev), round)
			r, err := rbeRun(ctx, dir, v, round, *n, *d, *warmup, broker.URL, extra, tally, stderr)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", v.name, round, err)
			}
			runs = append(runs, r)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(runs)
	}
	printRBE(stdout, runs, vs, *n, *d)
	return nil
}

// workDir returns work (made absolute) or a fresh temporary directory,
// and what removes the latter.
func workDir(work, prefix string) (string, func(), error) {
	if work != "" {
		abs, err := filepath.Abs(work)
		if err == nil {
			err = os.MkdirAll(abs, 0o700)
		}
		return abs, func() {}, err
	}
	dir, err := os.MkdirTemp("", prefix)
	return dir, func() { os.RemoveAll(dir) }, err
}

func revName(rev string) string {
	if rev == "" {
		return "working tree"
	}
	return rev
}

// buildRev builds livecgid of git revision rev ("" for the working
// tree, from the current directory: the module root) into
// dir/<name>/livecgid, and links the system plugin to it.
func buildRev(ctx context.Context, dir, name, rev string, log io.Writer) (string, error) {
	bin := filepath.Join(dir, name)
	if err := os.MkdirAll(bin, 0o700); err != nil {
		return "", err
	}
	src := "."
	if rev != "" {
		src = filepath.Join(dir, name+"-src")
		os.RemoveAll(src)
		if err := os.MkdirAll(src, 0o700); err != nil {
			return "", err
		}
		archive := exec.CommandContext(ctx, "sh", "-c", `git archive --format=tar "$1" | tar -x -C "$2"`, "sh", rev, src)
		if out, err := archive.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git archive %s: %v\n%s", rev, err, out)
		}
	}
	fmt.Fprintf(log, "building livecgid of %s into %s\n", revName(rev), bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(bin, "livecgid"), "./cmd/livecgid")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build (%s): %v\n%s", revName(rev), err, out)
	}
	os.Remove(filepath.Join(bin, "system"))
	return bin, os.Symlink("livecgid", filepath.Join(bin, "system"))
}

// brokerTally counts the messages the broker passed on, by device.
type brokerTally struct {
	mu     sync.Mutex
	counts map[string]uint64
}

func (t *brokerTally) receive(p *paho.Publish, _ time.Time) {
	if p.Retain {
		return // held from before: not sent now
	}
	rest, ok := strings.CutPrefix(p.Topic, "livecgi/")
	if !ok {
		return
	}
	dev, _, _ := strings.Cut(rest, "/")
	t.mu.Lock()
	t.counts[dev]++
	t.mu.Unlock()
}

func (t *brokerTally) count(dev string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[dev]
}

// benchDevice is a livecgid this tool started: its process, state dir
// and port.
type benchDevice struct {
	cmd    *exec.Cmd
	state  string
	port   int
	stderr bytes.Buffer
	done   chan struct{}
}

// startDevice starts bin/livecgid with the system plugin (only) and the
// configuration lines extra, under dir, and waits for its control
// socket.
func startDevice(ctx context.Context, dir, bin, extra string) (*benchDevice, error) {
	d := &benchDevice{state: filepath.Join(dir, "state"), done: make(chan struct{})}
	plugins := filepath.Join(dir, "plugins")
	for _, p := range []string{d.state, plugins} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, err
		}
	}
	os.Remove(filepath.Join(plugins, "system"))
	if err := os.Symlink(filepath.Join(bin, "livecgid"), filepath.Join(plugins, "system")); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "livecgi.conf")
	text := fmt.Sprintf("listen = 127.0.0.1:0\nstate_dir = %s\nplugins_dir = %s\nlog_level = warn\nmax_clients = 100\nmax_clients_per_addr = 100\n%s",
		d.state, plugins, extra)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(filepath.Join(bin, "livecgid"), "-config", conf)
	d.cmd.Stderr = &d.stderr
	if err := start(d.cmd); err != nil {
		return nil, err
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	for end := time.Now().Add(30 * time.Second); ; sleep(ctx, 50*time.Millisecond) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := control.Probe(pctx, d.state)
		cancel()
		if err == nil && st.Port > 0 {
			d.port = st.Port
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("livecgid exited (%v): %s", d.cmd.ProcessState, strings.TrimSpace(d.stderr.String()))
		default:
		}
		if time.Now().After(end) || ctx.Err() != nil {
			d.stop()
			return nil, fmt.Errorf("livecgid's control socket: %v", err)
		}
	}
}

func (d *benchDevice) stop() { stopGroup(d.cmd.Process.Pid, d.done) }

// waitTree waits until livecgid has n plugin processes.
func (d *benchDevice) waitTree(ctx context.Context, n int) error {
	proc := procFS{"/proc"}
	for end := time.Now().Add(30 * time.Second); ; sleep(ctx, 100*time.Millisecond) {
		if u, err := proc.usage(d.cmd.Process.Pid, false); err == nil && u.Procs >= 1+n {
			return nil
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("livecgid %d: want it and %d plugin processes", d.cmd.Process.Pid, n)
		}
	}
}

// browserTally is what the browsers received; guarded by mu.
type browserTally struct {
	mu       sync.Mutex
	counting bool
	frames   uint64
	bytes    uint64
	readings uint64
	types    map[string]uint64 // frames by type
	sensors  map[string]uint64 // readings by sensor
	lat      hist
	moved    hist
}

// rbeRun runs one build with n browsers and the bridge, and measures
// over d after warmup.
func rbeRun(ctx context.Context, dir string, v *rbeVariant, round, n int, d, warmup time.Duration, brokerURL, extra string,
	broker *brokerTally, log io.Writer) (*RBERun, error) {
	dev := fmt.Sprintf("%s%d", v.name, round)
	run := filepath.Join(dir, dev)
	os.RemoveAll(run)
	dv, err := startDevice(ctx, run, v.bin, fmt.Sprintf("device_id = %s\nmqtt_url = %s\n%s", dev, brokerURL, extra))
	if err != nil {
		return nil, err
	}
	defer dv.stop()
	if err := dv.waitTree(ctx, 1); err != nil {
		return nil, err
	}
	secret, err := os.ReadFile(filepath.Join(dv.state, control.SecretFile))
	if err != nil {
		return nil, err
	}
	st, err := control.Probe(ctx, dv.state)
	if err != nil {
		return nil, err
	}
	origin := "http://127.0.0.1:" + strconv.Itoa(dv.port)
	hc := newClient()
	tally := &browserTally{types: map[string]uint64{}, sensors: map[string]uint64{}}
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range n {
		tok, _ := control.MintToken(secret, origin, st.Epoch, time.Now(), time.Minute, auth.Identity{})
		conn, err := dialWS(cctx, hc, "ws://127.0.0.1:"+strconv.Itoa(dv.port)+"/live?token="+tok, origin, wire.Subprotocol)
		if err != nil {
			return nil, fmt.Errorf("browser: %w", err)
		}
		conn.SetReadLimit(1 << 20)
		wg.Go(func() {
			defer conn.CloseNow()
			browse(cctx, conn, tally)
		})
	}
	fmt.Fprintf(log, "  %d browsers on livecgid %d; warming up %v, measuring %v\n", n, dv.cmd.Process.Pid, warmup, d)
	sleep(ctx, warmup)
	proc := procFS{"/proc"}
	u0, err := proc.usage(dv.cmd.Process.Pid, true)
	if err != nil {
		return nil, err
	}
	m0 := broker.count(dev)
	tally.mu.Lock()
	tally.counting = true
	tally.mu.Unlock()
	t0 := time.Now()
	sleep(ctx, d)
	u1, err := proc.usage(dv.cmd.Process.Pid, true)
	if err != nil {
		return nil, err
	}
	secs := time.Since(t0).Seconds()
	pluginTicks := func(u Usage) (n int64) {
		for _, p := range u.List {
			if p.PID != dv.cmd.Process.Pid {
				n += p.CPU
			}
		}
		return n
	}
	tally.mu.Lock()
	tally.counting = false
	r := &RBERun{Variant: v.name, Round: round, Seconds: secs, Browsers: n, CPUTicks: u1.CPU - u0.CPU, PluginCPU: pluginTicks(u1) - pluginTicks(u0),
		Frames: tally.frames, Bytes: tally.bytes, Readings: tally.readings, Latency: tally.lat.dist(), Moved: tally.moved.dist()}
	types := fmt.Sprint(tally.types)
	bySensor := fmt.Sprint(tally.sensors)
	tally.mu.Unlock()
	r.Messages = broker.count(dev) - m0
	r.CPUPercent = 100 * float64(r.CPUTicks) / clockTick / secs
	select {
	case <-dv.done:
		return nil, fmt.Errorf("livecgid exited during the run (%v): %s", dv.cmd.ProcessState, strings.TrimSpace(dv.stderr.String()))
	default:
	}
	fmt.Fprintf(log, "  CPU %.2f %% of a core (%d ticks, plugins %d), %d frames %v, %d bytes to browsers, %d broker messages\n", r.CPUPercent, r.CPUTicks, r.PluginCPU, r.Frames, types, r.Bytes, r.Messages)
	fmt.Fprintf(log, "  readings by sensor: %s\n", bySensor)
	return r, nil
}

// browse reads one browser's frames until ctx ends, tallying those that
// arrive while counting: every frame's bytes, and each reading's latency
// (receipt − t), also among the readings that moved past their sensor's
// deadband (from the hello; 0 without: any change) since the last one
// this browser got.
func browse(ctx context.Context, conn *websocket.Conn, t *browserTally) {
	deadband := map[string]float64{}
	last := map[string]any{}
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		var m struct {
			Type    string        `json:"type"`
			Sensor  string        `json:"sensor"`
			Value   any           `json:"value"`
			T       int64         `json:"t"`
			Sensors []wire.Sensor `json:"sensors"`
		}
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		if m.Type == wire.TypeHello {
			for _, s := range m.Sensors {
				deadband[s.ID] = s.Deadband
			}
		}
		moved := false
		if m.Type == wire.TypeReading {
			prev, seen := last[m.Sensor]
			moved = !seen || changed(prev, m.Value, deadband[m.Sensor])
			last[m.Sensor] = m.Value
		}
		t.mu.Lock()
		if t.counting {
			t.types[m.Type]++
			t.frames++
			t.bytes += uint64(len(b))
			if m.Type == wire.TypeReading {
				t.readings++
				t.sensors[m.Sensor]++
				us := (now.UnixMilli() - m.T) * 1000
				t.lat.add(us)
				if moved {
					t.moved.add(us)
				}
			}
		}
		t.mu.Unlock()
	}
}

// changed reports whether a reading's value b moved from a by more than
// deadband (numbers), or at all (the rest).
func changed(a, b any, deadband float64) bool {
	x, ok1 := a.(float64)
	y, ok2 := b.(float64)
	if ok1 && ok2 {
		return rbe.Moved(x, y, deadband)
	}
	return fmt.Sprint(a) != fmt.Sprint(b)
}

func printRBE(w io.Writer, runs []*RBERun, vs []*rbeVariant, n int, d time.Duration) {
	fmt.Fprintf(w, "## Report by exception: the system plugin, %d browsers and the MQTT bridge, %v per run\n\n", n, d)
	fmt.Fprintf(w, "before: %s; after: %s; interleaved on one machine (%s, load average at the end %s).\n\n",
		revName(vs[0].rev), revName(vs[1].rev), machineLine(), loadAvg())
	fmt.Fprintf(w, "| run | tree CPU (%% of a core) | frames to browsers | bytes to browsers | broker messages | latency p50 / p99 / max (ms) | moved past deadband: n, p99 / max (ms) |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---|---|\n")
	for _, r := range runs {
		fmt.Fprintf(w, "| %s %d | %.3f | %d | %d | %d | %.0f / %.0f / %.0f | %d, %.0f / %.0f |\n", r.Variant, r.Round, r.CPUPercent, r.Frames, r.Bytes, r.Messages,
			r.Latency.P50, r.Latency.P99, r.Latency.Max, r.Moved.N, r.Moved.P99, r.Moved.Max)
	}
	med := func(name string, f func(*RBERun) float64) float64 {
		var xs []float64
		for _, r := range runs {
			if r.Variant == name {
				xs = append(xs, f(r))
			}
		}
		slices.Sort(xs)
		if len(xs) == 0 {
			return 0
		}
		if len(xs)%2 == 0 {
			return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
		}
		return xs[len(xs)/2]
	}
	fmt.Fprintf(w, "\n| median | before | after | after / before |\n|---|---:|---:|---:|\n")
	for _, row := range []struct {
		name string
		f    func(*RBERun) float64
	}{
		{"tree CPU, % of a core", func(r *RBERun) float64 { return r.CPUPercent }},
		{"bytes to browsers", func(r *RBERun) float64 { return float64(r.Bytes) }},
		{"frames to browsers", func(r *RBERun) float64 { return float64(r.Frames) }},
		{"messages to the broker", func(r *RBERun) float64 { return float64(r.Messages) }},
		{"reading latency p99, ms", func(r *RBERun) float64 { return r.Latency.P99 }},
	} {
		b, a := med("before", row.f), med("after", row.f)
		ratio := "–"
		if b > 0 {
			ratio = fmt.Sprintf("%.1f %%", 100*a/b)
		}
		fmt.Fprintf(w, "| %s | %.4g | %.4g | %s |\n", row.name, b, a, ratio)
	}
}

// machineLine is the CPU model and core count, briefly.
func machineLine() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	model, cores := "?", 0
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			switch strings.TrimSpace(k) {
			case "model name":
				model = strings.TrimSpace(v)
				cores++
			}
		}
	}
	return fmt.Sprintf("%s, %d cores", model, cores)
}

// recordsConf is the configuration of the records run: 5 recorded
// sensors of the system plugin at 10 s and 3 alarms.
const recordsConf = `record.system.load1 = 10s
record.system.load5 = 10s
record.system.mem_used_percent = 10s
record.system.mem_available_bytes = 10s
record.system.uptime_seconds = 10s
alarm.busy = system.load1 above 8 for 1m
alarm.memory = system.mem_used_percent above 90 critical
alarm.swapping = system.mem_available_bytes below 50000000
`

// runRecords measures the tree with nobody watching: with recordsConf,
// then with nothing configured.
func runRecords(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("records", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rev := fs.String("rev", "", "git `revision` to build; empty: the working tree")
	d := fs.Duration("d", 60*time.Second, "measured window per run")
	settle := fs.Duration("settle", 15*time.Second, "wait after the start, before the window")
	work := fs.String("work", "", "work `dir` (default: a temporary one, removed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, cleanup, err := workDir(*work, "livecgi-records-")
	if err != nil {
		return err
	}
	defer cleanup()
	bin, err := buildRev(ctx, dir, "build", *rev, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "## No browser: the system plugin, %v per run (%s)\n\n| configured | tree CPU ticks | %% of a core | processes |\n|---|---:|---:|---:|\n", *d, machineLine())
	for _, c := range []struct{ name, conf string }{
		{"5 record.system.* = 10s, 3 alarm.*", recordsConf},
		{"nothing", ""},
	} {
		run := filepath.Join(dir, strings.Fields(c.name)[0])
		os.RemoveAll(run)
		dv, err := startDevice(ctx, run, bin, c.conf)
		if err != nil {
			return err
		}
		err = dv.waitTree(ctx, 1)
		if err == nil {
			fmt.Fprintf(stderr, "== %s: settling %v, measuring %v\n", c.name, *settle, *d)
			sleep(ctx, *settle)
			var u0, u1 Usage
			proc := procFS{"/proc"}
			if u0, err = proc.usage(dv.cmd.Process.Pid, false); err == nil {
				sleep(ctx, *d)
				u1, err = proc.usage(dv.cmd.Process.Pid, false)
			}
			ticks := u1.CPU - u0.CPU
			fmt.Fprintf(stdout, "| %s | %d | %.3f | %d |\n", c.name, ticks, 100*float64(ticks)/clockTick/d.Seconds(), u1.Procs)
		}
		dv.stop()
		if err != nil {
			return err
		}
	}
	return nil
}
