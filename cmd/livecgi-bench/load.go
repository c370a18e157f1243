package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
)

// Modes of the load tool: what the clients talk to.
const (
	ModeLivecgi    = "livecgi"      // the stub's ?connect, then the supervisor's WebSocket
	ModeWebsocketd = "websocketd"   // plain WebSocket, one line per message
	ModeLongPoll   = "long-poll"    // HTTP GET loop against a CGI
	ModeBare       = "bare"         // plain WebSocket to serve-bare
	ModePoll       = "livecgi-poll" // the stub's ?connect, then long polls through the stub
	ModeSamePort   = "same-port"    // the supervisor's WebSocket through nph-live.cgi on the web server's port
	// The exec plugin's sensors, through the supervisor as livecgi: the
	// websocketd program as a stream, and a C program run per interval.
	ModeExec         = "exec"
	ModeExecPeriodic = "exec-periodic"
)

// Load describes one load run.
type Load struct {
	Mode string
	// URL is the stub (livecgi: http://…/cgi-bin/live.cgi), the WebSocket
	// (websocketd, bare; livecgi with SecretFile; same-port:
	// ws://…/cgi-bin/nph-live.cgi?ws, with SecretFile) or the CGI
	// (long-poll).
	URL string
	// SecretFile and Origin let livecgi clients mint their own tokens
	// (control.MintToken) instead of asking the stub; the supervisor's
	// epoch comes from the control socket beside SecretFile. Origin
	// defaults to http://<URL's host>.
	SecretFile, Origin string
	Clients            int
	Hz                 float64       // readings per second the sensor sends: what each client should get
	Warmup, Duration   time.Duration // after the last client connected; then measured
	Grace              time.Duration // waited after Duration for readings sent in it
	PID                int           // root of the server's process tree; 0: not measured
	Also               int           // root of a second tree measured with it (livecgi-poll: the web server and its stubs)
	Parallel           int           // connects in flight
	Prefix             string        // sensors counted: ids starting with this (default "bench.")
}

// Result is what a load run measured. Latencies run from a reading's send
// time to its receipt: Latency from the value (Unix µs, bench sensors),
// LatencyT from the frame's "t" (Unix ms, every livecgi reading).
type Result struct {
	Mode      string  `json:"mode"`
	Clients   int     `json:"clients"`
	Connected int     `json:"connected"`
	Hz        float64 `json:"hz"`
	Seconds   float64 `json:"seconds"` // the measured window

	Connect    Dist    `json:"connect"`           // WebSocket dial (long-poll: none)
	Stub       Dist    `json:"stub,omitempty"`    // ?connect requests (livecgi via the stub)
	Latency    Dist    `json:"latency"`           // from the value's µs send time
	LatencyT   Dist    `json:"latency_t"`         // from "t", ms resolution
	Received   uint64  `json:"received"`          // readings sent in the window and received
	Expected   float64 `json:"expected"`          // Clients × Hz × window
	Delivered  float64 `json:"delivered"`         // Received / Expected
	MsgsPerSec float64 `json:"msgs_per_s"`        // Received / window
	Failures   uint64  `json:"failures"`          // failed connects, requests, dropped connections
	FailureMsg string  `json:"failure,omitempty"` // the first failure

	Before Usage `json:"before"` // server tree before connecting
	After  Usage `json:"after"`  // server tree at the end of the window
	// MeanPSS and MeanRSS average the tree over the window, sampled each
	// second (CGI processes come and go), in kB.
	MeanPSS int64 `json:"mean_pss_kb"`
	MeanRSS int64 `json:"mean_rss_kb"`
	// PerClientPSS is (MeanPSS − Before.PSS) / Connected, in kB.
	PerClientPSS float64 `json:"per_client_pss_kb"`
	PerClientRSS float64 `json:"per_client_rss_kb"`
	// CPUPerMsg is the server tree's CPU time over the window per
	// received reading, in µs.
	CPUPerMsg float64 `json:"cpu_us_per_msg"`
	ServerCPU float64 `json:"server_cpu_percent"` // of one core, over the window
	LoadCPU   float64 `json:"load_cpu_percent"`   // this tool's own, over the window
}

// counter is one client's tally.
type counter struct {
	lat, latT hist
	received  uint64
}

// window is the send-time range counted, in Unix µs; set once the clients
// are connected and warmed up.
type window struct {
	from, to atomic.Int64
}

func (w *window) in(us int64) bool {
	f := w.from.Load()
	return f != 0 && us >= f && us < w.to.Load()
}

// Run connects l.Clients clients, measures for l.Duration and returns what
// it saw. Connection failures are counted, not fatal; no client connecting
// at all is an error.
func (l Load) Run(ctx context.Context, progress io.Writer) (*Result, error) {
	if l.Parallel <= 0 {
		l.Parallel = 32
	}
	if l.Prefix == "" {
		l.Prefix = "bench."
	}
	if l.Grace == 0 {
		l.Grace = time.Second
	}
	if l.Clients < 1 || l.Hz <= 0 || l.Duration <= 0 {
		return nil, errors.New("load: want clients ≥ 1, hz > 0 and a duration")
	}
	res := &Result{Mode: l.Mode, Clients: l.Clients, Hz: l.Hz}
	fs := procFS{"/proc"}
	if l.PID > 0 {
		u, err := l.usage(fs, true)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		res.Before = u
	}

	dial, err := l.dialer()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		win      window
		mu       sync.Mutex // guards the three below
		connect  hist
		stub     hist
		counters []*counter
		failures atomic.Uint64
		firstErr atomic.Value
		live     sync.WaitGroup
	)
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	sem := make(chan struct{}, l.Parallel)
	var connecting sync.WaitGroup
	start := time.Now()
	for i := range l.Clients {
		sem <- struct{}{}
		connecting.Go(func() {
			defer func() { <-sem }()
			c := &counter{}
			stream, dialTime, stubTime, err := dial(ctx, i)
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			if dialTime > 0 {
				connect.addDuration(dialTime)
			}
			if stubTime > 0 {
				stub.addDuration(stubTime)
			}
			counters = append(counters, c)
			mu.Unlock()
			live.Go(func() {
				if err := stream(ctx, func(frame []byte, now time.Time) { l.count(c, &win, frame, now) }, fail); err != nil && ctx.Err() == nil {
					fail(err)
				}
			})
		})
		if ctx.Err() != nil {
			break
		}
	}
	connecting.Wait()
	res.Connected = len(counters)
	if progress != nil {
		fmt.Fprintf(progress, "  %s: %d/%d clients connected in %v\n", l.Mode, res.Connected, l.Clients, time.Since(start).Round(time.Millisecond))
	}
	if res.Connected == 0 {
		cancel()
		live.Wait()
		return res, fmt.Errorf("no client connected: %v", firstErr.Load())
	}

	sleep(ctx, l.Warmup)
	var cpu0, self0 int64
	if l.PID > 0 {
		u, _ := l.usage(fs, false)
		cpu0 = u.CPU
	}
	_, _, self0, _ = fs.stat(os.Getpid())
	t0 := time.Now()
	win.to.Store(t0.Add(l.Duration).UnixMicro())
	win.from.Store(t0.UnixMicro())
	var pssSum, rssSum, samples int64
	for end := t0.Add(l.Duration); ctx.Err() == nil && time.Now().Before(end); {
		sleep(ctx, min(time.Second, time.Until(end)))
		if l.PID > 0 && time.Until(end) > 100*time.Millisecond {
			if u, err := l.usage(fs, false); err == nil {
				pssSum, rssSum, samples = pssSum+u.PSS, rssSum+u.RSS, samples+1
			}
		}
	}
	elapsed := time.Since(t0)
	if l.PID > 0 {
		u, err := l.usage(fs, true)
		if err != nil {
			fail(fmt.Errorf("server at the end: %w", err))
		}
		res.After = u
		pssSum, rssSum, samples = pssSum+u.PSS, rssSum+u.RSS, samples+1
		res.MeanPSS, res.MeanRSS = pssSum/samples, rssSum/samples
		res.ServerCPU = float64(u.CPU-cpu0) / clockTick / elapsed.Seconds() * 100
	}
	_, _, self1, _ := fs.stat(os.Getpid())
	res.LoadCPU = float64(self1-self0) / clockTick / elapsed.Seconds() * 100
	sleep(ctx, l.Grace) // readings sent in the window still on their way
	failed := failures.Load()
	cancel()
	live.Wait()

	var lat, latT hist
	for _, c := range counters {
		lat.merge(&c.lat)
		latT.merge(&c.latT)
		res.Received += c.received
	}
	res.Seconds = l.Duration.Seconds()
	res.Connect, res.Stub = connect.dist(), stub.dist()
	res.Latency, res.LatencyT = lat.dist(), latT.dist()
	res.Expected = float64(l.Clients) * l.Hz * l.Duration.Seconds()
	res.Delivered = float64(res.Received) / res.Expected
	res.MsgsPerSec = float64(res.Received) / l.Duration.Seconds()
	res.Failures = failed
	if s, ok := firstErr.Load().(string); ok {
		res.FailureMsg = s
	}
	if l.PID > 0 && res.Connected > 0 {
		res.PerClientPSS = float64(res.MeanPSS-res.Before.PSS) / float64(res.Connected)
		res.PerClientRSS = float64(res.MeanRSS-res.Before.RSS) / float64(res.Connected)
		if res.Received > 0 {
			res.CPUPerMsg = float64(res.After.CPU-cpu0) / clockTick * 1e6 / float64(res.Received)
		}
	}
	return res, nil
}

// usage measures the server: the tree at PID, and the one at Also.
func (l Load) usage(fs procFS, list bool) (Usage, error) {
	u, err := fs.usage(l.PID, list)
	if err != nil || l.Also == 0 {
		return u, err
	}
	a, err := fs.usage(l.Also, list)
	if err != nil {
		return u, err
	}
	u.Procs, u.RSS, u.PSS, u.Anon, u.CPU = u.Procs+a.Procs, u.RSS+a.RSS, u.PSS+a.PSS, u.Anon+a.Anon, u.CPU+a.CPU
	u.List = append(u.List, a.List...)
	return u, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// count tallies one received frame: a reading of a counted sensor sent
// inside the window.
func (l Load) count(c *counter, w *window, frame []byte, now time.Time) {
	r, ok := parseReading(frame, l.Prefix)
	if !ok || !w.in(r.us) {
		return
	}
	c.received++
	c.lat.add(now.UnixMicro() - r.us)
	c.latT.add((now.UnixMilli() - r.ms) * 1000)
}

// reading is what the load tool needs of a reading frame.
type reading struct {
	us int64 // value: send time in Unix µs
	ms int64 // "t"
}

// parseReading picks the value and "t" out of a reading frame of a sensor
// whose id starts with prefix, without a full JSON decode (the clients
// share the machine with the server under test). Other frames (hello,
// snapshot, status, other sensors) give false.
func parseReading(b []byte, prefix string) (reading, bool) {
	if !bytes.HasPrefix(b, []byte(`{"type":"reading","sensor":"`+prefix)) {
		return reading{}, false
	}
	v, ok1 := numberAfter(b, `,"value":`)
	t, ok2 := numberAfter(b, `,"t":`)
	if !ok1 || !ok2 {
		return reading{}, false
	}
	return reading{us: int64(v), ms: int64(t)}, true
}

func numberAfter(b []byte, key string) (float64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	end := bytes.IndexAny(b, ",}")
	if end < 0 {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(b[:end]), 64)
	return f, err == nil
}

// streamFunc feeds every received frame to handle until ctx ends or the
// connection fails.
// Failures that the stream survives (a long-poll request that failed) go
// to fail.
type streamFunc func(ctx context.Context, handle func(frame []byte, now time.Time), fail func(error)) error

// dialFunc opens client i: the stream, the dial time and the stub time.
type dialFunc func(ctx context.Context, i int) (streamFunc, time.Duration, time.Duration, error)

func (l Load) dialer() (dialFunc, error) {
	u, err := url.Parse(l.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("url %q: want an absolute URL", l.URL)
	}
	hc := newClient()
	switch l.Mode {
	case ModeWebsocketd, ModeBare:
		return func(ctx context.Context, _ int) (streamFunc, time.Duration, time.Duration, error) {
			t0 := time.Now()
			conn, err := dialWS(ctx, hc, l.URL, "", "")
			return wsStream(conn), time.Since(t0), 0, err
		}, nil
	case ModeLongPoll:
		return func(ctx context.Context, _ int) (streamFunc, time.Duration, time.Duration, error) {
			return pollStream(hc, l.URL), 0, 0, nil
		}, nil
	case ModeLivecgi, ModeSamePort, ModePoll, ModeExec, ModeExecPeriodic:
	default:
		return nil, fmt.Errorf("mode %q: want %s, %s, %s, %s, %s, %s, %s or %s", l.Mode, ModeLivecgi, ModeSamePort, ModeWebsocketd, ModeLongPoll, ModeBare, ModePoll, ModeExec, ModeExecPeriodic)
	}
	sep := "?"
	if strings.Contains(l.URL, "?") {
		sep = "&" // nph-live.cgi?ws
	}
	origin := l.Origin
	if origin == "" {
		origin = "http://" + u.Host
	}
	if l.Mode == ModePoll {
		// A poll waits up to poll_timeout (25 s) in the stub, and
		// busybox httpd may be slow to accept: more than newClient's 30 s.
		hc := newClient()
		hc.Timeout = time.Minute
		return func(ctx context.Context, _ int) (streamFunc, time.Duration, time.Duration, error) {
			t0 := time.Now()
			doc, err := StubConnect(ctx, hc, l.URL, origin)
			stubTime := time.Since(t0)
			if err != nil {
				return nil, 0, stubTime, err
			}
			for _, t := range doc.Transports {
				if t.Kind == control.TransportPoll {
					return livePollStream(hc, u.Scheme+"://"+u.Host, l.URL, t.URL, origin), 0, stubTime, nil
				}
			}
			return nil, 0, stubTime, errors.New("the connect document lists no poll transport")
		}, nil
	}
	if l.SecretFile != "" {
		secret, err := os.ReadFile(l.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		return func(ctx context.Context, _ int) (streamFunc, time.Duration, time.Duration, error) {
			st, err := control.Probe(ctx, filepath.Dir(l.SecretFile))
			if err != nil {
				return nil, 0, 0, err
			}
			tok, _ := control.MintToken(secret, origin, st.Epoch, time.Now(), time.Minute, auth.Identity{})
			t0 := time.Now()
			conn, err := dialWS(ctx, hc, l.URL+sep+"token="+tok, origin, wire.Subprotocol)
			return wsStream(conn), time.Since(t0), 0, err
		}, nil
	}
	return func(ctx context.Context, _ int) (streamFunc, time.Duration, time.Duration, error) {
		t0 := time.Now()
		doc, err := StubConnect(ctx, hc, l.URL, origin)
		stubTime := time.Since(t0)
		if err != nil {
			return nil, 0, stubTime, err
		}
		t1 := time.Now()
		conn, err := dialWS(ctx, hc, doc.URL, origin, doc.Protocol)
		return wsStream(conn), time.Since(t1), stubTime, err
	}, nil
}

// StubConnect asks the stub at stubURL for a connect document, as the
// browser client does from a page of origin.
func StubConnect(ctx context.Context, hc *http.Client, stubURL, origin string) (control.Connect, error) {
	var doc control.Connect
	req, err := http.NewRequestWithContext(ctx, "GET", stubURL+"?connect", nil)
	if err != nil {
		return doc, err
	}
	req.Header.Set("Origin", origin)
	resp, err := hc.Do(req)
	if err != nil {
		return doc, fmt.Errorf("stub: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return doc, fmt.Errorf("stub: %w", err)
	}
	if resp.StatusCode != 200 {
		return doc, fmt.Errorf("stub: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.URL == "" {
		return doc, fmt.Errorf("stub: bad connect document %q: %v", b, err)
	}
	return doc, nil
}

func dialWS(ctx context.Context, hc *http.Client, u, origin, proto string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{}}
	if origin != "" {
		opts.HTTPHeader.Set("Origin", origin)
	}
	if proto != "" {
		opts.Subprotocols = []string{proto}
	}
	conn, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %s: %w", resp.Status, err)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	return conn, nil
}

// wsStream reads frames into one reused buffer per client.
func wsStream(conn *websocket.Conn) streamFunc {
	if conn == nil {
		return nil
	}
	return func(ctx context.Context, handle func([]byte, time.Time), _ func(error)) error {
		defer conn.CloseNow()
		buf := make([]byte, 0, 512)
		for {
			_, r, err := conn.Reader(ctx)
			if err != nil {
				return err
			}
			buf = buf[:0]
			for {
				if len(buf) == cap(buf) {
					buf = append(buf, 0)[:len(buf)]
				}
				n, err := r.Read(buf[len(buf):cap(buf)])
				buf = buf[:len(buf)+n]
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
			}
			handle(buf, time.Now())
		}
	}
}

// pollStream asks the CGI for the next reading, again and again; a failed
// request is counted and retried after a short pause.
func pollStream(hc *http.Client, u string) streamFunc {
	return func(ctx context.Context, handle func([]byte, time.Time), fail func(error)) error {
		buf := bytes.NewBuffer(make([]byte, 0, 512))
		for ctx.Err() == nil {
			if err := pollOnce(ctx, hc, u, buf); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				fail(err)
				sleep(ctx, 50*time.Millisecond)
				continue
			}
			handle(buf.Bytes(), time.Now())
		}
		return nil
	}
}

// livePollStream long-polls the stub as the browser client does: the
// poll transport's URL opens a session, then ?poll&session=…&since=… in a
// loop; every frame of every answer goes to handle.
func livePollStream(hc *http.Client, site, stubURL, first, origin string) streamFunc {
	return func(ctx context.Context, handle func([]byte, time.Time), fail func(error)) error {
		buf := bytes.NewBuffer(make([]byte, 0, 4096))
		u := first
		if strings.HasPrefix(u, "/") {
			u = site + u
		}
		for ctx.Err() == nil {
			if err := pollOnce(ctx, hc, u, buf); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			now := time.Now()
			var doc struct {
				Session string            `json:"session"`
				Seq     uint64            `json:"seq"`
				Frames  []json.RawMessage `json:"frames"`
			}
			if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
				return fmt.Errorf("poll answer: %w", err)
			}
			for _, f := range doc.Frames {
				handle(f, now)
			}
			u = stubURL + "?poll&session=" + doc.Session + "&since=" + strconv.FormatUint(doc.Seq, 10)
		}
		return nil
	}
}

func pollOnce(ctx context.Context, hc *http.Client, u string, buf *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, 1<<20)); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("poll: %s: %s", resp.Status, bytes.TrimSpace(buf.Bytes()))
	}
	return nil
}
