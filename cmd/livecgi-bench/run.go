package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

const usage = `usage: livecgi-bench <command> [flags]

commands:
  load        run N clients against one server and print what they saw
  serve-bare  run the bare coder/websocket broadcast server
  compare     build and run livecgi, websocketd, long polling and the bare
              server side by side; write a markdown table and an SVG plot
  soak        hold N livecgi clients for a long time, sampling the server;
              with -churn also clients vanishing, plugin swaps and kills,
              a flooder and a header bomber
  report      render compare.md and the plots again from results.json
  idle        what the tree costs with no client: cold first contact, CPU
              and memory over a minute, a new client's first reading
  fleet       N supervisors (default 50), each with its own device_id and a
              10 Hz bench sensor, bridged into one Mosquitto: readings/s
              through the broker, latency sensor → subscriber (p50/p99),
              missing readings, device CPU per reading, broker CPU, RSS
              (make bench-fleet; needs mosquitto; BENCHFLAGS="-n 20 -duration 1m")
  rbe         report by exception and demand per sensor, two builds
              interleaved (-before 955293f, -after the working tree): the
              system plugin with -n browsers (10) and the MQTT bridge to a
              real Mosquitto; tree CPU, bytes to the browsers, messages to
              the broker, reading latency (needs mosquitto; run from the
              module root)
  records     no browser: tree CPU with 5 recorded sensors at 10 s and 3
              alarms, then with nothing configured

Run a command with -h for its flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	raiseFileLimit()
	switch args[0] {
	case "load":
		return runLoad(ctx, args[1:], stdout, stderr)
	case "serve-bare":
		return runBare(ctx, args[1:], stdout, stderr)
	case "compare":
		return runCompare(ctx, args[1:], stdout, stderr)
	case "soak":
		return runSoak(ctx, args[1:], stdout, stderr)
	case "report":
		return runReport(args[1:], stderr)
	case "idle":
		return runIdle(ctx, args[1:], stdout, stderr)
	case "fleet":
		return runFleet(ctx, args[1:], stdout, stderr)
	case "rbe":
		return runRBE(ctx, args[1:], stdout, stderr)
	case "records":
		return runRecords(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// raiseFileLimit lifts the soft fd limit to the hard one, explicitly, so
// the servers this tool starts inherit it too (Go raises its own limit at
// start but restores the old one for children it execs).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var l Load
	fs.StringVar(&l.Mode, "mode", ModeLivecgi, "livecgi, websocketd, long-poll or bare")
	fs.StringVar(&l.URL, "url", "", "stub URL (livecgi), ws URL (websocketd, bare, livecgi with -secret-file) or CGI URL (long-poll)")
	fs.StringVar(&l.SecretFile, "secret-file", "", "livecgi: mint tokens with this secret (the state dir's secret) instead of asking the stub")
	fs.StringVar(&l.Origin, "origin", "", "livecgi: Origin header (default http://<url host>)")
	fs.IntVar(&l.Clients, "n", 10, "clients")
	fs.Float64Var(&l.Hz, "hz", 10, "readings per second the sensor sends (for the delivered ratio)")
	fs.DurationVar(&l.Duration, "d", 10*time.Second, "measured window")
	fs.DurationVar(&l.Warmup, "warmup", time.Second, "wait between the last connect and the window")
	fs.IntVar(&l.PID, "pid", 0, "root `pid` of the server's process tree (memory and CPU); 0: none")
	stateDir := fs.String("state-dir", "", "livecgi: take -pid from the supervisor's control socket in this dir")
	fs.StringVar(&l.Prefix, "prefix", "bench.", "count readings of sensors whose id starts with this")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *stateDir != "" && l.PID == 0 {
		st, err := control.Probe(ctx, *stateDir)
		if err != nil {
			return fmt.Errorf("find the supervisor: %w", err)
		}
		l.PID = st.PID
	}
	res, err := l.Run(ctx, stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printResult(stdout, res)
	return nil
}

func printResult(w io.Writer, r *Result) {
	fmt.Fprintf(w, "%s: %d/%d clients at %g Hz for %gs\n", r.Mode, r.Connected, r.Clients, r.Hz, r.Seconds)
	if r.Stub.N > 0 {
		fmt.Fprintf(w, "  stub ?connect  p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", r.Stub.P50, r.Stub.P99, r.Stub.Max)
	}
	if r.Connect.N > 0 {
		fmt.Fprintf(w, "  connect        p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", r.Connect.P50, r.Connect.P99, r.Connect.Max)
	}
	fmt.Fprintf(w, "  latency (µs)   p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	fmt.Fprintf(w, "  latency (t)    p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n", r.LatencyT.P50, r.LatencyT.P90, r.LatencyT.P99, r.LatencyT.Max)
	fmt.Fprintf(w, "  delivered      %d of %.0f (%.1f %%), %.0f msgs/s, %d failures %s\n", r.Received, r.Expected, 100*r.Delivered, r.MsgsPerSec, r.Failures, r.FailureMsg)
	if r.Before.Procs > 0 {
		fmt.Fprintf(w, "  server before  %d procs  RSS %d kB  PSS %d kB\n", r.Before.Procs, r.Before.RSS, r.Before.PSS)
		fmt.Fprintf(w, "  server after   %d procs  RSS %d kB  PSS %d kB  (%.1f kB PSS per client)\n", r.After.Procs, r.After.RSS, r.After.PSS, r.PerClientPSS)
		fmt.Fprintf(w, "  server CPU     %.1f %% of a core, %.2f µs per message; load tool %.1f %%\n", r.ServerCPU, r.CPUPerMsg, r.LoadCPU)
	}
}

func runBare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve-bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "listen `address`")
	b := &Bare{}
	fs.Float64Var(&b.Hz, "hz", 10, "readings per second")
	fs.IntVar(&b.Queue, "queue", 16, "frames queued per client before dropping")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	// The first line is what scripts wait for.
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	fmt.Fprintln(stderr, b)
	return b.Serve(ctx, ln)
}

func runReport(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("out", "cmd/livecgi-bench/results", "`dir` holding results.json; the renderings are written beside it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(*dir, "results.json"))
	if err != nil {
		return err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	return writeReport(*dir, &rep)
}
