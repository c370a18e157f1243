package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// runSoak holds n livecgi clients for a long time (default 30 min) and
// samples the supervisor's tree every -every: goroutines (its livecgid.goroutines
// sensor, read by one more client), threads, fds, RSS and PSS of livecgid
// and the PSS of the tree. It ends
// with the first and the last sample after the warm-up side by side.
func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	work := fs.String("work", "", "work `dir` (default: a fresh temp dir, removed after)")
	n := fs.Int("n", 500, "clients")
	hz := fs.Float64("hz", 10, "sensor rate")
	d := fs.Duration("d", 30*time.Minute, "how long")
	every := fs.Duration("every", time.Minute, "sampling interval")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := newRig(ctx, *work, stderr)
	if err != nil {
		return err
	}
	defer r.close(*work == "")
	r.stopSupervisor()
	if err := r.setPlugins(*hz, "bench"); err != nil {
		return err
	}
	if _, err := r.firstContact(ctx, "bench."); err != nil {
		return err
	}
	st, err := control.Probe(ctx, r.state)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var goroutines atomic.Int64
	go r.watchGoroutines(ctx, &goroutines)
	samples := make(chan string, 1)
	go func() {
		var first string
		t := time.NewTicker(*every)
		defer t.Stop()
		fmt.Fprintln(stdout, "time      goroutines  threads  fds  livecgid_rss_kB  livecgid_pss_kB  tree_pss_kB")
		for {
			select {
			case <-ctx.Done():
				samples <- first
				return
			case <-t.C:
			}
			s := fmt.Sprintf("%10d  %s", goroutines.Load(), sample(st.PID))
			if first == "" {
				first = s
			}
			fmt.Fprintf(stdout, "%s  %s\n", time.Now().Format("15:04:05"), s)
		}
	}()
	l := Load{Mode: ModeLivecgi, URL: r.stubURL(), Clients: *n, Hz: *hz, Duration: *d, Warmup: 10 * time.Second, PID: st.PID}
	res, err := l.Run(ctx, stderr)
	cancel()
	first := <-samples
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "first sample: %s\nlast sample:  %10d  %s\n", first, goroutines.Load(), sample(st.PID))
	printResult(stdout, res)
	return nil
}

// watchGoroutines keeps g at the supervisor's livecgid.goroutines sensor,
// read by one more client.
func (r *rig) watchGoroutines(ctx context.Context, g *atomic.Int64) {
	doc, err := StubConnect(ctx, r.hc, r.stubURL(), r.origin())
	if err != nil {
		return
	}
	conn, err := dialWS(ctx, r.hc, doc.URL, r.origin(), doc.Protocol)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		if bytes.Contains(b, []byte(`"sensor":"livecgid.goroutines"`)) {
			if v, ok := numberAfter(b, `,"value":`); ok {
				g.Store(int64(v))
			}
		}
	}
}

// sample describes process pid and its tree in one line.
func sample(pid int) string {
	threads := "?"
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				threads = strings.TrimSpace(v)
			}
		}
	}
	fds, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	p := procFS{"/proc"}
	rss, pss, _, _ := p.smaps(pid)
	u, _ := p.usage(pid, false)
	return fmt.Sprintf("%7s  %4d  %15d  %15d  %11d", threads, len(fds), rss, pss, u.PSS)
}
