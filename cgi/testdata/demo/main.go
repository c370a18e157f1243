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
	index := `<!doctype html><title>livecgi demo</title>
<p><a href="/cgi-bin/live.cgi">Dashboard</a> (live.cgi)</p>
<p>Readings through the client in a page of the device:</p><pre id="out"></pre>
<script src="/cgi-bin/live.cgi?client.js"></script>
<script>
LiveCGI.connect().on("reading", (r) => { document.getElementById("out").textContent = r.sensor + " = " + r.value; });
</script>
`
	os.WriteFile(filepath.Join(www, "index.html"), []byte(index), 0o644)

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
	cmd := exec.Command(*httpd, "httpd", "-f", "-vv", "-p", "127.0.0.1:"+strconv.Itoa(*port), "-h", www)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start busybox httpd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Printf("\nOpen http://127.0.0.1:%d/cgi-bin/live.cgi (dashboard)\n  or http://127.0.0.1:%d/ (a page using the client)\n"+
		"Logs: %s/{livecgid.log,live.cgi.log}. Ctrl-C stops httpd and the supervisor.\n\n", *port, *port, state)

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
