package main

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/cmd/livecgi-bench/tick"
)

func TestHist(t *testing.T) {
	var h hist
	for us := int64(1); us <= 10000; us++ {
		h.add(us)
	}
	for _, tc := range []struct{ q, want float64 }{{0.5, 5000}, {0.9, 9000}, {0.99, 9900}} {
		if got := h.quantile(tc.q); got < tc.want*0.97 || got > tc.want*1.03 {
			t.Errorf("quantile(%g) = %g, want %g ± 3 %%", tc.q, got, tc.want)
		}
	}
	if h.quantile(1) != 10000 || h.max != 10000 {
		t.Errorf("max = %g, %d; want 10000", h.quantile(1), h.max)
	}
	for i := 1; i <= bucket(1<<62); i++ { // buckets are ordered and contiguous
		if bucketMid(i) <= bucketMid(i-1) {
			t.Fatalf("bucket %d mid %g not above bucket %d's %g", i, bucketMid(i), i-1, bucketMid(i-1))
		}
	}
	for _, us := range []int64{0, 63, 64, 65, 1000, 123456789} {
		if mid := bucketMid(bucket(us)); mid < float64(us)*0.96 || mid > float64(us)*1.04+1 {
			t.Errorf("bucket(%d) mid %g", us, mid)
		}
	}
	var m hist
	m.merge(&h)
	m.add(-5) // a clock rounding: counted as 0
	if m.n != h.n+1 || m.quantile(0.0001) != 0 {
		t.Errorf("merge: n %d, min %g", m.n, m.quantile(0.0001))
	}
}

func TestParseStat(t *testing.T) {
	line := "4242 (web (server) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 11 13 20 0 1 0 100 1000 10 18446744073709551615\n"
	ppid, comm, ticks, err := parseStat([]byte(line))
	if err != nil || ppid != 1 || comm != "web (server) 1" || ticks != 7+3+11+13 {
		t.Errorf("got %d %q %d %v", ppid, comm, ticks, err)
	}
	for _, bad := range []string{"", "1 nocomm S 1", "1 (x) S 1 2 3"} {
		if _, _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestParseRollup(t *testing.T) {
	b := []byte("55d0-7ffd [rollup]\nRss:               16756 kB\nPss:               16740 kB\nPss_Anon:           4404 kB\nAnonymous:          4404 kB\n")
	rss, pss, anon, err := parseRollup(b)
	if err != nil || rss != 16756 || pss != 16740 || anon != 4404 {
		t.Errorf("got %d %d %d %v", rss, pss, anon, err)
	}
	if _, _, _, err := parseRollup([]byte("Rss: 1 kB\n")); err == nil {
		t.Error("partial rollup: no error")
	}
}

func TestParseReading(t *testing.T) {
	now := time.UnixMicro(1_700_000_000_654_321)
	for _, tc := range []struct {
		frame string
		ok    bool
	}{
		{string(tick.Frame(nil, 7, now)), true},
		{`{"type":"reading","sensor":"bench.tick3_us","value":1700000000654321,"unit":"µs","seq":9,"t":1700000000654}`, true},
		{`{"type":"reading","sensor":"livecgid.clients","value":3,"seq":9,"t":1700000000654}`, false},
		{`{"type":"snapshot","mode":"full","seq":9,"readings":[{"sensor":"bench.tick_us","value":1,"seq":1,"t":1}]}`, false},
		{`{"type":"reading","sensor":"bench.tick_us","value":null,"seq":9,"t":1,"error":"x"}`, false},
	} {
		r, ok := parseReading([]byte(tc.frame), "bench.")
		if ok != tc.ok || ok && (r.us != now.UnixMicro() || r.ms != now.UnixMilli()) {
			t.Errorf("%s: got %+v, %v", tc.frame, r, ok)
		}
	}
}

// TestLoadBare runs the load tool against the bare server over loopback,
// measuring this process as the server.
func TestLoadBare(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- (&Bare{Hz: 50}).Serve(ctx, ln) }()
	l := Load{Mode: ModeBare, URL: "ws://" + ln.Addr().String() + "/", Clients: 5, Hz: 50,
		Duration: time.Second, Warmup: 100 * time.Millisecond, Grace: 200 * time.Millisecond, PID: os.Getpid()}
	res, err := l.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 5 || res.Received == 0 || res.Failures != 0 || res.Latency.N != res.Received {
		t.Errorf("got %+v", res)
	}
	if res.Before.Procs != 1 || res.After.RSS == 0 || res.MeanPSS == 0 {
		t.Errorf("no memory figures: before %+v, after %+v", res.Before, res.After)
	}
	var out strings.Builder
	printResult(&out, res)
	if !strings.Contains(out.String(), "bare: 5/5 clients") {
		t.Errorf("summary:\n%s", out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}

	if _, err := (Load{Mode: "carrier-pigeon", URL: "ws://x/", Clients: 1, Hz: 1, Duration: time.Second}).Run(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "want livecgi") {
		t.Errorf("bad mode: %v", err)
	}
}

// TestReport renders a small report: the table, the budgets and
// well-formed SVG.
func TestReport(t *testing.T) {
	pt := func(sys string, p99, cpu, pss float64) *Result {
		return &Result{Mode: sys, Clients: 1000, Hz: 10, Received: 100000, Expected: 100000, Delivered: 1,
			Latency: Dist{P99: p99}, CPUPerMsg: cpu, PerClientPSS: pss, MeanPSS: 40000}
	}
	rep := &Report{Duration: 10, Points: []*Result{pt(ModeLivecgi, 50, 20, 15), pt(ModeBare, 60, 18, 50), pt(ModeWebsocketd, 300, 70, 700)},
		Repeats:      []*Result{pt(ModeLivecgi, 70, 30, 16), pt(ModeLivecgi, 40, 19, 14)},
		Ceiling:      []*Result{{Mode: ModeLivecgi, Clients: 1000, Hz: 100, MsgsPerSec: 80000}, {Mode: ModeBare, Clients: 1000, Hz: 100, MsgsPerSec: 90000}},
		StubMedianMS: 2.5, FirstReadingMS: []float64{20, 30}}
	md := markdown(rep)
	for _, want := range []string{"| 10 Hz | 1000 | livecgi | 100.0 %", "50.0 ms vs 60.0 ms (runs: livecgi 50, 70, 40; bare 60)", "20.0 vs 18.0 µs (1.11×", "89 %", "compare.svg"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	for _, svg := range []string{plotCompare(rep), plotCeiling(rep)} {
		if !strings.HasPrefix(svg, "<svg") || !strings.HasSuffix(svg, "</svg>\n") || strings.Contains(svg, "NaN") || !strings.Contains(svg, "<polyline") {
			t.Errorf("bad SVG:\n%s", svg)
		}
	}
}
