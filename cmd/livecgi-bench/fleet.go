package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/livecgi/livecgi/supervisor/brokertest"
)

// fleetConfig is what a fleet run does; parseFleet fills it from flags.
type fleetConfig struct {
	work     string
	n        int
	hz       float64
	d        time.Duration
	warmup   time.Duration
	asJSON   bool
	startMax time.Duration // for every device's first reading
}

// fleetSensor is the bench plugin's sensor whose value is its send time.
const fleetSensor = "bench.tick_us"

// FleetResult is what a fleet run measured. Bench readings are those of
// fleetSensor sent inside the window (by their value, the send time);
// messages are everything the subscriber received inside it.
type FleetResult struct {
	Devices    int     `json:"devices"`
	Hz         float64 `json:"hz"`
	Seconds    float64 `json:"seconds"`
	Delivering int     `json:"devices_delivering"` // devices with a bench reading in the window
	Received   uint64  `json:"bench_readings"`
	Expected   float64 `json:"bench_expected"` // devices × hz × seconds
	Missing    float64 `json:"bench_missing"`
	BenchRate  float64 `json:"bench_readings_per_s"`
	Messages   uint64  `json:"messages"`
	MsgRate    float64 `json:"messages_per_s"`
	Latency    Dist    `json:"latency"` // sensor's send time → subscriber

	DeviceCPU     float64 `json:"device_cpu_percent"` // every livecgid and its plugins, % of one core
	PluginCPU     float64 `json:"plugin_cpu_percent"` // the plugins' part of it
	CPUPerReading float64 `json:"device_cpu_us_per_reading"`
	BrokerCPU     float64 `json:"broker_cpu_percent"`
	BrokerPerMsg  float64 `json:"broker_cpu_us_per_message"`
	SubscriberCPU float64 `json:"subscriber_cpu_percent"` // this tool
	RSSMedian     int64   `json:"livecgid_rss_kb_median"`
	RSSMax        int64   `json:"livecgid_rss_kb_max"`
	PluginRSS     int64   `json:"plugin_rss_kb_median"`
	Procs         int     `json:"device_procs"` // livecgid and plugin processes at the end
	LoadAvg       string  `json:"loadavg"`      // /proc/loadavg at the end
	Cores         int     `json:"cores"`
	Killed        int     `json:"killed"` // livecgid that did not end within 5 s of SIGTERM

	PerDevice map[string]uint64 `json:"per_device"` // bench readings in the window
}

// runFleet runs -n supervisors, each with its own device id and a bench
// sensor at -hz, bridged into one Mosquitto, and measures what reaches a
// subscriber of the broker: readings per second, latency from the
// sensor's send time, and CPU per reading on the device side.
func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFleet(args, stderr)
	if err != nil {
		return err
	}
	res, err := fleet(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printFleet(stdout, res)
	return nil
}

func parseFleet(args []string, stderr io.Writer) (*fleetConfig, error) {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &fleetConfig{startMax: 3 * time.Minute}
	fs.StringVar(&cfg.work, "work", "", "work `dir` (default: a fresh temp dir, removed after)")
	fs.IntVar(&cfg.n, "n", 50, "devices (livecgid processes)")
	fs.Float64Var(&cfg.hz, "hz", 10, "each device's bench sensor rate")
	fs.DurationVar(&cfg.d, "duration", 30*time.Second, "measured window")
	fs.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "wait after every device's first reading, before the window")
	fs.BoolVar(&cfg.asJSON, "json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.n < 1 || cfg.n > 999 || cfg.hz <= 0 || cfg.hz > 100 || cfg.d <= 0 || cfg.warmup < 0 {
		return nil, errors.New("want 1 ≤ -n ≤ 999, 0 < -hz ≤ 100 (one bench sensor), -duration > 0 and -warmup ≥ 0")
	}
	return cfg, nil
}

// device is one livecgid of the fleet.
type device struct {
	id     string
	cmd    *exec.Cmd
	stderr bytes.Buffer // livecgid's own; its log goes to its state dir
	done   chan struct{}
}

// exitErr says why a device's livecgid ended.
func (d *device) exitErr() error {
	return fmt.Errorf("livecgid %s exited (%v): %s", d.id, d.cmd.ProcessState, strings.TrimSpace(d.stderr.String()))
}

// fleetTally is what the subscriber saw; guarded by mu.
type fleetTally struct {
	mu       sync.Mutex
	win      window
	lat      hist
	messages uint64
	seen     map[string]int64  // device → send time of its last bench reading (µs)
	inWin    map[string]uint64 // device → bench readings sent in the window
	changed  chan struct{}     // a device's first reading, or one sent after the window
	bad      string            // the first bench payload that was not a number
}

func (t *fleetTally) receive(p *paho.Publish, now time.Time) {
	if p.Retain { // held by the broker from before: not a reading sent now
		return
	}
	us := now.UnixMicro()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.win.in(us) {
		t.messages++
	}
	dev, ok := strings.CutSuffix(p.Topic, "/"+fleetSensor)
	if !ok {
		return
	}
	dev = dev[strings.IndexByte(dev, '/')+1:]
	v, err := strconv.ParseFloat(string(p.Payload), 64)
	if err != nil {
		if t.bad == "" {
			t.bad = fmt.Sprintf("%s: %q", p.Topic, p.Payload)
		}
		return
	}
	sent := int64(v)
	last, known := t.seen[dev]
	t.seen[dev] = sent
	if t.win.in(sent) {
		t.lat.add(us - sent)
		t.inWin[dev]++
	}
	if to := t.win.to.Load(); !known || (t.win.from.Load() != 0 && sent >= to && last < to) {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
}

// count returns how many devices have a bench reading sent at or after
// us (0: any reading).
func (t *fleetTally) count(us int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, sent := range t.seen {
		if sent >= us {
			n++
		}
	}
	return n
}

func fleet(ctx context.Context, cfg *fleetConfig, log io.Writer) (res *FleetResult, err error) {
	for _, tool := range []string{"mosquitto", "go"} {
		if _, err := brokertest.Look(tool); err != nil {
			return nil, err
		}
	}
	work := cfg.work
	if work == "" {
		if work, err = os.MkdirTemp("", "livecgi-fleet-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(work)
	}
	if work, err = filepath.Abs(work); err != nil {
		return nil, err
	}
	bin := filepath.Join(work, "bin")
	fmt.Fprintf(log, "fleet: building into %s\n", bin)
	if err := goBuild(ctx, bin, goPkg{"./cmd/livecgid", "livecgid", ""}, goPkg{"./plugins/bench", "bench", ""}); err != nil {
		return nil, err
	}
	bdir := filepath.Join(work, "broker")
	if err := os.MkdirAll(bdir, 0o700); err != nil {
		return nil, err
	}
	broker, err := brokertest.New(bdir, brokertest.Options{})
	if err != nil {
		return nil, err
	}
	defer broker.Kill()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tally := &fleetTally{seen: map[string]int64{}, inWin: map[string]uint64{}, changed: make(chan struct{}, 1)}
	sub, err := subscribe(ctx, broker.Port, "livecgi/#", tally.receive)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	defer sub.Disconnect(&paho.Disconnect{ReasonCode: 0})

	devs, err := startFleet(work, bin, broker.URL, cfg)
	defer func() {
		k := stopFleet(devs)
		if res != nil {
			res.Killed = k
		}
		if err != nil && k > 0 {
			err = fmt.Errorf("%w; at the end %d livecgid did not end within 5 s of SIGTERM (killed)", err, k)
		}
	}()
	if err != nil {
		return nil, err
	}
	exited := make(chan *device, len(devs))
	for _, d := range devs {
		go func() {
			select {
			case <-d.done:
				exited <- d
			case <-ctx.Done():
			}
		}()
	}
	// wait returns when cond holds, a device ends, the subscriber loses
	// the broker, or limit passes.
	wait := func(what string, limit time.Duration, cond func() bool) error {
		timer := time.NewTimer(limit)
		defer timer.Stop()
		for !cond() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case d := <-exited:
				return d.exitErr()
			case <-sub.Done():
				return errors.New("the subscriber lost the broker")
			case <-timer.C:
				return fmt.Errorf("%s: not after %v", what, limit)
			case <-tally.changed:
			}
		}
		return nil
	}
	start := time.Now()
	if err := wait("every device's first "+fleetSensor, cfg.startMax, func() bool { return tally.count(0) == len(devs) }); err != nil {
		return nil, fmt.Errorf("%w (%d of %d devices delivered)", err, tally.count(0), len(devs))
	}
	fmt.Fprintf(log, "fleet: %d devices delivering after %v\n", len(devs), time.Since(start).Round(time.Millisecond))
	sleep(ctx, cfg.warmup)

	fs := procFS{"/proc"}
	pids := make([]int, len(devs))
	for i, d := range devs {
		pids[i] = d.cmd.Process.Pid
	}
	cpu0, plug0, _, err := fleetCPU(fs, pids)
	if err != nil {
		return nil, err
	}
	_, _, broker0, err := fs.stat(broker.PID())
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	_, _, self0, _ := fs.stat(os.Getpid())
	t0 := time.Now()
	tally.win.to.Store(t0.Add(cfg.d).UnixMicro())
	tally.win.from.Store(t0.UnixMicro())
	fmt.Fprintf(log, "fleet: measuring for %v\n", cfg.d)
	timer := time.NewTimer(cfg.d)
	select {
	case <-ctx.Done():
		timer.Stop()
		return nil, ctx.Err()
	case d := <-exited:
		timer.Stop()
		return nil, d.exitErr()
	case <-timer.C:
	}
	elapsed := time.Since(t0)
	cpu1, plug1, procs, err := fleetCPU(fs, pids)
	if err != nil {
		return nil, err
	}
	_, _, broker1, err := fs.stat(broker.PID())
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	_, _, self1, _ := fs.stat(os.Getpid())
	res = &FleetResult{Devices: len(devs), Hz: cfg.hz, Seconds: cfg.d.Seconds(), Procs: procs, Cores: runtime.NumCPU()}
	res.LoadAvg = loadAvg()
	res.RSSMedian, res.RSSMax, res.PluginRSS = fleetRSS(fs, pids)
	// Readings sent in the window still on their way: wait until every
	// device delivered one sent after it (per-device order holds through
	// the broker), or 10 s.
	end := tally.win.to.Load()
	if err := wait("a reading sent after the window from every device", 10*time.Second, func() bool { return tally.count(end) == len(devs) }); err != nil {
		fmt.Fprintf(log, "fleet: %v (%d of %d devices); counting what arrived\n", err, tally.count(end), len(devs))
	}

	tally.mu.Lock()
	defer tally.mu.Unlock()
	if tally.bad != "" {
		return nil, fmt.Errorf("a %s payload is not a number: %s", fleetSensor, tally.bad)
	}
	secs := elapsed.Seconds()
	res.PerDevice = map[string]uint64{}
	for _, d := range devs {
		n := tally.inWin[d.id]
		res.PerDevice[d.id] = n
		res.Received += n
		if n > 0 {
			res.Delivering++
		}
	}
	res.Expected = float64(len(devs)) * cfg.hz * cfg.d.Seconds()
	res.Missing = res.Expected - float64(res.Received)
	res.BenchRate = float64(res.Received) / cfg.d.Seconds()
	res.Messages = tally.messages
	res.MsgRate = float64(res.Messages) / cfg.d.Seconds()
	res.Latency = tally.lat.dist()
	pct := func(ticks int64) float64 { return float64(ticks) / clockTick / secs * 100 }
	res.DeviceCPU = pct(cpu1 - cpu0)
	res.PluginCPU = pct(plug1 - plug0)
	res.BrokerCPU = pct(broker1 - broker0)
	res.SubscriberCPU = pct(self1 - self0)
	if res.Received > 0 {
		res.CPUPerReading = float64(cpu1-cpu0) / clockTick * 1e6 / float64(res.Received)
	}
	if res.Messages > 0 {
		res.BrokerPerMsg = float64(broker1-broker0) / clockTick * 1e6 / float64(res.Messages)
	}
	return res, nil
}

// subscribe connects an MQTT 5 client to the broker on port and
// subscribes to filter at QoS 0; handle gets each message with the time
// it arrived.
func subscribe(ctx context.Context, port int, filter string, handle func(*paho.Publish, time.Time)) (*paho.Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	cli := paho.NewClient(paho.ClientConfig{
		ClientID: "livecgi-bench-fleet",
		Conn:     packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			handle(pr.Packet, time.Now())
			return true, nil
		}},
	})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Connect(cctx, &paho.Connect{ClientID: "livecgi-bench-fleet", KeepAlive: 30, CleanStart: true}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	if _, err := cli.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 0}}}); err != nil {
		cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
		return nil, fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	return cli, nil
}

// startFleet starts cfg.n supervisors, fleet-01…, each under work/<id>
// with its config (0600), state dir and a plugins dir holding only the
// bench plugin (a hard link to bin/bench); the devices started so far
// are returned with an error too.
func startFleet(work, bin, brokerURL string, cfg *fleetConfig) ([]*device, error) {
	var devs []*device
	width := max(2, len(strconv.Itoa(cfg.n)))
	for i := 1; i <= cfg.n; i++ {
		d := &device{id: fmt.Sprintf("fleet-%0*d", width, i), done: make(chan struct{})}
		dir := filepath.Join(work, d.id)
		state, plugins := filepath.Join(dir, "state"), filepath.Join(dir, "plugins")
		for _, p := range []string{state, plugins} {
			if err := os.MkdirAll(p, 0o700); err != nil {
				return devs, err
			}
		}
		if err := os.Link(filepath.Join(bin, "bench"), filepath.Join(plugins, "bench")); err != nil {
			if err := copyFile(filepath.Join(bin, "bench"), filepath.Join(plugins, "bench")); err != nil {
				return devs, err
			}
		}
		conf := filepath.Join(dir, "livecgi.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(
			"listen = 127.0.0.1:0\nstate_dir = %s\nplugins_dir = %s\nlog_level = warn\ndevice_id = %s\nmqtt_url = %s\n",
			state, plugins, d.id, brokerURL)), 0o600); err != nil {
			return devs, err
		}
		d.cmd = exec.Command(filepath.Join(bin, "livecgid"), "-config", conf)
		d.cmd.Env = append(os.Environ(), "LIVECGI_BENCH_HZ="+strconv.FormatFloat(cfg.hz, 'g', -1, 64))
		d.cmd.Stderr = &d.stderr
		if err := start(d.cmd); err != nil {
			return devs, err
		}
		devs = append(devs, d)
		go func() { d.cmd.Wait(); close(d.done) }()
	}
	return devs, nil
}

// stopFleet stops every device at once, waits for them and returns how
// many did not end within 5 s of SIGTERM (and were killed).
func stopFleet(devs []*device) int {
	var wg sync.WaitGroup
	var killed atomic.Int64
	for _, d := range devs {
		wg.Go(func() {
			if stopGroup(d.cmd.Process.Pid, d.done) {
				killed.Add(1)
			}
		})
	}
	wg.Wait()
	return int(killed.Load())
}

// fleetCPU returns the CPU ticks of every device's tree (livecgid, its
// plugins and the children it reaped), the plugins' part of them, and
// the number of processes.
func fleetCPU(fs procFS, pids []int) (total, plugins int64, procs int, err error) {
	for _, pid := range pids {
		u, err := fs.usage(pid, true)
		if err != nil {
			return 0, 0, 0, err
		}
		total += u.CPU
		procs += u.Procs
		for _, p := range u.List {
			if p.PID != pid {
				plugins += p.CPU
			}
		}
	}
	return total, plugins, procs, nil
}

// fleetRSS returns the median and largest RSS of the livecgid processes
// and the median RSS of their plugins, in kB.
func fleetRSS(fs procFS, pids []int) (median, largest, plugin int64) {
	var sup, plug []int64
	for _, pid := range pids {
		u, err := fs.usage(pid, true)
		if err != nil {
			continue
		}
		for _, p := range u.List {
			if p.PID == pid {
				sup = append(sup, p.RSS)
			} else {
				plug = append(plug, p.RSS)
			}
		}
	}
	mid := func(v []int64) int64 {
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	if len(sup) > 0 {
		largest = slices.Max(sup)
	}
	return mid(sup), largest, mid(plug)
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func printFleet(w io.Writer, r *FleetResult) {
	fmt.Fprintf(w, "## Fleet: %d devices × %g Hz into one Mosquitto, %gs\n\n", r.Devices, r.Hz, r.Seconds)
	fmt.Fprintf(w, "Every device is a livecgid with only the bench plugin (one %s sensor) and its broker bridge "+
		"(QoS 0, retained), no browser; one MQTT 5 subscriber on the same machine (%d cores; load average at the end %s). "+
		"Latency: the subscriber's receive time minus the reading's value (the plugin's send time, µs). "+
		"Device CPU: utime+stime of every livecgid and its plugin over the window.\n\n", fleetSensor, r.Cores, r.LoadAvg)
	fmt.Fprintf(w, "| Figure | Value |\n|---|---:|\n")
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "| %s | "+format+" |\n", append([]any{k}, a...)...) }
	row("devices delivering", "%d of %d", r.Delivering, r.Devices)
	row("bench readings/s through the broker", "%.0f", r.BenchRate)
	row("all messages/s (bench, livecgid.*, $meta, $state)", "%.0f", r.MsgRate)
	row("bench readings received / expected", "%d / %.0f (missing %.0f, %.2f %%)", r.Received, r.Expected, r.Missing, 100*r.Missing/r.Expected)
	row("latency p50 (sensor read → subscriber)", "%.2f ms", r.Latency.P50)
	row("latency p99", "%.2f ms", r.Latency.P99)
	row("latency max", "%.2f ms", r.Latency.Max)
	row("device CPU per bench reading (livecgid + plugin)", "%.1f µs", r.CPUPerReading)
	row("device CPU, all devices", "%.1f %% of a core (plugins %.1f %%)", r.DeviceCPU, r.PluginCPU)
	row("broker CPU", "%.1f %% of a core, %.1f µs per message", r.BrokerCPU, r.BrokerPerMsg)
	row("subscriber (this tool) CPU", "%.1f %% of a core", r.SubscriberCPU)
	row("livecgid RSS median / max", "%.1f / %.1f MB", float64(r.RSSMedian)/1024, float64(r.RSSMax)/1024)
	row("bench plugin RSS median", "%.1f MB", float64(r.PluginRSS)/1024)
	row("device processes", "%d", r.Procs)
	row("livecgid still running 5 s after SIGTERM (killed)", "%d", r.Killed)
}
