package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoakChurn runs a short churn soak against a real supervisor under
// busybox httpd (the rig of compare), going on past -d until every kind of
// event happened once, and checks that the report has its sample rows, the
// summary of each figure and the counted events.
func TestSoakChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the rig: not in -short")
	}
	for _, tool := range []string{"busybox", "websocketd", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found (apt-get install busybox websocketd): %v", tool, err)
			}
			t.Skipf("%s not found (apt-get install busybox websocketd)", tool)
		}
	}
	raiseFileLimit()
	t.Chdir(moduleRoot(t)) // the rig builds ./cmd/… from the module root
	cfg, err := parseSoak(strings.Fields("-churn -n 20 -d 8s -every 2s -churn-every 1s -swap-every 2s -kill-every 3s -reconnect-pause 200ms -bomb-rate 512"), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.until = func(st *churnStats, w *watcher, rows int) bool {
		return rows >= 2 && st.churnOK.Load() >= 2 && st.swaps.Load() >= 1 && w.state("swapped") >= 1 &&
			st.kills.Load() >= 1 && w.restarts.Load() >= 1 && st.floodSent.Load() >= 1 && st.bombConns.Load() >= 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, log strings.Builder
	if err := soak(ctx, cfg, &out, &log); err != nil {
		t.Fatalf("soak: %v\n%s\n%s", err, out.String(), log.String())
	}
	report := out.String()
	t.Log(report)

	rows := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +\d+( +\d+){9}$`).FindAllString(report, -1)
	if len(rows) < 2 {
		t.Errorf("want 2 or more sample rows of 19 columns, got %d", len(rows))
	}
	for _, want := range []string{"legit_readings  legit_silent", "churn: 18 legitimate clients, 2 churning every 1s"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, f := range figures {
		if !regexp.MustCompile(`(?m)^` + f.name + `: first \d+ last \d+ max \d+ (flat|GROWING)$`).MatchString(report) {
			t.Errorf("no summary of %s", f.name)
		}
	}
	for _, c := range []struct{ what, re string }{
		{"churn reconnects", `churn reconnects: (\d+) ok`},
		{"swaps", `plugin swaps: (\d+) done`},
		{"swapped statuses", `the plugin's statuses: .*swapped ×(\d+)`},
		{"kills", `plugin kills: (\d+) done`},
		{"restarts", `plugin_restarts_total (\d+)`},
		{"flood frames", `flooders: \d+ connections, (\d+) frames sent`},
		{"header bomb connections", `header bombers: (\d+) connections`},
	} {
		m := regexp.MustCompile(c.re).FindStringSubmatch(report)
		if m == nil {
			t.Errorf("report lacks %s (%s)", c.what, c.re)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n < 1 {
			t.Errorf("%s: %d, want 1 or more", c.what, n)
		}
	}
	if !strings.Contains(report, "legitimate clients: ") || !strings.Contains(report, "intervals with a silent client: ") {
		t.Error("report lacks the legitimate clients' summary")
	}
}

func TestTrend(t *testing.T) {
	for _, tc := range []struct {
		first, last, slack int64
		want               string
	}{
		{40, 540, 16, "GROWING"}, {40, 60, 16, "flat"}, {500, 560, 16, "flat"}, {500, 700, 16, "GROWING"}, {-1, 5, 0, "?"},
	} {
		if got := trend(tc.first, tc.last, tc.slack); got != tc.want {
			t.Errorf("trend(%d, %d, %d) = %s, want %s", tc.first, tc.last, tc.slack, got, tc.want)
		}
	}
}

// TestSummary: a leak raises the floor and is GROWING; a passing peak is
// not.
func TestSummary(t *testing.T) {
	var s sampler
	for i, fds := range []int64{40, 300, 45, 600, 50} {
		s.samples = append(s.samples, procSample{goroutines: 50, threads: 8, fds: fds, rss: 20000 + int64(i)*10000, pss: 20000, treePSS: -1})
	}
	var out strings.Builder
	s.summary(&out)
	for _, want := range []string{
		"fds: first 40 last 50 max 600 flat\n",
		"livecgid_rss_kB: first 20000 last 60000 max 60000 GROWING\n",
		"goroutines: first 50 last 50 max 50 flat\n",
		"tree_pss_kB: first -1 last -1 max -1 ?\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}
