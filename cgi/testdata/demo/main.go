// Command demo runs live.cgi under busybox httpd on this machine, for a
// person to try: `make demo` builds everything, lays out bin/demo and runs
// this. It writes the config (state in <dir>/state, plugins and livecgid
// from -bin, WebSocket on a free port of 127.0.0.1) unless the person
// edited it, lays out an exec dir with a sensor and a command the first
// time, starts busybox httpd in the foreground on -port, prints the URL
// to open and where things are, and on Ctrl-C stops httpd and the
// supervisor (found through its control socket).
//
// Binaries of another architecture (make demo TARGET=armv7) run through
// qemu-user, which binfmt_misc must have registered (make demo does it as
// root: cmd/livecgi-bench/binfmt.sh).
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// execFiles is the exec dir the demo starts with: a sensor and a command
// made of shell one-liners, so that every machine has something to
// command (most VMs and containers have no LEDs).
//
//go:embed exec.d
var execFiles embed.FS

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
	livecgid, execDir, confPath := filepath.Join(binAbs, "livecgid"), filepath.Join(demo, "exec.d"), filepath.Join(demo, "livecgi.conf")
	qemu, err := foreign(livecgid)
	if err != nil {
		return err
	}
	// auth = none makes every visitor a viewer; the demo opens its
	// commands to them (cgi/README.md, "Who can do what").
	conf := fmt.Sprintf("state_dir = %s\nplugins_dir = %s\nsupervisor = %s\nexec_dir = %s\nlisten = 127.0.0.1:0\nlog_level = debug\n"+
		"auth = none\ncommand_role = leds.set_brightness viewer\ncommand_role = leds.set_trigger viewer\ncommand_role = exec.set_message viewer\n",
		state, filepath.Join(binAbs, "plugins"), livecgid, execDir)
	if qemu != "" {
		conf += "# The binaries run under qemu-user: a slower start.\nstart_timeout = 20s\n"
	}
	// What make demo wrote before its files had a sum: unedited, it is
	// make demo's to update.
	earlier := fmt.Sprintf("# Written by make demo.\nstate_dir = %s\nplugins_dir = %s\nsupervisor = %s\nlisten = 127.0.0.1:0\nlog_level = debug\n"+
		"auth = none\ncommand_role = leds.set_brightness viewer\ncommand_role = leds.set_trigger viewer\n",
		state, filepath.Join(binAbs, "plugins"), livecgid)
	written, err := writeConfig(confPath, conf, earlier)
	if err != nil {
		return err
	}
	if err := layOutExec(execDir); err != nil {
		return err
	}
	// The stub and the supervisor refuse what others could replace; a
	// umask of 002 leaves the build group-writable.
	plugins, _ := filepath.Glob(filepath.Join(binAbs, "plugins", "*"))
	confs, _ := filepath.Glob(filepath.Join(execDir, "*"))
	for _, p := range append(append(plugins, confs...), demo, binAbs, filepath.Join(binAbs, "plugins"), livecgid, confPath, execDir) {
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
	// The URL is printed once httpd answers on it.
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(*port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("busybox httpd exited: %v", err)
		default:
		}
		if time.Now().After(end) {
			cmd.Process.Kill()
			return fmt.Errorf("busybox httpd does not answer on port %d: %v", *port, err)
		}
	}
	how := "yours: make demo keeps an edited file; delete it to get make demo's again"
	if written {
		how = "written by make demo; edit it (it is read on every request): make demo keeps an edited file"
	}
	fmt.Printf("\nOpen http://127.0.0.1:%d/ (the dashboard and an embedding example)\n"+
		"Config: %s\n  %s\n"+
		"Exec dir: %s\n  a sensor and a command from shell one-liners (exec.message, exec.set_message);\n"+
		"  add a NAME.conf there and it appears on the page at once (plugins/exec/README.md)\n"+
		"Plugins: %s\n  drop a plugin binary here (install -m 0755 myplugin %s/): it appears on the page at once\n"+
		"Logs: %s/{livecgid.log,live.cgi.log}\n",
		*port, confPath, how, execDir, filepath.Join(binAbs, "plugins"), filepath.Join(binAbs, "plugins"), state)
	if qemu != "" {
		fmt.Printf("Binaries: %s, run by %s through binfmt_misc\n", *bin, qemu)
	}
	fmt.Printf("Ctrl-C stops httpd and the supervisor.\n\n")

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

// writeConfig writes conf to path, with a first line holding its sum,
// unless path holds a file that does not match its own sum line (the
// person edited it, or wrote it) nor equals earlier: that one is kept. It
// reports whether it wrote.
func writeConfig(path, conf, earlier string) (bool, error) {
	const mark = "# Written by make demo, sum "
	sum := func(body string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(body)))[:16] }
	body := "# make demo updates this file as long as it is not edited; once you\n" +
		"# edit it, make demo keeps it (delete it to get make demo's again).\n" + conf
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, err
	default:
		first, rest, _ := strings.Cut(string(old), "\n")
		if s, ok := strings.CutPrefix(first, mark); (!ok || s != sum(rest)) && string(old) != earlier {
			return false, nil // edited: the person's
		}
	}
	return true, os.WriteFile(path, []byte(mark+sum(body)+"\n"+body), 0o644)
}

// layOutExec creates dir with the demo's exec confs, unless it exists:
// then it is the person's, confs added, edited or removed alike.
func layOutExec(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files, _ := fs.Glob(execFiles, "exec.d/*")
	for _, f := range files {
		b, _ := execFiles.ReadFile(f)
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// qemuNames are the binfmt_misc entries of Debian's qemu-user-static for
// the machines Go builds for.
var qemuNames = map[elf.Machine]string{elf.EM_ARM: "qemu-arm", elf.EM_AARCH64: "qemu-aarch64", elf.EM_RISCV: "qemu-riscv64"}

// foreign returns the qemu that runs bin when bin is not built for this
// machine ("" when it is), or an error when binfmt_misc does not run it.
func foreign(bin string) (string, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return "", fmt.Errorf("%v: build it with make demo", err)
	}
	m, name := f.Machine, qemuNames[f.Machine]
	if m == elf.EM_MIPS && f.ByteOrder.String() == "LittleEndian" {
		name = "qemu-mipsel"
	}
	f.Close()
	native := map[string]elf.Machine{"amd64": elf.EM_X86_64, "386": elf.EM_386, "arm": elf.EM_ARM, "arm64": elf.EM_AARCH64, "riscv64": elf.EM_RISCV}
	if native[runtime.GOARCH] == m {
		return "", nil
	}
	if name == "" {
		return "", fmt.Errorf("%s is built for %v, which this demo cannot run here", bin, m)
	}
	if b, err := os.ReadFile("/proc/sys/fs/binfmt_misc/" + name); err != nil || !bytes.HasPrefix(b, []byte("enabled")) {
		return "", fmt.Errorf("%s is built for %v: this machine runs it only through %s-static registered with binfmt_misc, which it is not: "+
			"as root, apt-get install qemu-user-static and sh cmd/livecgi-bench/binfmt.sh (make demo does it when run as root)", bin, m, name)
	}
	return name + "-static", nil
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
<p>Add a sensor or a command from a program you have: a <code>NAME.conf</code> in the exec
directory <code>make demo</code> printed (it holds two to start from; see plugins/exec/README.md).
Add a plugin: copy its binary into the plugins directory it printed (see plugins/README.md).
Either appears on the dashboard without a restart.</p>
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
