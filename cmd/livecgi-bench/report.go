package main

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"
)

// find returns the point of system sys with n clients at hz, or nil.
func find(points []*Result, sys string, n int, hz float64) *Result {
	for _, p := range points {
		if p.Mode == sys && p.Clients == n && p.Hz == hz {
			return p
		}
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// markdown renders the comparison table and the budgets.
func markdown(rep *Report) string {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "# livecgi, websocketd, long polling and a bare server, side by side\n\n")
	fmt.Fprintf(&b, "Measured %s on %s (%d cores), Linux %s, %s; livecgi %s, websocketd %s, busybox %s. ",
		rep.Started.Format("2006-01-02"), m.CPU, m.Cores, m.Kernel, m.Go, m.Livecgi, m.Websocketd, m.Busybox)
	fmt.Fprintf(&b, "Everything on loopback, the load tool (`cmd/livecgi-bench`) on the same machine as the servers. "+
		"Each point: connect every client, wait 1 s, then count for %g s the readings *sent* in that window; "+
		"latency runs from the sensor's send time (µs) to receipt. Memory is PSS summed over the server's whole "+
		"process tree (livecgid + bench plugin; websocketd + one sensor program per client; busybox httpd + its CGIs; "+
		"the bare server), its mean over the window (sampled each second) minus its value before connecting; "+
		"Procs is the tree's process count at the end. CPU is utime+stime of the tree over the window per reading received.\n\n", rep.Duration)
	b.WriteString("| Rate | Clients | System | Delivered | Msgs/s | p50 ms | p99 ms | Max ms | KB/client (PSS) | Tree PSS MB | Procs | CPU µs/msg | CPU × bare | Failures |\n")
	b.WriteString("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range rep.Points {
		ratio := "–"
		if bare := find(rep.Points, ModeBare, p.Clients, p.Hz); bare != nil && bare.CPUPerMsg > 0 && p.CPUPerMsg > 0 {
			ratio = fmt.Sprintf("%.2f", p.CPUPerMsg/bare.CPUPerMsg)
		}
		fail := fmt.Sprint(p.Failures)
		if p.FailureMsg != "" && p.Received == 0 {
			fail = "run failed"
		}
		fmt.Fprintf(&b, "| %g Hz | %d | %s | %.1f %% | %.0f | %.2f | %.2f | %.1f | %.1f | %.1f | %d | %.1f | %s | %s |\n",
			p.Hz, p.Clients, p.Mode, 100*p.Delivered, p.MsgsPerSec, p.Latency.P50, p.Latency.P99, p.Latency.Max,
			p.PerClientPSS, float64(p.MeanPSS)/1024, p.After.Procs, p.CPUPerMsg, ratio, fail)
	}
	b.WriteString("\nNotes: long polling delivers few readings because every reading costs a new HTTP request and a CGI process, " +
		"and busybox httpd listens with a backlog of 9, so concurrent pollers wait for SYN retransmits; its KB/client is the mean of " +
		"CGI processes that come and go (negative when fewer ran than before the point). websocketd's per-client cost is one sensor " +
		"process each. At 100 Hz with 1,000 clients the machine (2 cores, shared with the load tool) saturates: " +
		"livecgi coalesces (newest value per sensor), the bare server drops for full queues, websocketd's pipes back up. " +
		"Timings vary from run to run on this VM: the budgets take the median of several runs.\n")
	b.WriteString("\n![Latency and memory per connection against clients](compare.svg)\n\n")
	if len(rep.Ceiling) > 0 {
		b.WriteString("## Fan-out ceiling\n\nReadings delivered per second to the clients as the sensor rate rises " +
			"(livecgi splits rates above 100 Hz over several bench sensors, one sensor runs at most every 10 ms).\n\n")
		b.WriteString("| Rate | Clients | System | Offered msgs/s | Delivered msgs/s | Delivered | p99 ms | Server CPU % | Load tool CPU % |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range rep.Ceiling {
			fmt.Fprintf(&b, "| %g Hz | %d | %s | %.0f | %.0f | %.1f %% | %.1f | %.0f | %.0f |\n",
				p.Hz, p.Clients, p.Mode, p.Hz*float64(p.Clients), p.MsgsPerSec, 100*p.Delivered, p.Latency.P99, p.ServerCPU, p.LoadCPU)
		}
		b.WriteString("\n![Fan-out ceiling](ceiling.svg)\n\n")
	}
	b.WriteString("## Budgets\n\n| Budget | Measured | |\n|---|---|---|\n")
	for _, row := range budgets(rep) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", row[0], row[1], row[2])
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// budgetPoint is the median, field by field, of every run of sys at
// 1,000 clients and 10 Hz (Points and Repeats), and how many runs there
// were; nil if none.
func budgetPoint(rep *Report, sys string) (*Result, int) {
	var runs []*Result
	for _, p := range append(append([]*Result(nil), rep.Points...), rep.Repeats...) {
		if p.Mode == sys && p.Clients == 1000 && p.Hz == 10 && p.Received > 0 {
			runs = append(runs, p)
		}
	}
	if len(runs) == 0 {
		return nil, 0
	}
	med := func(f func(*Result) float64) float64 {
		var v []float64
		for _, r := range runs {
			v = append(v, f(r))
		}
		return median(v)
	}
	m := *runs[0]
	m.Delivered = med(func(r *Result) float64 { return r.Delivered })
	m.Latency.P99 = med(func(r *Result) float64 { return r.Latency.P99 })
	m.CPUPerMsg = med(func(r *Result) float64 { return r.CPUPerMsg })
	m.PerClientPSS = med(func(r *Result) float64 { return r.PerClientPSS })
	return &m, len(runs)
}

// spread lists f over every run of sys at 1,000 clients and 10 Hz.
func spread(rep *Report, sys string, format string, f func(*Result) float64) string {
	var out []string
	for _, p := range append(append([]*Result(nil), rep.Points...), rep.Repeats...) {
		if p.Mode == sys && p.Clients == 1000 && p.Hz == 10 && p.Received > 0 {
			out = append(out, fmt.Sprintf(format, f(p)))
		}
	}
	return strings.Join(out, ", ")
}

// budgets checks the budgets that this run measured.
func budgets(rep *Report) [][3]string {
	var rows [][3]string
	lc, runs := budgetPoint(rep, ModeLivecgi)
	bare, _ := budgetPoint(rep, ModeBare)
	wsd, _ := budgetPoint(rep, ModeWebsocketd)
	if lc != nil && bare != nil {
		p99 := func(r *Result) float64 { return r.Latency.P99 }
		cpu := func(r *Result) float64 { return r.CPUPerMsg }
		rows = append(rows,
			[3]string{fmt.Sprintf("1,000 clients, 10 Hz: every reading delivered (median of %d runs)", runs),
				fmt.Sprintf("%.2f %% (runs: %s)", 100*lc.Delivered, spread(rep, ModeLivecgi, "%.2f %%", func(r *Result) float64 { return 100 * r.Delivered })), verdict(lc.Delivered >= 0.9999)},
			[3]string{"… p99 no worse than the bare server's",
				fmt.Sprintf("%.1f ms vs %.1f ms (runs: livecgi %s; bare %s)", lc.Latency.P99, bare.Latency.P99, spread(rep, ModeLivecgi, "%.0f", p99), spread(rep, ModeBare, "%.0f", p99)), verdict(lc.Latency.P99 <= bare.Latency.P99)},
			[3]string{"CPU per message ≤ 1.25× bare",
				fmt.Sprintf("%.1f vs %.1f µs (%.2f×; runs: livecgi %s; bare %s)", lc.CPUPerMsg, bare.CPUPerMsg, lc.CPUPerMsg/bare.CPUPerMsg, spread(rep, ModeLivecgi, "%.1f", cpu), spread(rep, ModeBare, "%.1f", cpu)), verdict(lc.CPUPerMsg <= 1.25*bare.CPUPerMsg)},
		)
		if wsd != nil && wsd.CPUPerMsg > 0 {
			rows = append(rows, [3]string{"… well under half of websocketd's", fmt.Sprintf("%.1f vs %.1f µs (%.2f×)", lc.CPUPerMsg, wsd.CPUPerMsg, lc.CPUPerMsg/wsd.CPUPerMsg), verdict(lc.CPUPerMsg < 0.5*wsd.CPUPerMsg)})
		}
		rows = append(rows, [3]string{"Memory per client ≤ 24 KB PSS (tree)", fmt.Sprintf("%.1f KB (bare %.1f KB, websocketd %s)", lc.PerClientPSS, bare.PerClientPSS, kb(wsd)), verdict(lc.PerClientPSS <= 24)})
	}
	if rep.SupervisorIdle.PID != 0 {
		rows = append(rows, [3]string{"Supervisor idle RSS ≤ 15 MB", fmt.Sprintf("%.1f MB (PSS %.1f, anon %.1f)", mb(rep.SupervisorIdle.RSS), mb(rep.SupervisorIdle.PSS), mb(rep.SupervisorIdle.Anon)), verdict(rep.SupervisorIdle.RSS <= 15*1024)})
	}
	if rep.SystemPlugin.PID != 0 {
		rows = append(rows, [3]string{"`system` plugin ≤ 4 MB private (anonymous)", fmt.Sprintf("%.1f MB anon (RSS %.1f MB)", mb(rep.SystemPlugin.Anon), mb(rep.SystemPlugin.RSS)), verdict(rep.SystemPlugin.Anon <= 4*1024)})
	}
	if rep.MemoryDefaults != "" {
		rows = append(rows, [3]string{"GOMEMLIMIT/GOGC defaults for small boards", rep.MemoryDefaults, "documented"})
	}
	if lcMax, bareMax := ceiling(rep, ModeLivecgi), ceiling(rep, ModeBare); bareMax > 0 {
		rows = append(rows, [3]string{"Fan-out ceiling ≥ 80 % of bare", fmt.Sprintf("%.0f vs %.0f msgs/s (%.0f %%)", lcMax, bareMax, 100*lcMax/bareMax), verdict(lcMax >= 0.8*bareMax)})
	}
	if rep.StubMedianMS > 0 {
		rows = append(rows, [3]string{"Stub median ≤ 5 ms through busybox httpd", fmt.Sprintf("%.2f ms (200 sequential ?connect)", rep.StubMedianMS), verdict(rep.StubMedianMS <= 5)})
	}
	if len(rep.FirstReadingMS) > 0 {
		mx := 0.0
		for _, v := range rep.FirstReadingMS {
			mx = max(mx, v)
		}
		rows = append(rows, [3]string{"First contact to first reading ≤ 500 ms", fmt.Sprintf("median %.0f ms, max %.0f ms (%d cold starts)", median(rep.FirstReadingMS), mx, len(rep.FirstReadingMS)), verdict(mx <= 500)})
	}
	return rows
}

func kb(r *Result) string {
	if r == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f KB", r.PerClientPSS)
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

// ceiling is the most readings per second sys delivered in the ceiling run.
func ceiling(rep *Report, sys string) float64 {
	best := 0.0
	for _, p := range rep.Ceiling {
		if p.Mode == sys {
			best = max(best, p.MsgsPerSec)
		}
	}
	return best
}

// series is one line of a plot.
type series struct {
	name, color, dash string
	pts               [][2]float64
}

var colors = map[string]string{ModeLivecgi: "#1f77b4", ModeSamePort: "#9467bd", ModeWebsocketd: "#d62728", ModeLongPoll: "#ff7f0e", ModeBare: "#2ca02c",
	ModePoll: "#8c564b", ModeExec: "#e377c2", ModeExecPeriodic: "#7f7f7f"}

// plotCompare draws p99 latency and memory per connection against clients.
func plotCompare(rep *Report) string {
	var lat, mem []series
	hzs := map[float64]bool{}
	for _, p := range rep.Points {
		hzs[p.Hz] = true
	}
	var hzList []float64
	for hz := range hzs {
		hzList = append(hzList, hz)
	}
	sort.Float64s(hzList)
	for i, hz := range hzList {
		dash := ""
		if i > 0 {
			dash = "6 4"
		}
		for _, sys := range allSystems {
			l := series{name: fmt.Sprintf("%s %g Hz", sys, hz), color: colors[sys], dash: dash}
			m := l
			for _, p := range rep.Points {
				if p.Mode == sys && p.Hz == hz && p.Received > 0 {
					l.pts = append(l.pts, [2]float64{float64(p.Clients), p.Latency.P99})
					if p.PerClientPSS > 0 {
						m.pts = append(m.pts, [2]float64{float64(p.Clients), p.PerClientPSS})
					}
				}
			}
			if len(l.pts) > 0 {
				lat = append(lat, l)
			}
			if len(m.pts) > 0 {
				mem = append(mem, m)
			}
		}
	}
	var b strings.Builder
	w, h := 1080, 440
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	panel(&b, 70, 40, 340, 300, "p99 latency (ms) against clients", "clients", lat)
	panel(&b, 510, 40, 340, 300, "memory per connection (KB PSS) against clients", "clients", mem)
	legend(&b, 870, 50, lat)
	m := rep.Machine
	fmt.Fprintf(&b, `<text x="20" y="%d" fill="#555">%s</text>`+"\n", h-14,
		html.EscapeString(fmt.Sprintf("%s, %d cores, %s; %g s per point; solid: %g Hz, dashed: higher rate; log scales", m.CPU, m.Cores, m.Go, rep.Duration, first(hzList))))
	b.WriteString("</svg>\n")
	return b.String()
}

func first(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

// plotCeiling draws delivered readings per second against the rate.
func plotCeiling(rep *Report) string {
	var ss []series
	offered := series{name: "offered", color: "#999", dash: "3 3"}
	for _, sys := range []string{ModeLivecgi, ModeBare} {
		s := series{name: sys, color: colors[sys]}
		for _, p := range rep.Ceiling {
			if p.Mode == sys && p.MsgsPerSec > 0 {
				s.pts = append(s.pts, [2]float64{p.Hz, p.MsgsPerSec})
				if sys == ModeBare {
					offered.pts = append(offered.pts, [2]float64{p.Hz, p.Hz * float64(p.Clients)})
				}
			}
		}
		if len(s.pts) > 0 {
			ss = append(ss, s)
		}
	}
	if len(offered.pts) > 0 {
		ss = append(ss, offered)
	}
	n := 0
	if len(rep.Ceiling) > 0 {
		n = rep.Ceiling[0].Clients
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="620" height="420" viewBox="0 0 620 420" font-family="sans-serif" font-size="12">`+"\n")
	b.WriteString(`<rect width="620" height="420" fill="white"/>` + "\n")
	panel(&b, 80, 40, 360, 300, fmt.Sprintf("readings delivered per second to %d clients", n), "sensor rate (Hz)", ss)
	legend(&b, 470, 50, ss)
	b.WriteString("</svg>\n")
	return b.String()
}

// panel draws a log-log line plot of ss at (x0, y0), size w×h.
func panel(b *strings.Builder, x0, y0, w, h float64, title, xlabel string, ss []series) {
	fmt.Fprintf(b, `<text x="%g" y="%g" font-weight="bold">%s</text>`+"\n", x0, y0-14, html.EscapeString(title))
	fmt.Fprintf(b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#333"/>`+"\n", x0, y0, w, h)
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	xs := map[float64]bool{}
	for _, s := range ss {
		for _, p := range s.pts {
			xmin, xmax = min(xmin, p[0]), max(xmax, p[0])
			ymin, ymax = min(ymin, p[1]), max(ymax, p[1])
			xs[p[0]] = true
		}
	}
	if math.IsInf(xmin, 0) {
		fmt.Fprintf(b, `<text x="%g" y="%g">no data</text>`+"\n", x0+w/2-20, y0+h/2)
		return
	}
	ymin = math.Max(ymin, 1e-3)
	lx0, lx1 := math.Log10(xmin), math.Log10(xmax)
	if lx1-lx0 < 1e-9 {
		lx0, lx1 = lx0-0.5, lx1+0.5
	}
	pad := (lx1 - lx0) * 0.06
	lx0, lx1 = lx0-pad, lx1+pad
	ly0, ly1 := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if ly1 <= ly0 {
		ly1 = ly0 + 1
	}
	px := func(x float64) float64 { return x0 + (math.Log10(x)-lx0)/(lx1-lx0)*w }
	py := func(y float64) float64 {
		return y0 + h - (math.Log10(math.Max(y, 1e-3))-ly0)/(ly1-ly0)*h
	}
	for e := ly0; e <= ly1; e++ {
		v := math.Pow(10, e)
		y := py(v)
		fmt.Fprintf(b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y, x0+w, y)
		fmt.Fprintf(b, `<text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, num(v))
	}
	var xl []float64
	for x := range xs {
		xl = append(xl, x)
	}
	sort.Float64s(xl)
	for _, x := range xl {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#eee"/>`+"\n", px(x), y0, px(x), y0+h)
		fmt.Fprintf(b, `<text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n", px(x), y0+h+16, num(x))
	}
	fmt.Fprintf(b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", x0+w/2, y0+h+34, html.EscapeString(xlabel))
	for _, s := range ss {
		var pts []string
		for _, p := range s.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), s.color, dash)
		for _, p := range s.pts {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s</title></circle>`+"\n", px(p[0]), py(p[1]), s.color, html.EscapeString(s.name), num(p[1]))
		}
	}
}

func legend(b *strings.Builder, x, y float64, ss []series) {
	for i, s := range ss {
		yy := y + float64(i)*18
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		fmt.Fprintf(b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="2"%s/>`+"\n", x, yy, x+24, yy, s.color, dash)
		fmt.Fprintf(b, `<text x="%g" y="%g">%s</text>`+"\n", x+30, yy+4, html.EscapeString(s.name))
	}
}

// num formats an axis value briefly.
func num(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%gk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.3g", v)
	}
	return fmt.Sprintf("%.2g", v)
}
