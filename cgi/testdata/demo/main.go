// Command demo runs live.cgi under busybox httpd on this machine, for a
// person to try: `make demo` builds everything, lays out bin/demo and runs
// this. It writes the config (state in <dir>/state, plugins and livecgid
// from -bin, WebSocket on a free port of 127.0.0.1), starts busybox httpd
// in the foreground on -port, prints the URL to open, and on Ctrl-C stops
// httpd and the supervisor (found through its control socket).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "bin", "`dir` holding livecgid and plugins/")
	dir := flag.String("dir", "bin/demo", "demo `dir`: livecgi.conf, state/, www/cgi-bin/live.cgi")
	port := flag.Int("port", 8080, "httpd port on 127.0.0.1; 0 picks a free one")
	httpd := flag.String("busybox", "busybox", "busybox binary")
	flag.Parse()
	binAbs, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	demo, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	www, state := filepath.Join(demo, "www"), filepath.Join(demo, "state")
	stub := filepath.Join(www, "cgi-bin", "live.cgi")
	if _, err := os.Stat(stub); err != nil {
		return fmt.Errorf("%v: build it with make demo", err)
	}
	// auth = none makes every visitor a viewer; the demo opens its LED
	// commands to them (README.md, "Who can do what").
	conf := fmt.Sprintf("# Written by make demo.\nstate_dir = %s\nplugins_dir = %s\nsupervisor = %s\nlisten = 127.0.0.1:0\nlog_level = debug\n"+
		"auth = none\ncommand_role = leds.set_brightness viewer\ncommand_role = leds.set_trigger viewer\n",
		state, filepath.Join(binAbs, "plugins"), filepath.Join(binAbs, "livecgid"))
	if err := os.WriteFile(filepath.Join(demo, "livecgi.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	// The stub and the supervisor refuse what others could replace; a
	// umask of 002 leaves the build group-writable.
	plugins, _ := filepath.Glob(filepath.Join(binAbs, "plugins", "*"))
	for _, p := range append(plugins, demo, binAbs, filepath.Join(binAbs, "plugins"), filepath.Join(binAbs, "livecgid"), filepath.Join(demo, "livecgi.conf")) {
		if fi, err := os.Stat(p); err == nil {
			os.Chmod(p, fi.Mode().Perm()&^0o022)
		}
	}
	for name, page := range map[string]string{"index.html": indexPage, "embed.html": embedPage} {
		if err := os.WriteFile(filepath.Join(www, name), []byte(page), 0o644); err != nil {
			return err
		}
	}

	if *port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		*port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go watchParent(ctx, cancel)
	cmd := exec.Command(*httpd, "httpd", "-f", "-vv", "-p", "127.0.0.1:"+strconv.Itoa(*port), "-h", www)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start busybox httpd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Printf("\nOpen http://127.0.0.1:%d/ (the dashboard and an embedding example)\n"+
		"Plugins: %s\n  drop a plugin binary here (install -m 0755 myplugin %s/): it appears on the page at once\n"+
		"Logs: %s/{livecgid.log,live.cgi.log}\nCtrl-C stops httpd and the supervisor.\n\n",
		*port, filepath.Join(binAbs, "plugins"), filepath.Join(binAbs, "plugins"), state)

	select {
	case err = <-exited:
		err = fmt.Errorf("busybox httpd exited: %v", err)
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}
	stopSupervisor(state)
	return err
}

// watchParent cancels when the parent (make) is told to stop. GNU make
// does not pass a SIGINT or SIGTERM sent to it alone on to its recipe: it
// sets the signal back to its default action and waits for the recipe to
// end. So the parent's caught-signal mask losing SIGINT or SIGTERM, or a
// new parent, means stop.
func watchParent(ctx context.Context, cancel func()) {
	const fatal = 1<<(syscall.SIGINT-1) | 1<<(syscall.SIGTERM-1)
	ppid := os.Getppid()
	was := caught(ppid) & fatal
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if os.Getppid() != ppid || caught(ppid)&was != was {
			cancel()
			return
		}
	}
}

// caught is the mask of signals process pid handles (SigCgt in
// /proc/pid/status; bit n-1 for signal n).
func caught(pid int) uint64 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigCgt:"); ok {
			m, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return m
		}
	}
	return 0
}

// stopSupervisor asks the supervisor behind the control socket to stop,
// and kills it if it has not within 5 s.
func stopSupervisor(state string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := control.Probe(ctx, state)
	if err != nil {
		return // none running
	}
	p, _ := os.FindProcess(st.PID)
	p.Signal(syscall.SIGTERM)
	for i := 0; i < 50; i++ {
		if err := p.Signal(syscall.Signal(0)); err != nil { // os.ErrProcessDone
			fmt.Printf("supervisor pid %d stopped\n", st.PID)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.Kill()
	fmt.Printf("supervisor pid %d killed\n", st.PID)
}

// indexPage is the demo's landing page.
const indexPage = `<!doctype html>
<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>livecgi demo</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}code{background:#eee;padding:0 .2em}</style>
<h1>livecgi demo</h1>
<p>busybox httpd serves this directory and runs <code>cgi-bin/live.cgi</code>, the
livecgi stub, as a plain CGI. The first request started the supervisor
(<code>livecgid</code>) and its plugins, which read this machine's real sensors.</p>
<ul>
<li><a href="/cgi-bin/live.cgi">The dashboard</a>: every sensor and plugin, live (served by live.cgi itself).</li>
<li><a href="/embed.html">Embedding example</a>: an ordinary page of the device showing two
readings through <code>live.cgi?client.js</code>, with the connection state
(view its source).</li>
</ul>
<p>Add a plugin: copy its binary into the plugins directory <code>make demo</code> printed;
it appears on the dashboard without a restart. See plugins/README.md.</p>
`

// embedPage shows the client in a page of the device, with sensors every
// Linux machine has.
const embedPage = `<!doctype html>
<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>livecgi embedding example</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}b{font-size:1.5em}</style>
<p><a href="/">livecgi demo</a></p>
<h1>Embedding example</h1>
<p>Load (1 min): <b id="load">…</b> &nbsp; Uptime: <b id="uptime">…</b></p>
<p>Connection: <span id="state">connecting</span> <span id="error"></span></p>
<script src="/cgi-bin/live.cgi?client.js"></script>
<script>
  const $ = (id) => document.getElementById(id);
  const live = LiveCGI.connect({stub: "/cgi-bin/live.cgi", sensors: ["system.load1", "system.uptime_seconds"]});
  live.on("reading", (r) => {
    if (r.sensor === "system.load1") $("load").textContent = r.value.toFixed(2);
    if (r.sensor === "system.uptime_seconds") $("uptime").textContent = Math.floor(r.value / 3600) + " h " + Math.floor(r.value / 60) % 60 + " min";
  });
  live.on("state", (s) => {
    $("state").textContent = s.state + (s.retryIn ? " (retry in " + Math.round(s.retryIn / 1000) + " s)" : "");
    if (s.state === "live") $("error").textContent = "";
  });
  live.on("error", (e) => { $("error").textContent = e.code + ": " + e.message; });
</script>
`
