package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// soakConfig is what a soak run does; runSoak fills it from flags.
type soakConfig struct {
	work     string
	n        int
	hz       float64
	d, every time.Duration
	churn    bool
	c        churnConfig
	// until, if set, keeps a churn run going past d until it returns true,
	// given what happened so far and the number of sample rows (tests:
	// until every kind of event happened once).
	until func(st *churnStats, w *watcher, rows int) bool
}

// runSoak holds n livecgi clients for a long time (default 30 min) and
// samples the supervisor's tree every -every: goroutines (its livecgid.goroutines
// sensor, read by one more client), threads, fds, RSS and PSS of livecgid
// and the PSS of the tree. With -churn the field comes along too (see
// churn.go). It ends with the first, last and largest value of each figure,
// flagging growth.
func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseSoak(args, stderr)
	if err != nil {
		return err
	}
	return soak(ctx, cfg, stdout, stderr)
}

func parseSoak(args []string, stderr io.Writer) (*soakConfig, error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &soakConfig{}
	fs.StringVar(&cfg.work, "work", "", "work `dir` (default: a fresh temp dir, removed after)")
	fs.IntVar(&cfg.n, "n", 500, "clients")
	fs.Float64Var(&cfg.hz, "hz", 10, "sensor rate")
	fs.DurationVar(&cfg.d, "d", 30*time.Minute, "how long")
	fs.DurationVar(&cfg.every, "every", time.Minute, "sampling interval")
	fs.BoolVar(&cfg.churn, "churn", false, "add the field: clients vanishing without a close frame, plugin swaps and kills, a flooder, a header bomber")
	cfg.c.flags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.n < 1 || cfg.hz <= 0 || cfg.d <= 0 || cfg.every <= 0 {
		return nil, fmt.Errorf("want -n ≥ 1, -hz > 0, -d and -every > 0")
	}
	return cfg, cfg.c.check()
}

func soak(ctx context.Context, cfg *soakConfig, stdout, stderr io.Writer) error {
	r, err := newRig(ctx, cfg.work, 250*time.Millisecond, stderr)
	if err != nil {
		return err
	}
	defer r.close(cfg.work == "")
	r.stopSupervisor()
	if err := r.setPlugins(cfg.hz, "bench"); err != nil {
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
	w := &watcher{states: map[string]int{}, reasons: map[string]string{}}
	go r.watch(ctx, w)
	if cfg.churn {
		return r.churn(ctx, cfg, st.PID, w, stdout, stderr)
	}
	var s sampler
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx, stdout, cfg.every, st.PID, w, "", nil)
	}()
	l := Load{Mode: ModeLivecgi, URL: r.stubURL(), Clients: cfg.n, Hz: cfg.hz, Duration: cfg.d, Warmup: 10 * time.Second, PID: st.PID}
	res, err := l.Run(ctx, stderr)
	cancel()
	<-done
	if err != nil {
		return err
	}
	s.summary(stdout)
	printResult(stdout, res)
	return nil
}

// watcher is what one more client sees of the supervisor: its built-in
// sensors and the status frames of the bench plugin.
type watcher struct {
	goroutines, clients, restarts atomic.Int64
	drops                         atomic.Int64 // the watcher's own connection lost
	mu                            sync.Mutex
	states                        map[string]int    // bench plugin: status frames by state
	reasons                       map[string]string // the first reason given for each state
}

// tally lists the plugin's statuses seen, by state.
func (w *watcher) tally() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return tally(w.states)
}

// reason formats the first reason given for state, if any.
func (w *watcher) reason(state string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return firstErr(w.reasons[state])
}

func (w *watcher) state(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.states[s]
}

// watch keeps one client connected (again after a drop) and feeds w.
func (r *rig) watch(ctx context.Context, w *watcher) {
	for ctx.Err() == nil {
		r.watchOnce(ctx, w)
		if ctx.Err() == nil {
			w.drops.Add(1)
			sleep(ctx, time.Second)
		}
	}
}

func (r *rig) watchOnce(ctx context.Context, w *watcher) {
	doc, err := StubConnect(ctx, r.hc, r.stubURL(), r.origin())
	if err != nil {
		return
	}
	conn, err := dialWS(ctx, r.hc, doc.URL, r.origin(), doc.Protocol)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	gauges := []struct {
		key string
		v   *atomic.Int64
	}{
		{`"sensor":"livecgid.goroutines"`, &w.goroutines},
		{`"sensor":"livecgid.clients"`, &w.clients},
		{`"sensor":"livecgid.plugin_restarts_total"`, &w.restarts},
	}
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		for _, g := range gauges {
			if bytes.Contains(b, []byte(g.key)) {
				if v, ok := numberAfter(b, `,"value":`); ok {
					g.v.Store(int64(v))
				}
			}
		}
		if bytes.HasPrefix(b, []byte(`{"type":"status"`)) {
			var s struct{ Plugin, State, Reason string }
			if json.Unmarshal(b, &s) == nil && s.Plugin == "bench" {
				w.mu.Lock()
				w.states[s.State]++
				if w.reasons[s.State] == "" {
					w.reasons[s.State] = s.Reason
				}
				w.mu.Unlock()
			}
		}
	}
}

// procSample is one sample of livecgid and its tree.
type procSample struct {
	goroutines, threads, fds, rss, pss, treePSS int64
}

// figures names the fields of procSample for the summary, with the growth
// that counts as more than noise on top of a quarter of the first value.
var figures = []struct {
	name  string
	slack int64
	get   func(procSample) int64
}{
	{"goroutines", 32, func(s procSample) int64 { return s.goroutines }},
	{"threads", 4, func(s procSample) int64 { return s.threads }},
	{"fds", 16, func(s procSample) int64 { return s.fds }},
	{"livecgid_rss_kB", 4096, func(s procSample) int64 { return s.rss }},
	{"livecgid_pss_kB", 4096, func(s procSample) int64 { return s.pss }},
	{"tree_pss_kB", 4096, func(s procSample) int64 { return s.treePSS }},
}

// takeSample reads process pid and its tree; figures it cannot read are -1.
func takeSample(pid int, goroutines int64) procSample {
	s := procSample{goroutines: goroutines, threads: -1, fds: -1, rss: -1, pss: -1, treePSS: -1}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				s.threads, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	if fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd")); err == nil {
		s.fds = int64(len(fds))
	}
	p := procFS{"/proc"}
	if rss, pss, _, err := p.smaps(pid); err == nil {
		s.rss, s.pss = rss, pss
	}
	if u, err := p.usage(pid, false); err == nil {
		s.treePSS = u.PSS
	}
	return s
}

const sampleHeader = "time      goroutines  threads   fds  livecgid_rss_kB  livecgid_pss_kB  tree_pss_kB"

func (s procSample) String() string {
	return fmt.Sprintf("%10d  %7d  %4d  %15d  %15d  %11d", s.goroutines, s.threads, s.fds, s.rss, s.pss, s.treePSS)
}

// sampler prints a row every interval and keeps the samples.
type sampler struct {
	mu      sync.Mutex
	samples []procSample
}

// run prints header and a row every interval until ctx ends; extra, if
// set, appends the columns named in extraHeader, given the interval's
// length.
func (s *sampler) run(ctx context.Context, out io.Writer, every time.Duration, pid int, w *watcher, extraHeader string, extra func(time.Duration) string) {
	t := time.NewTicker(every)
	defer t.Stop()
	fmt.Fprintln(out, sampleHeader+extraHeader)
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p := takeSample(pid, w.goroutines.Load())
			row := now.Format("15:04:05") + "  " + p.String()
			if extra != nil {
				row += extra(now.Sub(last))
			}
			last = now
			s.mu.Lock()
			s.samples = append(s.samples, p)
			s.mu.Unlock()
			fmt.Fprintln(out, row)
		}
	}
}

func (s *sampler) rows() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.samples)
}

// summary prints the first, last and largest value of each figure, and
// GROWING where even the lowest value of the second half of the run is
// well above the first (a leak raises the floor; a passing peak does not).
func (s *sampler) summary(out io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		fmt.Fprintln(out, "no samples (-every longer than the run)")
		return
	}
	first, last := s.samples[0], s.samples[len(s.samples)-1]
	for _, f := range figures {
		mx, floor := f.get(first), f.get(last)
		for i, p := range s.samples {
			mx = max(mx, f.get(p))
			if i >= len(s.samples)/2 {
				floor = min(floor, f.get(p))
			}
		}
		fmt.Fprintf(out, "%s: first %d last %d max %d %s\n", f.name, f.get(first), f.get(last), mx, trend(f.get(first), floor, f.slack))
	}
}

// trend says whether floor grew from first by more than slack plus a quarter.
func trend(first, floor, slack int64) string {
	if first < 0 || floor < 0 {
		return "?"
	}
	if floor > first+slack+first/4 {
		return "GROWING"
	}
	return "flat"
}
