package main

// The churn mode of the soak (livecgi-bench soak -churn) brings what the
// field does to a supervisor that runs for months, all at once:
//
//   - churning clients (-churn-frac of -n) fetch a connect document from the
//     stub (a fresh token, as a browser does), hold the WebSocket for
//     -churn-every, then vanish without a close frame (the socket reset or
//     just closed, by turns) and come back;
//   - the bench plugin's binary is replaced by rename every -swap-every and
//     its process (a child of livecgid whose exe is the plugin) SIGKILLed
//     every -kill-every, half a period out of step;
//   - -flooders clients send -flood-hz frames a second, far over the rate
//     limit, and reconnect when closed;
//   - -bombers raw TCP connections to the WebSocket port send one endless
//     header line (at -bomb-rate KiB/s, or as fast as it goes), and
//     reconnect when closed.
//
// The other clients are the legitimate ones: each sample row says how many
// readings they received in the interval and how many of them received
// none (which should be 0), next to the events of the interval. The
// columns after livecgid's figures: clients (its livecgid.clients sensor),
// legit_readings, legit_silent, legit_drops (legitimate connections lost),
// churn_ok and churn_fail (churning clients' connects), swaps (renames
// done), swapped (the supervisor's "swapped" statuses), kills (SIGKILLs
// sent), restarts (growth of livecgid.plugin_restarts_total),
// flood_closes and bomb_ends (flooder and header bomb connections ended).
// The summary says how they ended: the close code, the HTTP status.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// churnConfig is the field a churn soak brings.
type churnConfig struct {
	frac       float64
	every      time.Duration // a churning client's connection lasts this long
	swapEvery  time.Duration
	killEvery  time.Duration
	flooders   int
	floodHz    float64
	bombers    int
	bombRate   int           // KiB/s per bomber; 0: as fast as the socket takes
	reconnects time.Duration // pause before a flooder, bomber or dropped client reconnects
}

func (c *churnConfig) flags(fs *flag.FlagSet) {
	fs.Float64Var(&c.frac, "churn-frac", 0.1, "churn: share of the clients that vanish without a close frame and reconnect")
	fs.DurationVar(&c.every, "churn-every", 10*time.Second, "churn: how long a churning client stays before vanishing")
	fs.DurationVar(&c.swapEvery, "swap-every", time.Minute, "churn: replace the plugin binary (by rename) this often; 0: never")
	fs.DurationVar(&c.killEvery, "kill-every", 5*time.Minute, "churn: SIGKILL the plugin process this often; 0: never")
	fs.IntVar(&c.flooders, "flooders", 1, "churn: clients sending far over the rate limit")
	fs.Float64Var(&c.floodHz, "flood-hz", 500, "churn: frames per second of each flooder")
	fs.IntVar(&c.bombers, "bombers", 1, "churn: raw connections sending an endless header line")
	fs.IntVar(&c.bombRate, "bomb-rate", 0, "churn: KiB/s each header bomber sends; 0: as fast as the socket takes")
	fs.DurationVar(&c.reconnects, "reconnect-pause", time.Second, "churn: pause before a flooder, bomber or dropped client reconnects")
}

func (c *churnConfig) check() error {
	if c.frac < 0 || c.frac >= 1 || c.every <= 0 || c.swapEvery < 0 || c.killEvery < 0 ||
		c.flooders < 0 || c.floodHz <= 0 || c.bombers < 0 || c.bombRate < 0 || c.reconnects < 0 {
		return errors.New("want 0 ≤ -churn-frac < 1, -churn-every > 0, -flood-hz > 0 and no negative period or count")
	}
	return nil
}

// churnStats counts what happened in a churn run. Counters only grow; the
// sampler prints their growth per interval.
type churnStats struct {
	churnOK, churnFail    atomic.Int64 // churning clients' connects
	legitDrops, legitFail atomic.Int64 // legitimate clients: connections lost, reconnects failed
	swaps, swapFail       atomic.Int64
	kills, killMiss       atomic.Int64 // killMiss: no plugin process found for a whole period
	floodConns, floodSent atomic.Int64
	floodLimited          atomic.Int64 // rate_limited errors the flooders received
	bombConns, bombFail   atomic.Int64
	bombBytes             atomic.Int64
	mu                    sync.Mutex
	floodCloses, bombEnds map[string]int // how flooder and bomber connections ended
	firstChurnErr         string
	legitErr, swapErr     string
}

func (s *churnStats) note(m map[string]int, key string) {
	s.mu.Lock()
	m[key]++
	s.mu.Unlock()
}

func (s *churnStats) noteErr(dst *string, err error) {
	s.mu.Lock()
	if *dst == "" {
		*dst = err.Error()
	}
	s.mu.Unlock()
}

func (s *churnStats) total(m map[string]int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (s *churnStats) tally(m map[string]int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tally(m)
}

// tally prints m as "key ×n, key ×n", sorted by key.
func tally(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%d", k, m[k])
	}
	return b.String()
}

// churn runs the churn soak against the supervisor livecgid (pid), w
// already watching it.
func (r *rig) churn(ctx context.Context, cfg *soakConfig, pid int, w *watcher, stdout, stderr io.Writer) error {
	c := cfg.c
	nChurn := int(float64(cfg.n)*c.frac + 0.5)
	nLegit := cfg.n - nChurn
	if nLegit < 1 {
		return errors.New("churn: no legitimate client left")
	}
	st := &churnStats{floodCloses: map[string]int{}, bombEnds: map[string]int{}}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// The legitimate clients connect first, 32 at a time.
	recv := make([]atomic.Int64, nLegit)
	start := time.Now()
	var connected atomic.Int64
	sem := make(chan struct{}, 32)
	var connecting sync.WaitGroup
	for i := range nLegit {
		sem <- struct{}{}
		connecting.Add(1)
		wg.Go(func() { r.legit(ctx, st, &recv[i], &connecting, sem, &connected, c.reconnects) })
	}
	connecting.Wait()
	fmt.Fprintf(stderr, "  %d/%d legitimate clients connected in %v\n", connected.Load(), nLegit, time.Since(start).Round(time.Millisecond))
	if connected.Load() == 0 {
		return fmt.Errorf("no legitimate client connected: %s", st.legitErr)
	}
	doc, err := StubConnect(ctx, r.hc, r.stubURL(), r.origin())
	if err != nil {
		return err
	}
	u, err := url.Parse(doc.URL)
	if err != nil {
		return fmt.Errorf("connect document: %w", err)
	}

	for i := range nChurn {
		wg.Go(func() { r.churner(ctx, st, c.every, i%2 == 0, time.Duration(rand.Int64N(int64(c.every)))) })
	}
	for range c.flooders {
		wg.Go(func() { r.flooder(ctx, st, c.floodHz, c.reconnects) })
	}
	for range c.bombers {
		wg.Go(func() { bomber(ctx, st, u.Host, c.bombRate, c.reconnects) })
	}
	if c.swapEvery > 0 {
		wg.Go(func() { r.swapper(ctx, st, c.swapEvery) })
	}
	if c.killEvery > 0 {
		wg.Go(func() { r.killer(ctx, st, pid, c.killEvery) })
	}
	fmt.Fprintf(stdout, "churn: %d legitimate clients, %d churning every %v, swap every %v, kill every %v, %d flooders at %g Hz, %d header bombers\n",
		nLegit, nChurn, c.every, c.swapEvery, c.killEvery, c.flooders, c.floodHz, c.bombers)

	// Per interval: the legitimate clients' readings and how many got
	// none, and the events.
	prev := make([]int64, nLegit)
	var intervals, silentIntervals, legitTotal int64
	var sampled time.Duration
	type counter struct {
		v    func() int64
		last int64
	}
	events := []*counter{
		{v: st.legitDrops.Load}, {v: st.churnOK.Load}, {v: st.churnFail.Load}, {v: st.swaps.Load},
		{v: func() int64 { return int64(w.state("swapped")) }}, {v: st.kills.Load}, {v: w.restarts.Load},
		{v: func() int64 { return int64(st.total(st.floodCloses)) }}, {v: func() int64 { return int64(st.total(st.bombEnds)) }},
	}
	for _, e := range events {
		e.last = e.v()
	}
	extraHeader := "  clients  legit_readings  legit_silent  legit_drops  churn_ok  churn_fail  swaps  swapped  kills  restarts  flood_closes  bomb_ends"
	widths := []int{11, 8, 10, 5, 7, 5, 8, 12, 9}
	extra := func(dt time.Duration) string {
		var got, silent int64
		for i := range recv {
			v := recv[i].Load()
			if v == prev[i] {
				silent++
			}
			got += v - prev[i]
			prev[i] = v
		}
		intervals++
		sampled += dt
		legitTotal += got
		if silent > 0 {
			silentIntervals++
		}
		row := fmt.Sprintf("  %7d  %14d  %12d", w.clients.Load(), got, silent)
		for i, e := range events {
			v := e.v()
			row += fmt.Sprintf("  %*d", widths[i], v-e.last)
			e.last = v
		}
		return row
	}
	var s sampler
	sctx, stopSampling := context.WithCancel(ctx)
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		s.run(sctx, stdout, cfg.every, pid, w, extraHeader, extra)
	}()
	// The run lasts d/every rows (at least one), then until says so.
	rows := max(1, int(cfg.d/cfg.every))
	for ctx.Err() == nil && (s.rows() < rows || cfg.until != nil && !cfg.until(st, w, s.rows())) {
		sleep(ctx, 100*time.Millisecond)
	}
	stopSampling()
	<-sampling
	if err := parent.Err(); err != nil {
		return err
	}
	cancel()
	wg.Wait()

	s.summary(stdout)
	exp := float64(nLegit) * cfg.hz * sampled.Seconds()
	fmt.Fprintf(stdout, "legitimate clients: %d readings in %d intervals (%.1f %% of %d × %g Hz), intervals with a silent client: %d, connections lost: %d, reconnects failed: %d%s\n",
		legitTotal, intervals, 100*float64(legitTotal)/max(exp, 1), nLegit, cfg.hz, silentIntervals, st.legitDrops.Load(), st.legitFail.Load(), firstErr(st.legitErr))
	fmt.Fprintf(stdout, "churn reconnects: %d ok, %d failed%s\n", st.churnOK.Load(), st.churnFail.Load(), firstErr(st.firstChurnErr))
	fmt.Fprintf(stdout, "plugin swaps: %d done, %d failed%s; the plugin's statuses: %s%s\n",
		st.swaps.Load(), st.swapFail.Load(), firstErr(st.swapErr), w.tally(), w.reason("swap_failed"))
	fmt.Fprintf(stdout, "plugin kills: %d done, %d periods without a plugin process; livecgid.plugin_restarts_total %d\n",
		st.kills.Load(), st.killMiss.Load(), w.restarts.Load())
	fmt.Fprintf(stdout, "flooders: %d connections, %d frames sent, %d rate_limited errors back; connections ended: %s\n",
		st.floodConns.Load(), st.floodSent.Load(), st.floodLimited.Load(), st.tally(st.floodCloses))
	fmt.Fprintf(stdout, "header bombers: %d connections (%d failed), %d MB sent; connections ended: %s\n",
		st.bombConns.Load(), st.bombFail.Load(), st.bombBytes.Load()>>20, st.tally(st.bombEnds))
	fmt.Fprintf(stdout, "watcher client: %d connections lost\n", w.drops.Load())
	return nil
}

// firstErr formats the first error of a kind, if there was one.
func firstErr(err string) string {
	if err == "" {
		return ""
	}
	return " (first: " + err + ")"
}

// connectWS does what a page does: a connect document from the stub, then
// the WebSocket, dialled through hc.
func (r *rig) connectWS(ctx context.Context, hc *http.Client) (*websocket.Conn, error) {
	doc, err := StubConnect(ctx, r.hc, r.stubURL(), r.origin())
	if err != nil {
		return nil, err
	}
	return dialWS(ctx, hc, doc.URL, r.origin(), doc.Protocol)
}

// legit is one legitimate client: it counts the bench readings it receives
// into recv, and reconnects when it loses its connection. Its first
// connect (or failure) is signalled through connecting and sem.
func (r *rig) legit(ctx context.Context, st *churnStats, recv *atomic.Int64, connecting *sync.WaitGroup, sem chan struct{}, connected *atomic.Int64, pause time.Duration) {
	conn, err := r.connectWS(ctx, r.hc)
	if err == nil {
		connected.Add(1)
	}
	<-sem
	connecting.Done()
	for {
		if err == nil {
			err = readFrames(ctx, conn, func(b []byte) {
				if _, ok := parseReading(b, "bench."); ok {
					recv.Add(1)
				}
			})
			conn.CloseNow()
			if ctx.Err() != nil {
				return
			}
			st.legitDrops.Add(1)
			st.noteErr(&st.legitErr, fmt.Errorf("lost: %w", err))
		} else {
			if ctx.Err() != nil {
				return
			}
			st.legitFail.Add(1)
			st.noteErr(&st.legitErr, err)
		}
		sleep(ctx, pause)
		conn, err = r.connectWS(ctx, r.hc)
	}
}

// readFrames hands every frame to handle until the connection or ctx ends.
func readFrames(ctx context.Context, conn *websocket.Conn, handle func([]byte)) error {
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		handle(b)
	}
}

// churner connects, stays for every, vanishes without a close frame (a
// reset when rst, else a plain close of the socket), and again, first
// waiting offset so that the churning clients spread over the period.
func (r *rig) churner(ctx context.Context, st *churnStats, every time.Duration, rst bool, offset time.Duration) {
	sleep(ctx, offset)
	for ctx.Err() == nil {
		var mu sync.Mutex
		var raw net.Conn
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			mu.Lock()
			raw = c
			mu.Unlock()
			return c, err
		}}}
		conn, err := r.connectWS(ctx, hc)
		if err != nil {
			if ctx.Err() == nil {
				st.churnFail.Add(1)
				st.noteErr(&st.firstChurnErr, err)
				sleep(ctx, every)
			}
			continue
		}
		st.churnOK.Add(1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			readFrames(ctx, conn, func([]byte) {})
		}()
		sleep(ctx, every)
		mu.Lock()
		if tc, ok := raw.(*net.TCPConn); ok && rst {
			tc.SetLinger(0) // close sends RST
		}
		if raw != nil {
			raw.Close()
		}
		mu.Unlock()
		<-done
		conn.CloseNow()
		rst = !rst
	}
}

// floodFrame is a command for no command: small, answered with an error
// when it passes the rate limit.
var floodFrame = []byte(`{"type":"command","id":"f","name":"bench.flood","args":{}}`)

// flooder sends hz frames a second until the supervisor closes it, notes
// how the connection ended, and reconnects.
func (r *rig) flooder(ctx context.Context, st *churnStats, hz float64, pause time.Duration) {
	for ctx.Err() == nil {
		conn, err := r.connectWS(ctx, r.hc)
		if err != nil {
			if ctx.Err() == nil {
				st.note(st.floodCloses, "connect failed")
				sleep(ctx, pause)
			}
			continue
		}
		st.floodConns.Add(1)
		ended := make(chan error, 1)
		go func() {
			ended <- readFrames(ctx, conn, func(b []byte) {
				if bytes.Contains(b, []byte(`"code":"rate_limited"`)) {
					st.floodLimited.Add(1)
				}
			})
		}()
		t := time.NewTicker(time.Duration(float64(time.Second) / hz))
		var end error
	send:
		for {
			select {
			case end = <-ended:
				break send
			case <-t.C:
				if err := conn.Write(ctx, websocket.MessageText, floodFrame); err != nil {
					// The reader sees how it ended (a close frame, a reset).
					conn.CloseNow()
					end = <-ended
					break send
				}
				st.floodSent.Add(1)
			}
		}
		t.Stop()
		conn.CloseNow()
		if ctx.Err() != nil {
			return
		}
		if code := websocket.CloseStatus(end); code != -1 {
			st.note(st.floodCloses, "close "+strconv.Itoa(int(code)))
		} else {
			st.note(st.floodCloses, "no close frame")
		}
		sleep(ctx, pause)
	}
}

// bomber opens raw connections to addr and sends one endless header line
// on each (at kibps KiB/s, or as fast as it goes) until the supervisor
// ends it; it notes how (the status line of an answer, else the error)
// and reconnects.
func bomber(ctx context.Context, st *churnStats, addr string, kibps int, pause time.Duration) {
	chunk := bytes.Repeat([]byte("a"), 32<<10)
	var gap time.Duration
	if kibps > 0 {
		gap = time.Duration(float64(time.Second) * 32 / float64(kibps))
	}
	for ctx.Err() == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() == nil {
				st.bombFail.Add(1)
				sleep(ctx, pause)
			}
			continue
		}
		st.bombConns.Add(1)
		stop := context.AfterFunc(ctx, func() { c.Close() })
		_, err = c.Write([]byte("GET /?token=x HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nX-Bomb: "))
		for err == nil {
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			var n int
			n, err = c.Write(chunk)
			st.bombBytes.Add(int64(n))
			if gap > 0 && err == nil {
				sleep(ctx, gap)
			}
		}
		stop()
		if ctx.Err() != nil {
			c.Close()
			return
		}
		st.note(st.bombEnds, bombEnd(c, err))
		c.Close()
		sleep(ctx, pause)
	}
}

// bombEnd says how a header bomb connection ended: the status of the
// answer it got, if any, else the write error.
func bombEnd(c net.Conn, werr error) string {
	if errors.Is(werr, os.ErrDeadlineExceeded) {
		return "stalled 30s"
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 64)
	n, _ := io.ReadFull(c, b[:12]) // "HTTP/1.1 431"
	if n == 12 && bytes.HasPrefix(b, []byte("HTTP/1.")) {
		return "HTTP " + string(b[9:12])
	}
	switch {
	case errors.Is(werr, syscall.ECONNRESET):
		return "reset"
	case errors.Is(werr, syscall.EPIPE):
		return "closed"
	}
	return werr.Error()
}

// swapper replaces the bench plugin's binary every period, by writing a
// copy beside it and renaming it over it, as a careful deploy does.
func (r *rig) swapper(ctx context.Context, st *churnStats, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// copyFile writes bench.tmp (not a plugin name) and renames it.
		if err := copyFile(filepath.Join(r.bin, "bench"), filepath.Join(r.plugins, "bench")); err != nil {
			st.swapFail.Add(1)
			st.noteErr(&st.swapErr, err)
			continue
		}
		st.swaps.Add(1)
	}
}

// killer SIGKILLs the bench plugin's process every period, starting half
// a period in (between swaps rather than on them: their periods are often
// multiples); while none runs (a restart under way), it looks again until
// the period is over.
func (r *rig) killer(ctx context.Context, st *churnStats, supervisor int, every time.Duration) {
	sleep(ctx, every/2)
	t := time.NewTicker(every)
	defer t.Stop()
	exe := filepath.Join(r.plugins, "bench")
	for ctx.Err() == nil {
		killed := false
		for end := time.Now().Add(every); ctx.Err() == nil && time.Now().Before(end); sleep(ctx, 100*time.Millisecond) {
			if pid := pluginPID(procFS{"/proc"}, supervisor, exe); pid > 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = true
				st.kills.Add(1)
				break
			}
		}
		if !killed && ctx.Err() == nil {
			st.killMiss.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// pluginPID finds the child of supervisor running exe: the one whose
// binary is still in place if there are two (a swap under way).
func pluginPID(p procFS, supervisor int, exe string) int {
	ents, _ := os.ReadDir(p.root)
	found := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, _, err := p.stat(pid); err != nil || ppid != supervisor {
			continue
		}
		link, err := os.Readlink(filepath.Join(p.root, e.Name(), "exe"))
		if err != nil {
			continue
		}
		if link == exe {
			return pid
		}
		if strings.TrimSuffix(link, " (deleted)") == exe {
			found = pid
		}
	}
	return found
}
