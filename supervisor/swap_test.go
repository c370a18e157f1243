package supervisor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
)

// Hot-swap, supervision and trust, with real plugin processes: the test
// binary copied into the plugins directory, each copy with a trailer that
// sets its mode and version (see readTrailer).

// setTiming changes the delays of the supervisors t starts from now on
// (startSup); other tests' supervisors keep theirs.
func setTiming(t testing.TB, f func(*timing)) {
	tm := defaultTiming()
	if v, ok := testTimings.Load(t); ok {
		tm = *v.(*timing)
	}
	f(&tm)
	testTimings.Store(t, &tm)
	t.Cleanup(func() { testTimings.Delete(t) })
}

var testTimings sync.Map // testing.TB → *timing

var (
	exeOnce  sync.Once
	exeBytes []byte
	exeErr   error
)

// helperBinary returns a copy of the test binary with a trailer giving
// mode (empty: from the file name) and version. Version may be followed
// by more trailer words: "2 extra=id" adds a sensor id.
func helperBinary(t testing.TB, mode, version string) []byte {
	t.Helper()
	exeOnce.Do(func() {
		var exe string
		if exe, exeErr = os.Executable(); exeErr == nil {
			exeBytes, exeErr = os.ReadFile(exe)
		}
	})
	if exeErr != nil {
		t.Fatal(exeErr)
	}
	b := slices.Clip(exeBytes)
	return append(b, fmt.Sprintf("%smode=%s version=%s\n", trailerTag, mode, version)...)
}

// writeHelper writes a helper binary to path with exactly perm (no umask).
func writeHelper(t testing.TB, path string, perm os.FileMode, mode, version string) []byte {
	t.Helper()
	b := helperBinary(t, mode, version)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return b
}

// deployMv deploys the safe way: write a dotfile in the plugins
// directory, then mv it over the name (a lone CREATE).
func deployMv(t testing.TB, dir, name string, perm os.FileMode, mode, version string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".new")
	writeHelper(t, tmp, perm, mode, version)
	if out, err := exec.Command("mv", tmp, filepath.Join(dir, name)).CombinedOutput(); err != nil {
		t.Fatalf("mv: %v: %s", err, out)
	}
}

// deployInstall deploys with GNU install (REMOVE, CREATE, WRITEs, CHMOD).
func deployInstall(t testing.TB, dir, name, mode, version string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	writeHelper(t, src, 0o644, mode, version)
	if out, err := exec.Command("install", "-m", "0755", src, filepath.Join(dir, name)).CombinedOutput(); err != nil {
		t.Fatalf("install: %v: %s", err, out)
	}
}

// pluginPids returns the live child processes running the plugin file path.
func pluginPids(path string) []int {
	var out []int
	for _, pid := range children() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if arg0, _, _ := strings.Cut(string(b), "\x00"); arg0 == path {
			out = append(out, pid)
		}
	}
	return out
}

// status waits for a status of plugin in state whose reason holds reason.
func status(c *tclient, plugin, state, reason string) map[string]any {
	c.t.Helper()
	return c.next(plugin+" "+state+" "+reason, func(m map[string]any) bool {
		return m["type"] == "status" && m["plugin"] == plugin && m["state"] == state && strings.Contains(fmt.Sprint(m["reason"]), reason)
	})
}

// firstStatus returns the next status of plugin, whatever its state.
func firstStatus(c *tclient, plugin string) map[string]any {
	c.t.Helper()
	return c.next("a status of "+plugin, is("status", "plugin", plugin))
}

// quiet reads c's frames for d and fails on any status of the plugins
// matched by which.
func quiet(c *tclient, d time.Duration, which func(plugin string) bool) {
	c.t.Helper()
	end := time.After(d)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				c.t.Fatalf("connection ended: %v", <-c.err)
			}
			if m["type"] == "status" && which(fmt.Sprint(m["plugin"])) {
				c.t.Errorf("unexpected status %v", m)
			}
		case <-end:
			return
		}
	}
}

// count returns the next reading of sensor with its value.
func count(c *tclient, sensor string) float64 {
	c.t.Helper()
	m := c.next("reading of "+sensor, is("reading", "sensor", sensor))
	v, _ := m["value"].(float64)
	return v
}

// lightClient is a WebSocket client cheap enough to run hundreds of: it
// decodes status frames only and counts the rest.
type lightClient struct {
	conn      *websocket.Conn
	swaps     atomic.Int32 // "swapped" statuses of the watched plugin
	sinceSwap atomic.Int32 // readings of the swapped-in process since the last of them
	reads     atomic.Int32 // all readings
	mu        sync.Mutex
	version   string   // of the last "swapped" status
	others    []string // any other status of the watched plugin
	err       error    // set when the connection ended
}

func dialLight(ts *testSup, plugin string, sensors []string) (*lightClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, ts.url(ts.origin()), &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol}, HTTPHeader: http.Header{"Origin": {ts.origin()}},
	})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	lc := &lightClient{conn: conn}
	b, _ := json.Marshal(wire.Subscribe{Type: "subscribe", Sensors: sensors})
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		conn.CloseNow()
		return nil, err
	}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				lc.mu.Lock()
				lc.err = err
				lc.mu.Unlock()
				return
			}
			switch {
			case bytes.HasPrefix(b, []byte(`{"type":"reading"`)):
				lc.reads.Add(1)
				// The helper's label is "n=<count> <version>", every 5th
				// count: a slow client may get only some of them
				// (coalesced), but each says which process sent it.
				if _, v, ok := bytes.Cut(b, []byte(`"value":"n=`)); ok {
					v, _, _ = bytes.Cut(v, []byte(`"`))
					_, ver, _ := bytes.Cut(v, []byte(" "))
					lc.mu.Lock()
					if string(ver) == lc.version {
						lc.sinceSwap.Add(1)
					}
					lc.mu.Unlock()
				}
			case bytes.HasPrefix(b, []byte(`{"type":"status"`)):
				var st wire.Status
				json.Unmarshal(b, &st)
				if st.Plugin != plugin {
					continue
				}
				if st.State == wire.StateSwapped {
					lc.mu.Lock()
					lc.version = st.Version
					lc.sinceSwap.Store(0)
					lc.mu.Unlock()
					lc.swaps.Add(1)
				} else {
					lc.mu.Lock()
					lc.others = append(lc.others, st.State+": "+st.Reason)
					lc.mu.Unlock()
				}
			}
		}
	}()
	return lc, nil
}

func (lc *lightClient) ended() error {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.err
}

// timedReading is a reading of the counter as one client saw it arrive.
type timedReading struct {
	at    time.Time
	value float64
}

// TestSwapUnderLoad replaces a plugin binary 20 times, alternating mv over
// and install, with 200 clients connected: nobody is disconnected, every
// client sees each swap as exactly one "swapped" status, and readings
// resume after each. It logs the gap in readings around the swaps.
func TestSwapUnderLoad(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	const name, swaps, clients = "helper_counter", 20, 200
	ts := startSup(t, func(c *config.Config) {
		writeHelper(t, filepath.Join(c.PluginsDir, name), 0o755, "counter", "0")
	})
	c := ts.dial(t)
	online(c, name)

	// The measuring client sees every counter reading (every 20 ms) and
	// stamps it on arrival.
	var (
		mmu     sync.Mutex
		mreads  []timedReading
		mswaps  []wire.Status
		mclosed error
	)
	mc := ts.dial(t)
	mc.send(wire.Subscribe{Type: "subscribe", Sensors: []string{name + ".count"}})
	go func() {
		for m := range mc.in {
			now := time.Now()
			mmu.Lock()
			switch {
			case m["type"] == "reading" && m["sensor"] == name+".count":
				mreads = append(mreads, timedReading{now, m["value"].(float64)})
			case m["type"] == "status" && m["plugin"] == name:
				mswaps = append(mswaps, wire.Status{State: fmt.Sprint(m["state"]), Version: fmt.Sprint(m["version"]), PreviousVersion: fmt.Sprint(m["previous_version"])})
			}
			mmu.Unlock()
		}
		mmu.Lock()
		mclosed = <-mc.err
		mmu.Unlock()
	}()

	lights := make([]*lightClient, clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var dialErr atomic.Value
	for i := range lights {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			lc, err := dialLight(ts, name, []string{name + ".label"})
			if err != nil {
				dialErr.Store(err)
				return
			}
			lights[i] = lc
		})
	}
	wg.Wait()
	if err := dialErr.Load(); err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		for _, lc := range lights {
			lc.conn.CloseNow()
		}
	})
	waitWithin(t, time.Minute, "every client reading", func() bool {
		for _, lc := range lights {
			if lc.reads.Load() == 0 {
				return false
			}
		}
		return true
	})

	for i := 1; i <= swaps; i++ {
		v := strconv.Itoa(i)
		if i%2 == 1 {
			deployMv(t, ts.dir, name, 0o755, "counter", v)
		} else {
			deployInstall(t, ts.dir, name, "counter", v)
		}
		// 200 clients on a loaded machine: the limit only bounds a failure.
		waitWithin(t, time.Minute, fmt.Sprintf("swap %d seen by every client, with a reading of the new process", i), func() bool {
			for _, lc := range lights {
				if lc.swaps.Load() < int32(i) || lc.sinceSwap.Load() == 0 {
					return false
				}
			}
			return true
		})
	}
	for i, lc := range lights {
		if err := lc.ended(); err != nil {
			t.Fatalf("client %d disconnected: %v", i, err)
		}
		if n := lc.swaps.Load(); n != swaps {
			t.Errorf("client %d saw %d swapped statuses, want %d", i, n, swaps)
		}
		lc.mu.Lock()
		if len(lc.others) > 0 {
			t.Errorf("client %d saw other statuses: %q", i, lc.others)
		}
		lc.mu.Unlock()
	}
	if n := ts.hub.ClientCount(); n != clients+2 {
		t.Errorf("%d clients connected, want %d", n, clients+2)
	}
	waitFor(t, "replaced processes to exit", func() bool { return len(pluginPids(filepath.Join(ts.dir, name))) == 1 })

	mmu.Lock()
	defer mmu.Unlock()
	if mclosed != nil {
		t.Fatalf("measuring client disconnected: %v", mclosed)
	}
	if len(mswaps) != swaps {
		t.Fatalf("measuring client saw %d statuses, want %d: %v", len(mswaps), swaps, mswaps)
	}
	for i, st := range mswaps {
		if st.State != wire.StateSwapped || st.Version != "v-counter-"+strconv.Itoa(i+1) || st.PreviousVersion != "v-counter-"+strconv.Itoa(i) {
			t.Errorf("status %d = %+v, want swapped v-counter-%d → v-counter-%d", i+1, st, i, i+1)
		}
	}
	// A new process counts from 1 again: the gap around a swap is from
	// the old process's last reading to the new one's first.
	var gaps []time.Duration
	for i := 1; i < len(mreads); i++ {
		if mreads[i].value < mreads[i-1].value {
			gaps = append(gaps, mreads[i].at.Sub(mreads[i-1].at))
		}
	}
	if len(gaps) != swaps {
		t.Fatalf("saw the counter restart %d times, want %d", len(gaps), swaps)
	}
	slices.Sort(gaps)
	t.Logf("gap in readings around %d swaps (%d clients, readings every 20ms): median %v, max %v, min %v",
		swaps, clients, gaps[len(gaps)/2], gaps[len(gaps)-1], gaps[0])
}

// TestArrivals covers each way a binary arrives in the plugins directory.
func TestArrivals(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	ts := startSup(t, nil)
	c := ts.dial(t)
	c.next("hello", is("hello"))
	dir := ts.dir
	wait := 4 * 150 * time.Millisecond // 4 × settle

	// A dot-named temp file renamed into place: one new plugin.
	deployMv(t, dir, "alpha", 0o755, "counter", "1")
	if st := firstStatus(c, "alpha"); st["state"] != wire.StateOnline || st["version"] != "v-counter-1" {
		t.Fatalf("first status of alpha = %v, want online v-counter-1", st)
	}
	count(c, "alpha.count")

	// mv over a running binary (a lone CREATE): swapped.
	src := filepath.Join(t.TempDir(), "alpha")
	writeHelper(t, src, 0o755, "counter", "2")
	if out, err := exec.Command("mv", src, filepath.Join(dir, "alpha")).CombinedOutput(); err != nil {
		t.Fatalf("mv: %v: %s", err, out)
	}
	if st := firstStatus(c, "alpha"); st["state"] != wire.StateSwapped || st["version"] != "v-counter-2" || st["previous_version"] != "v-counter-1" {
		t.Fatalf("status after mv over = %v", st)
	}

	// GNU install over it: one swap, not a removal and a new plugin.
	deployInstall(t, dir, "alpha", "counter", "3")
	if st := firstStatus(c, "alpha"); st["state"] != wire.StateSwapped || st["version"] != "v-counter-3" {
		t.Fatalf("status after install = %v", st)
	}
	count(c, "alpha.count")

	// A binary with other descriptors: swapped, then a hello with them.
	deployMv(t, dir, "alpha", 0o755, "counter", "3x extra=more")
	if st := firstStatus(c, "alpha"); st["state"] != wire.StateSwapped || st["version"] != "v-counter-3x" {
		t.Fatalf("status after a swap with new descriptors = %v", st)
	}
	if h := c.next("hello with the new descriptors", is("hello")); !strings.Contains(fmt.Sprint(h["sensors"]), "alpha.more") {
		t.Errorf("hello after the swap lacks alpha.more: %v", h["sensors"])
	}

	// cp over the running binary fails; the old process keeps serving.
	src = filepath.Join(t.TempDir(), "alpha")
	writeHelper(t, src, 0o755, "counter", "4")
	var pids []int
	waitFor(t, "the replaced alpha processes to exit", func() bool {
		pids = pluginPids(filepath.Join(dir, "alpha"))
		return len(pids) == 1
	})
	out, err := exec.Command("cp", src, filepath.Join(dir, "alpha")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Text file busy") {
		t.Fatalf("cp over a running binary: %v: %s; want Text file busy", err, out)
	}
	quiet(c, wait, func(p string) bool { return p == "alpha" })
	count(c, "alpha.count")
	if now := pluginPids(filepath.Join(dir, "alpha")); len(pids) != 1 || !slices.Equal(now, pids) {
		t.Errorf("alpha processes %v after the failed cp, want %v", now, pids)
	}

	// A slow writer to a new name: hundreds of writes, with a pause
	// half-way until livecgid has looked at the file. The half-written
	// file (executable from the start) must never start.
	bin := helperBinary(t, "counter", "slow")
	f, err := os.OpenFile(filepath.Join(dir, "bravo"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	const chunks = 300
	step := len(bin)/chunks + 1
	for i := 0; i < len(bin); i += step {
		if _, err := f.Write(bin[i:min(i+step, len(bin))]); err != nil {
			t.Fatal(err)
		}
		if i/step == chunks/2 {
			waitFor(t, "the half-written file looked at", func() bool {
				return strings.Contains(ts.logs.String(), `msg="plugin file not loaded" file=bravo`)
			})
		} else {
			time.Sleep(2 * time.Millisecond)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if st := firstStatus(c, "bravo"); st["state"] != wire.StateOnline || st["version"] != "v-counter-slow" {
		t.Fatalf("first status of bravo = %v, want online", st)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, `msg="plugin file not loaded" file=bravo reason="not a complete ELF binary`) &&
		!strings.Contains(logs, `msg="plugin file not loaded" file=bravo reason="truncated ELF binary"`) {
		t.Errorf("log does not show the half-written file was looked at and left alone")
	}
	if strings.Contains(logs, "plugin=bravo err=") {
		t.Errorf("a start of the half-written bravo was attempted:\n%s", logs)
	}
	count(c, "bravo.count")

	// A file made executable later: nothing until chmod +x.
	deployMv(t, dir, "charlie", 0o644, "counter", "1")
	quiet(c, wait, func(p string) bool { return p == "charlie" })
	if err := os.Chmod(filepath.Join(dir, "charlie"), 0o755); err != nil {
		t.Fatal(err)
	}
	if st := firstStatus(c, "charlie"); st["state"] != wire.StateOnline {
		t.Fatalf("first status of charlie = %v, want online", st)
	}

	// Dotfiles, editor and temp files are ignored, executable or not.
	for _, n := range []string{".hidden", "alpha~", "alpha.swp", "#alpha#", "delta.tmp"} {
		writeHelper(t, filepath.Join(dir, n), 0o755, "counter", "x")
	}
	quiet(c, wait, func(p string) bool { return p != "alpha" && p != "bravo" && p != "charlie" && p != builtinPlugin })
	if n := len(children()); n != 3 {
		t.Errorf("%d plugin processes, want 3 (alpha, bravo, charlie)", n)
	}

	// Removal: the plugin stops, its sensors are gone.
	bravo := pluginPids(filepath.Join(dir, "bravo"))
	if err := os.Remove(filepath.Join(dir, "bravo")); err != nil {
		t.Fatal(err)
	}
	if st := firstStatus(c, "bravo"); st["state"] != wire.StateRemoved {
		t.Fatalf("status after rm = %v, want removed", st)
	}
	hello := c.next("hello after the removal", is("hello"))
	if s := fmt.Sprint(hello["sensors"]); strings.Contains(s, "bravo.") || !strings.Contains(s, "alpha.count") {
		t.Errorf("hello after removing bravo lists sensors %s", s)
	}
	waitFor(t, "bravo's process to exit", func() bool {
		return len(bravo) == 1 && len(pluginPids(filepath.Join(dir, "bravo"))) == 0 && processGone(bravo[0])
	})
	if n := len(children()); n != 2 {
		t.Errorf("%d plugin processes, want 2 (alpha, charlie)", n)
	}
}

// processGone reports whether pid has exited (a zombie counts as gone).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// TestBrokenSwapKeepsOld swaps in binaries that cannot take over: the old
// process keeps serving and clients are told why.
func TestBrokenSwapKeepsOld(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	setTiming(t, func(tm *timing) { tm.host.Describe = 500 * time.Millisecond })
	const name = "helper_counter"
	ts := startSup(t, func(c *config.Config) {
		writeHelper(t, filepath.Join(c.PluginsDir, name), 0o755, "counter", "good")
	})
	c := ts.dial(t)
	online(c, name)
	pids := pluginPids(filepath.Join(ts.dir, name))
	if len(pids) != 1 {
		t.Fatalf("plugin pids %v", pids)
	}
	last := count(c, name+".count")
	tests := []struct {
		name, mode string
		perm       os.FileMode
		reason     string
	}{
		{"not executable", "counter", 0o644, "not executable"},
		{"crashes in handshake", "crash", 0o755, "handshake"},
		{"garbage on stdout", "garbage", 0o755, "handshake"},
		{"Describe times out", "nodescribe", 0o755, "describe: no answer within 500ms"},
		{"bad descriptors", "baddesc", 0o755, `sensor id "Bad-Id"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			deployMv(t, ts.dir, name, tt.perm, tt.mode, strconv.Itoa(i))
			st := firstStatus(c, name)
			if st["state"] != wire.StateSwapFailed || !strings.Contains(fmt.Sprint(st["reason"]), tt.reason) || st["version"] != "v-counter-good" {
				t.Fatalf("status = %v, want swap_failed with %q, still v-counter-good", st, tt.reason)
			}
			// Same process, counting on.
			if v := count(c, name+".count"); v <= last {
				t.Errorf("counter went from %v to %v: the old process did not keep serving", last, v)
			} else {
				last = v
			}
			if now := pluginPids(filepath.Join(ts.dir, name)); !slices.Equal(now, pids) {
				t.Errorf("plugin processes %v, want %v", now, pids)
			}
		})
	}
	c.t = t
	// A good binary after all that swaps in.
	deployInstall(t, ts.dir, name, "counter", "fixed")
	if st := firstStatus(c, name); st["state"] != wire.StateSwapped || st["previous_version"] != "v-counter-good" || st["version"] != "v-counter-fixed" {
		t.Fatalf("status = %v, want swapped from v-counter-good to v-counter-fixed", st)
	}
	waitFor(t, "only the new process", func() bool {
		now := pluginPids(filepath.Join(ts.dir, name))
		return len(now) == 1 && now[0] != pids[0]
	})
}

// TestCommandsDuringSwap keeps commands in flight across a swap: each ends
// on the old process or the new one, or fails with a clear error.
func TestCommandsDuringSwap(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	const name = "helper_counter"
	ts := startSup(t, func(c *config.Config) {
		writeHelper(t, filepath.Join(c.PluginsDir, name), 0o755, "counter", "old")
		// 250 ms commands with room for a loaded machine (-race, two
		// suites at once): a second was seen to be too little.
		c.CommandTimeout = 2 * time.Second
	})
	c := ts.dial(t)
	online(c, name)

	results := map[string]map[string]any{}
	collect := func(want int) {
		for len(results) < want {
			m := c.next("a result", is("result"))
			id := fmt.Sprint(m["id"])
			if results[id] != nil {
				t.Errorf("second result for %s: %v", id, m)
			}
			results[id] = m
		}
	}
	c.send(wire.CommandMsg{Type: "command", ID: "block", Name: name + ".block"})
	sent := 1
	swapped := false
	stop := time.After(3 * time.Second)
	tick := time.NewTicker(60 * time.Millisecond)
	defer tick.Stop()
loop:
	for i := 0; ; i++ {
		select {
		case <-stop:
			break loop
		case <-tick.C:
		}
		c.send(wire.CommandMsg{Type: "command", ID: fmt.Sprint("s", i), Name: name + ".sleep", Args: map[string]any{"ms": 250}})
		sent++
		if i == 5 {
			deployMv(t, ts.dir, name, 0o755, "counter", "new")
			swapped = true
		}
	}
	if !swapped {
		t.Fatal("no swap")
	}
	collect(sent)
	versions := map[string]int{}
	for id, m := range results {
		if id == "block" {
			// It never answers: the old process is stopped after the
			// command timeout, and the client is told.
			if m["ok"] != false || !strings.Contains(fmt.Sprint(m["error"]), "did not answer within 2s") {
				t.Errorf("block: %v", m)
			}
			continue
		}
		if m["ok"] != true {
			t.Errorf("%s failed during the swap: %v", id, m)
			continue
		}
		versions[fmt.Sprint(m["value"].(map[string]any)["version"])]++
	}
	if versions["old"] == 0 || versions["new"] == 0 {
		t.Errorf("results by version %v: want some from each process", versions)
	}
	t.Logf("%d commands across the swap: %v", sent, versions)
	if !strings.Contains(fmt.Sprint(ts.logs.String()), "plugin swapped") {
		t.Error("no swap logged")
	}
}

// TestKilledPluginRestarts kills a plugin with SIGKILL three times:
// clients see offline → restarting → online each time, the backoff
// doubles, and the restart times are logged.
func TestKilledPluginRestarts(t *testing.T) {
	const name = "helper_counter"
	ts := startSup(t, nil, "counter")
	c := ts.dial(t)
	online(c, name)
	count(c, name+".count")
	path := filepath.Join(ts.dir, name)
	var times []string
	for i, backoff := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second} {
		pids := pluginPids(path)
		if len(pids) != 1 {
			t.Fatalf("plugin pids %v", pids)
		}
		t0 := time.Now()
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var seen []string
		for len(seen) < 3 {
			st := firstStatus(c, name)
			seen = append(seen, fmt.Sprint(st["state"]))
			if st["state"] == wire.StateRestarting && st["reason"] != "restart in "+backoff.String() {
				t.Errorf("kill %d: restarting reason %q, want restart in %v", i+1, st["reason"], backoff)
			}
		}
		if want := []string{wire.StateOffline, wire.StateRestarting, wire.StateOnline}; !slices.Equal(seen, want) {
			t.Fatalf("kill %d: states %v, want %v", i+1, seen, want)
		}
		// The new process counts from 1 again.
		c.next("a reading of the new process", func(m map[string]any) bool {
			return m["type"] == "reading" && m["sensor"] == name+".count" && m["value"].(float64) < 10
		})
		d := time.Since(t0)
		if d < backoff {
			t.Errorf("kill %d: back after %v, before its backoff %v", i+1, d, backoff)
		}
		times = append(times, fmt.Sprintf("%v (backoff %v)", d.Round(time.Millisecond), backoff))
		if now := pluginPids(path); len(now) != 1 || now[0] == pids[0] {
			t.Errorf("kill %d: plugin pids %v after restart (killed %d)", i+1, now, pids[0])
		}
	}
	t.Logf("kill -9 to first reading of the new process: %s", strings.Join(times, ", "))
	// The killed processes' sockets were removed; the live one's is there.
	waitFor(t, "one plugin socket", func() bool {
		socks, _ := filepath.Glob(filepath.Join(ts.config().StateDir, control.SocketDir, "plugin*"))
		return len(socks) == 1
	})
	if got := ts.plugins.Restarts(); got != 3 {
		t.Errorf("restarts = %d, want 3", got)
	}
}

// pluginInfo returns what the hub says of plugin id.
func pluginInfo(ts *testSup, id string) wire.PluginInfo {
	return ts.hub.Plugin(id)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestTrust refuses binaries and directories others could write to,
// binaries of other owners and binaries off the SHA-256 allowlist, and
// loads them once fixed.
func TestTrust(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	t.Run("modes and owner", func(t *testing.T) {
		ts := startSup(t, nil)
		c := ts.dial(t)
		c.next("hello", is("hello"))
		path := filepath.Join(ts.dir, "helper_trust")

		deployMv(t, ts.dir, "helper_trust", 0o775, "counter", "1")
		st := status(c, "helper_trust", wire.StateRefused, "writable by group or others")
		if !strings.Contains(fmt.Sprint(st["reason"]), path) {
			t.Errorf("reason %q does not name the file", st["reason"])
		}
		if !strings.Contains(ts.logs.String(), `msg="plugin refused" plugin=helper_trust`) {
			t.Error("refusal not logged")
		}
		if len(pluginPids(path)) != 0 {
			t.Fatal("refused plugin runs")
		}
		if err := os.Chmod(path, 0o755); err != nil {
			t.Fatal(err)
		}
		status(c, "helper_trust", wire.StateOnline, "")

		// A new plugin in a directory others may write to is refused
		// until the directory is fixed.
		if err := os.Chmod(ts.dir, 0o757); err != nil {
			t.Fatal(err)
		}
		deployMv(t, ts.dir, "helper_late", 0o755, "counter", "1")
		st = status(c, "helper_late", wire.StateRefused, "writable by group or others")
		if !strings.Contains(fmt.Sprint(st["reason"]), ts.dir+" is") {
			t.Errorf("reason %q does not name the directory", st["reason"])
		}
		if err := os.Chmod(ts.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		status(c, "helper_late", wire.StateOnline, "")

		// A symlink is only as safe as the directory of its target.
		open := filepath.Join(t.TempDir(), "open")
		if err := os.Mkdir(open, 0o700); err != nil {
			t.Fatal(err)
		}
		writeHelper(t, filepath.Join(open, "target"), 0o755, "counter", "1")
		if err := os.Chmod(open, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(open, "target"), filepath.Join(ts.dir, "helper_link")); err != nil {
			t.Fatal(err)
		}
		status(c, "helper_link", wire.StateRefused, open+" is writable by group or others")

		if os.Getuid() != 0 {
			return // chown needs root
		}
		other := filepath.Join(ts.dir, ".helper_owned")
		writeHelper(t, other, 0o755, "counter", "1")
		if err := os.Chown(other, 4321, 4321); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(other, filepath.Join(ts.dir, "helper_owned")); err != nil {
			t.Fatal(err)
		}
		status(c, "helper_owned", wire.StateRefused, "owned by uid 4321")
		if err := os.Chown(filepath.Join(ts.dir, "helper_owned"), 0, 0); err != nil {
			t.Fatal(err)
		}
		status(c, "helper_owned", wire.StateOnline, "")
	})

	t.Run("sha256 allowlist", func(t *testing.T) {
		good := helperBinary(t, "counter", "pinned")
		ts := startSup(t, func(c *config.Config) {
			c.PluginSHA256 = map[string]string{"helper_pinned": sha256Hex(good), "helper_wrong": sha256Hex(good)}
			writeHelper(t, filepath.Join(c.PluginsDir, "helper_pinned"), 0o755, "counter", "pinned")
			writeHelper(t, filepath.Join(c.PluginsDir, "helper_wrong"), 0o755, "counter", "other")
			writeHelper(t, filepath.Join(c.PluginsDir, "helper_unlisted"), 0o755, "counter", "pinned")
		})
		want := map[string]string{
			"helper_pinned":   "online: ",
			"helper_wrong":    "refused: SHA-256 of " + filepath.Join(ts.dir, "helper_wrong") + " does not match plugin_sha256",
			"helper_unlisted": "refused: " + filepath.Join(ts.dir, "helper_unlisted") + " is not in the plugin_sha256 allowlist",
		}
		for p, w := range want {
			state, reason, _ := strings.Cut(w, ": ")
			waitFor(t, p+" "+w, func() bool {
				info := pluginInfo(ts, p)
				return info.State == state && strings.Contains(info.Reason, reason)
			})
		}
		c := ts.dial(t)
		online(c, "helper_pinned")

		// A swapped binary must match too: a different one is refused
		// and the old process keeps serving; the right one swaps in.
		deployMv(t, ts.dir, "helper_pinned", 0o755, "counter", "evil")
		st := firstStatus(c, "helper_pinned")
		if st["state"] != wire.StateSwapFailed || !strings.Contains(fmt.Sprint(st["reason"]), "does not match plugin_sha256") {
			t.Fatalf("status = %v, want swap_failed for a mismatching sum", st)
		}
		count(c, "helper_pinned.count")
		deployInstall(t, ts.dir, "helper_pinned", "counter", "pinned")
		if st := firstStatus(c, "helper_pinned"); st["state"] != wire.StateSwapped {
			t.Fatalf("status = %v, want swapped for the allowed binary", st)
		}
		waitFor(t, "the old process to exit", func() bool { return len(children()) == 1 })
	})
}

// TestIdleTimeout: with no client for idle_timeout the supervisor stops
// and takes its plugins with it.
func TestIdleTimeout(t *testing.T) {
	ts := startSup(t, func(c *config.Config) { c.IdleTimeout = 500 * time.Millisecond }, "counter")
	c := ts.dial(t)
	online(c, "helper_counter")
	if len(children()) != 1 {
		t.Fatalf("plugin processes %v", children())
	}
	// Connected clients keep it up, well past the idle timeout.
	quiet(c, time.Second, func(string) bool { return false })
	select {
	case err := <-ts.done:
		t.Fatalf("Run returned with a client connected: %v", err)
	default:
	}
	c.conn.Close(websocket.StatusNormalClosure, "")
	select {
	case err := <-ts.done:
		ts.stopped = true
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("supervisor still running 15s after its last client left")
	}
	if len(children()) != 0 {
		t.Errorf("plugin processes left: %v", children())
	}
	if !strings.Contains(ts.logs.String(), "no client for the idle timeout") {
		t.Error("idle exit not logged")
	}
}

// TestRemovedThenBack removes a plugin while a command runs on it and
// deploys it again before that command is done: the old process finishes
// the command, clients see "removed" and then the new process online, and
// its readings flow.
func TestRemovedThenBack(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	const name = "helper_counter"
	ts := startSup(t, func(c *config.Config) {
		writeHelper(t, filepath.Join(c.PluginsDir, name), 0o755, "counter", "1")
	})
	c := ts.dial(t)
	online(c, name)
	c.send(wire.CommandMsg{Type: "command", ID: "slow", Name: name + ".sleep", Args: map[string]any{"ms": 1500}})
	waitFor(t, "the command in flight", func() bool {
		_, _, inFlight := ts.plugins.Slot(name)
		return inFlight > 0
	})
	if err := os.Remove(filepath.Join(ts.dir, name)); err != nil {
		t.Fatal(err)
	}
	// The removal is acted on (the slot is gone; its process finishes the
	// command first), then the binary comes back.
	waitFor(t, "the removal acted on", func() bool { loaded, _, _ := ts.plugins.Slot(name); return !loaded })
	deployMv(t, ts.dir, name, 0o755, "counter", "2")

	var seen []string
	for len(seen) < 3 {
		m := c.next("result, removed, online", func(m map[string]any) bool {
			return m["type"] == "result" || m["type"] == "status" && m["plugin"] == name
		})
		switch m["type"] {
		case "result":
			if m["ok"] != true || fmt.Sprint(m["value"].(map[string]any)["version"]) != "1" {
				t.Errorf("command across the removal: %v", m)
			}
			seen = append(seen, "result")
		default:
			seen = append(seen, fmt.Sprint(m["state"]))
		}
	}
	if want := []string{"result", wire.StateRemoved, wire.StateOnline}; !slices.Equal(seen, want) {
		t.Errorf("saw %v, want %v", seen, want)
	}
	if v := count(c, name+".count"); v > 100 {
		t.Errorf("reading %v does not come from the new process", v)
	}
	hello := ts.dial(t).next("hello", is("hello"))
	if !strings.Contains(fmt.Sprint(hello["sensors"]), name+".count") {
		t.Errorf("hello lacks the redeployed plugin's sensors: %v", hello["sensors"])
	}
}

// TestSlowInstall replaces a running plugin the way GNU install does, but
// slowly (a large binary on slow flash): unlink, create mode 0600, copy in
// chunks with pauses long enough for livecgid to look at the half-written
// file (the test waits until it has), then chmod 0755. Browsers see one
// "swapped" and never "swap_failed".
func TestSlowInstall(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	setTiming(t, func(tm *timing) { tm.host.Patience = time.Minute }) // the test's own pauses never reach it
	const name = "helper_counter"
	ts := startSup(t, func(c *config.Config) {
		writeHelper(t, filepath.Join(c.PluginsDir, name), 0o755, "counter", "1")
	})
	c := ts.dial(t)
	online(c, name)
	judged := func() int {
		return strings.Count(ts.logs.String(), `msg="plugin file not loaded" file=`+name+` reason="not executable"`)
	}

	path := filepath.Join(ts.dir, name)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	bin := helperBinary(t, "counter", "2")
	for i, part := range [][]byte{bin[:len(bin)/3], bin[len(bin)/3 : 2*len(bin)/3], bin[2*len(bin)/3:]} {
		if _, err := f.Write(part); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
		// A pause: livecgid judges the file as it is (not executable).
		waitFor(t, fmt.Sprintf("the file judged after part %d", i+1), func() bool { return judged() > i })
	}
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
	var seen []string
	c.next(name+" swapped", func(m map[string]any) bool {
		if m["type"] != "status" || m["plugin"] != name {
			return false
		}
		seen = append(seen, fmt.Sprint(m["state"], " ", m["version"], ": ", m["reason"]))
		return m["state"] == wire.StateSwapped
	})
	// A later event: another plugin arrives. Nothing more of this one.
	deployMv(t, ts.dir, "helper_other", 0o755, "counter", "1")
	c.next("helper_other online", func(m map[string]any) bool {
		if m["type"] == "status" && m["plugin"] == name {
			seen = append(seen, fmt.Sprint(m["state"], " ", m["version"], ": ", m["reason"]))
		}
		return m["type"] == "status" && m["plugin"] == "helper_other" && m["state"] == wire.StateOnline
	})
	if want := []string{"swapped v-counter-2: <nil>"}; !slices.Equal(seen, want) {
		t.Errorf("statuses of %s: %q, want %q", name, seen, want)
	}
	if n := judged(); n != 3 {
		t.Errorf("the unfinished file was judged %d times, want 3", n)
	}
}

// TestLinkTargetReplaced: plugins that are links to one binary outside the
// plugins dir, as the built-in ones are to livecgid, are swapped when that
// binary is replaced by rename in its own directory.
func TestLinkTargetReplaced(t *testing.T) {
	setTiming(t, func(tm *timing) { tm.host.Settle = 150 * time.Millisecond })
	sbin := filepath.Join(t.TempDir(), "sbin")
	if err := os.Mkdir(sbin, 0o700); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(sbin, "livecgid")
	writeHelper(t, exe, 0o755, "counter", "1")
	ts := startSup(t, func(c *config.Config) {
		for _, n := range []string{"alpha", "beta"} {
			if err := os.Symlink(exe, filepath.Join(c.PluginsDir, n)); err != nil {
				t.Fatal(err)
			}
		}
	})
	c := ts.dial(t)
	online(c, "alpha")
	online(c, "beta")
	count(c, "alpha.count")

	tmp := filepath.Join(sbin, ".livecgid.new")
	writeHelper(t, tmp, 0o755, "counter", "2")
	if err := os.Rename(tmp, exe); err != nil {
		t.Fatal(err)
	}
	swapped := map[string]bool{}
	c.next("both swapped to v-counter-2", func(m map[string]any) bool {
		if m["type"] == "status" && m["state"] == wire.StateSwapped {
			if m["version"] != "v-counter-2" || m["previous_version"] != "v-counter-1" {
				t.Errorf("swap of %v: %v", m["plugin"], m)
			}
			swapped[fmt.Sprint(m["plugin"])] = true
		}
		return swapped["alpha"] && swapped["beta"]
	})
	count(c, "beta.count")
}
