package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestBrowserAlarms opens the dashboard in headless Chromium through
// busybox httpd, with the real supervisor and the exec plugin running a
// program that prints the number in a file the test writes (a stream,
// heartbeat 1 s), two alarms on it and its history recorded every second,
// over the supervisor's WebSocket and over long polling on a phone's
// screen (390 × 844):
//   - the number crosses the thresholds: the banner lists both alarms,
//     worst first, the card is marked critical, the transitions list
//     grows, newest first; back under the clear value, the banner goes
//     and the list grows again;
//   - the card's chart asks for the history: avg line and min–max band
//     for each range chosen, and a CSV link to the stub's route, which
//     answers the CSV;
//   - a sensor reported by exception (the same value, sent again every
//     2 s heartbeat, read every 200 ms) is never stale, and says since
//     when its value has not changed; the stream silent for over twice
//     its heartbeat goes stale, and its alarms with it, until it speaks
//     again.
func TestBrowserAlarms(t *testing.T) {
	chromium := mustTool(t, chromiumPath)
	busybox := mustTool(t, "busybox")
	t.Run("ws", func(t *testing.T) { testBrowserAlarms(t, chromium, busybox, "ws") })
	t.Run("poll", func(t *testing.T) { testBrowserAlarms(t, chromium, busybox, "poll") })
}

func testBrowserAlarms(t *testing.T, chromium, busybox, transport string) {
	data := t.TempDir() // the program's input: value, and pause while it exists
	value, pause := filepath.Join(data, "value"), filepath.Join(data, "pause")
	set := func(v string) {
		t.Helper()
		tmp := value + ".new"
		if err := os.WriteFile(tmp, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, value); err != nil {
			t.Fatal(err)
		}
	}
	set("20")
	execDir := filepath.Join(t.TempDir(), "exec.d")
	os.Mkdir(execDir, 0o755)
	confs := map[string]string{
		"temp.conf": fmt.Sprintf("run = /bin/sh -c 'while :; do [ -e %s ] || cat %s; sleep 0.2; done'\n", pause, value) +
			"mode = stream\ntype = number\nunit = °C\ntitle = Board\ndeadband = 0\nheartbeat = 1s\n",
		"steady.conf": "run = /bin/echo 7\ninterval = 200ms\ntitle = Steady\ndeadband = 0\nheartbeat = 2s\n",
	}
	for name, conf := range confs {
		if err := os.WriteFile(filepath.Join(execDir, name), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := "exec_dir = " + execDir + "\n" +
		"alarm.hot = exec.temp above 50 for 1s clear 45 critical\n" +
		"alarm.warm = exec.temp above 30 warning\n" +
		"record.exec.temp = 1s\n"
	if transport == "poll" { // the WebSocket port out of reach: a closed port
		conf += fmt.Sprintf("public_port = %d\n", freePort(t))
	}
	e := mustEnvWith(t, conf, "exec")
	port := mustStartServer(t, busyboxServer(), busybox, e)
	stub := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port)

	b := mustBrowser(t, chromium)
	step := func(name string, timeout time.Duration, cond string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, timeout)
		defer cancel()
		start := time.Now()
		if err := waitFor(ctx, cond); err != nil {
			alarmDump(t, b)
			b.dump(t)
			logs(t, e)
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond))
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	do := func(actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			alarmDump(t, b)
			t.Fatal(err)
		}
	}
	shot := func(name string) {
		t.Helper()
		file := filepath.Join(t.TempDir(), name+".png")
		if s := os.Getenv("LIVECGI_SCREENSHOT"); s != "" {
			file = strings.TrimSuffix(s, ".png") + "-" + name + "-" + transport + ".png"
		}
		if png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(file, png, 0o644)
		}
		t.Logf("screenshot %s", file)
	}
	// fits: nothing sticks out sideways (on the phone: no sideways scroll).
	fits := `document.documentElement.scrollWidth <= innerWidth`
	const temp = `document.querySelector('.card[data-sensor="exec.temp"]')`
	const steady = `document.querySelector('.card[data-sensor="exec.steady"]')`
	const states = `[...document.querySelectorAll(%q)].map(li => li.dataset.alarm + ":" + li.dataset.state).join(" ")`

	if transport == "poll" { // and a phone's screen: small screens must work too
		do(chromedp.EmulateViewport(390, 844))
	}
	do(chromedp.Navigate(stub))
	step("live", 60*time.Second, fmt.Sprintf(`(c => c.dataset.state === "live" && c.dataset.transport === %q)(document.querySelector("#conn"))`, transport))
	step("cards and alarms", 60*time.Second, temp+`.dataset.value === "20" && `+steady+`.dataset.value === "7"`+
		` && live.alarms.size === 2 && [...live.alarms.values()].every(a => a.state === "ok")`)
	if got := eval(`[document.querySelector("#alarms").hidden, ` + temp + `.hasAttribute("data-alarm"), document.querySelector("#log").hidden].join(" ")`); got != "true false true" {
		t.Errorf("before any alarm: banner hidden, card marked, log hidden: %s, want true false true", got)
	}
	// Watch the steady sensor's card and readings from now on.
	eval(`(() => {
		window.steadyStale = [];
		new MutationObserver(() => window.steadyStale.push(` + steady + `.dataset.stale)).observe(` + steady + `, {attributes: true, attributeFilter: ["data-stale"]});
		window.steadyReadings = [];
		live.watch("exec.steady", (r) => window.steadyReadings.push(r));
		window.changed0 = Number(` + temp + `.dataset.changed);
		return "";
	})()`)

	// Over the thresholds: warm at once, hot after its second.
	set("60")
	step("the banner lists both alarms, worst first", 60*time.Second,
		fmt.Sprintf(states, "#alarms li")+` === "hot:critical warm:warning" && !document.querySelector("#alarms").hidden`)
	step("the card is marked critical", 10*time.Second, temp+`.dataset.alarm === "critical" && `+temp+`.dataset.value === "60"`)
	step("the transitions, newest first", 10*time.Second, fmt.Sprintf(states, "#log li")+` === "hot:critical warm:warning" && !document.querySelector("#log").hidden`)
	step("the card's value changed", 10*time.Second, `Number(`+temp+`.dataset.changed) > window.changed0 && /^changed (just now|\d+ s ago)$/.test(`+temp+`.querySelector(".changed").textContent)`)
	banner := eval(`document.querySelector("#alarms").innerText`)
	t.Logf("banner: %q", banner)
	if !strings.Contains(banner, "critical") || !strings.Contains(banner, "hot") || !strings.Contains(banner, "since ") {
		t.Errorf("banner %q: want the state, the name and since when", banner)
	}
	if eval(`String(`+fits+`)`) != "true" {
		t.Errorf("the page with its banner is wider than the window: %s", eval(`document.documentElement.scrollWidth + " > " + innerWidth`))
	}
	shot("alarms")

	// The chart: a click on the card; the history over 10 min, then 24 h.
	do(chromedp.Click(chromedp.CSS(`.card[data-sensor="exec.temp"]`)))
	const dialog = `document.querySelector("dialog#chart")`
	step("the chart opens with its ranges", 10*time.Second, dialog+`.open && !`+dialog+`.querySelector("nav").hidden && !!`+dialog+`.querySelector('nav button[data-range="3600000"][aria-pressed="true"]')`)
	// drawn: the history of range ms is drawn, 2 points at least, each
	// point a vertex of the line and two of the band (max and min).
	drawn := func(ms int) string {
		return fmt.Sprintf(`((d, svg) => !!d.querySelector('nav button[data-range="%d"][aria-pressed="true"]') && svg.dataset.state === "ok"
			&& Number(svg.dataset.to) - Number(svg.dataset.from) === %d && Number(svg.dataset.points) >= 2
			&& [...svg.querySelectorAll("polygon")].reduce((n, p) => n + p.points.numberOfItems, 0) === 2 * Number(svg.dataset.points)
			&& [...svg.querySelectorAll("polyline")].reduce((n, p) => n + p.points.numberOfItems, 0) >= 2)(%s, %s.querySelector("svg"))`, ms, ms, dialog, dialog)
	}
	do(chromedp.Click(chromedp.CSS(`dialog#chart nav button[data-range="600000"]`)))
	step("10 min of history: avg line and min–max band", 60*time.Second, drawn(600000))
	from, to := eval(dialog+`.querySelector("svg").dataset.from`), eval(dialog+`.querySelector("svg").dataset.to`)
	if href, want := eval(dialog+`.querySelector("nav a").href`), stub+"?history=exec.temp&from="+from+"&to="+to; href != want {
		t.Errorf("CSV link %q, want %q", href, want)
	}
	if got := eval(dialog + `.querySelector("nav a").download`); got != "exec.temp.csv" {
		t.Errorf("CSV link downloads as %q, want exec.temp.csv", got)
	}
	if eval(`String(`+fits+` && `+dialog+`.getBoundingClientRect().right <= innerWidth)`) != "true" {
		t.Errorf("the chart is wider than the window")
	}
	shot("chart")
	csvStatus, csvBody := "", ""
	{
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch(`+dialog+`.querySelector("nav a").href).then(r => r.text().then(t => r.status + "\n" + t))`, chromedp.EvalAwaitPromise))
		cancel()
		if err != nil {
			t.Fatalf("fetch the CSV: %v", err)
		}
		csvStatus, csvBody, _ = strings.Cut(got, "\n")
	}
	lines := strings.Split(strings.TrimSpace(csvBody), "\n")
	if csvStatus != "200" || lines[0] != "time,min,avg,max" || len(lines) < 3 || !strings.Contains(csvBody, ",60,60,60") {
		t.Errorf("CSV: HTTP %s:\n%.500s\nwant 200, the header and the samples (60 among them)", csvStatus, csvBody)
	}
	t.Logf("CSV: %d lines, %q…", len(lines), lines[:min(3, len(lines))])
	do(chromedp.Click(chromedp.CSS(`dialog#chart nav button[data-range="86400000"]`)))
	step("24 h of history", 60*time.Second, drawn(86400000)+` && [...`+dialog+`.querySelectorAll("svg text")].some(t => t.textContent === "now")`)
	t.Logf("chart: %s", eval(dialog+`.querySelector("p").textContent`))
	do(chromedp.KeyEvent(kb.Escape))
	step("the chart closes", 10*time.Second, `!`+dialog+`.open`)

	// Back under the clear value: both clear; the list grows.
	set("20")
	step("the banner goes", 60*time.Second, `document.querySelector("#alarms").hidden && document.querySelectorAll("#alarms li").length === 0 && !`+temp+`.hasAttribute("data-alarm")`)
	step("the clearing transitions head the list", 10*time.Second,
		`(s => s.length === 4 && s.slice(0, 2).sort().join(" ") === "hot:ok warm:ok" && s.slice(2).join(" ") === "hot:critical warm:warning")(`+fmt.Sprintf(states, "#log li")+`.split(" "))`)

	// The steady sensor: its value never changes, so only its heartbeat
	// comes, every 2 s, while it is read every 200 ms: it is never stale,
	// and its card says since when the value is what it is.
	step("heartbeats of the steady sensor", 60*time.Second, `window.steadyReadings.length >= 3`)
	if got := eval(`window.steadyStale.join(" ")`); strings.Contains(got, "true") {
		t.Errorf("the steady sensor went stale between its heartbeats: data-stale went %s", got)
	}
	step("it says since when its value has not changed", 30*time.Second, `(c => {
		const rs = window.steadyReadings, r = rs[rs.length - 1], m = /^changed (\d+) (s|min) ago$/.exec(c.querySelector(".changed").textContent);
		return rs.every(x => x.changed === rs[0].changed) && r.t - r.changed >= 4000 && String(r.changed) === c.dataset.changed && !!m && (m[2] === "min" || Number(m[1]) >= 4);
	})(`+steady+`)`)
	t.Logf("steady: %s; readings t−changed: %s", eval(steady+`.querySelector(".meta").textContent`), eval(`window.steadyReadings.map(r => r.t - r.changed).join(" ")`))

	// Silent for over twice its heartbeat: stale, and its alarms too.
	if err := os.WriteFile(pause, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	step("the silent sensor goes stale", 30*time.Second, temp+`.dataset.stale === "true" && /^stale · \d+ s/.test(`+temp+`.querySelector(".meta").textContent.trim())`)
	step("its alarms go stale", 30*time.Second, fmt.Sprintf(states, "#alarms li")+` === "hot:stale warm:stale" && `+temp+`.dataset.alarm === "stale"`)
	shot("stale")
	if err := os.Remove(pause); err != nil {
		t.Fatal(err)
	}
	step("it speaks again", 30*time.Second, temp+`.dataset.stale === "false" && document.querySelector("#alarms").hidden && !`+temp+`.hasAttribute("data-alarm")`)
	if n := eval(`String(document.querySelectorAll("#log li").length)`); n != "8" {
		t.Errorf("log: %s transitions (%s), want 8", n, eval(fmt.Sprintf(states, "#log li")))
	}
	b.checkConsole(t)
}

// alarmDump logs what the page shows of alarms and the chart, for a failed
// step.
func alarmDump(t *testing.T, b *browser) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		alarms: window.live && [...live.alarms.values()],
		banner: document.querySelector("#alarms").innerText,
		log: document.querySelector("#log").innerText,
		cards: [...document.querySelectorAll(".card[data-sensor]")].map(c => [c.dataset.sensor, c.dataset.value, c.dataset.alarm, c.dataset.stale, c.dataset.changed, c.querySelector(".meta").textContent]),
		sensors: window.live && [...live.sensors.values()],
		chart: Object.assign({}, document.querySelector("dialog#chart svg").dataset, {text: document.querySelector("dialog#chart p").textContent}),
	})`))
	t.Logf("alarms and chart: %s (%v)", s, err)
}
