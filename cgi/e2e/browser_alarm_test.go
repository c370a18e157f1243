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
// heartbeat 2 s), two alarms on it and its history recorded every second,
// and a sensor that never changes (read every 200 ms, heartbeat 3 s), over
// the supervisor's WebSocket and over long polling on a phone's screen
// (390 × 844):
//   - alarms: the number crosses the thresholds: the banner lists both
//     alarms, worst first, the card is marked critical, the transitions
//     list grows, newest first; back under the clear value, the banner
//     goes and the list grows again;
//   - history: the card's chart asks for the history: avg line and
//     min–max band for each range chosen, and a CSV link to the stub's
//     route, which answers the CSV;
//   - heartbeat: the sensor that never changes is never stale (only its
//     heartbeat comes), and says since when its value is what it is; the
//     other's card follows its changes; the stream silent for over twice
//     its heartbeat goes stale until it speaks again;
//   - stale alarms: the stream's alarms go stale while it is silent, and
//     back to ok when it speaks.
//
// The heartbeats leave a slow machine a second or two of slack before a
// sensor goes stale; the lists are checked by their newest lines.
func TestBrowserAlarms(t *testing.T) {
	chromium := mustTool(t, chromiumPath)
	busybox := mustTool(t, "busybox")
	t.Run("ws", func(t *testing.T) { testBrowserAlarms(t, chromium, busybox, "ws") })
	t.Run("poll", func(t *testing.T) { testBrowserAlarms(t, chromium, busybox, "poll") })
}

// alarmPage is one browser on the dashboard for TestBrowserAlarms.
type alarmPage struct {
	b         *browser
	e         env
	transport string
}

// step waits for the JavaScript condition cond, failing t after timeout.
func (p *alarmPage) step(t *testing.T, name string, timeout time.Duration, cond string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.b.ctx, timeout)
	defer cancel()
	start := time.Now()
	if err := waitFor(ctx, cond); err != nil {
		p.dump(t)
		t.Fatalf("%s: %v", name, err)
	}
	t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond))
}

func (p *alarmPage) eval(t *testing.T, js string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.dump(t)
		t.Fatalf("%s: %v", js, err)
	}
	return s
}

func (p *alarmPage) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.dump(t)
		t.Fatal(err)
	}
}

// shot keeps a screenshot: beside LIVECGI_SCREENSHOT when set.
func (p *alarmPage) shot(t *testing.T, name string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), name+".png")
	if s := os.Getenv("LIVECGI_SCREENSHOT"); s != "" {
		file = strings.TrimSuffix(s, ".png") + "-" + name + "-" + p.transport + ".png"
	}
	if png, err := chromedp.Run(p.b.ctx, chromedp.FullScreenshot(100)); err == nil {
		os.WriteFile(file, png, 0o644)
	}
	t.Logf("screenshot %s", file)
}

// dump logs what the page shows, for a failed step.
func (p *alarmPage) dump(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		alarms: window.live && [...live.alarms.values()],
		banner: document.querySelector("#alarms").innerText,
		log: document.querySelector("#log").innerText,
		cards: [...document.querySelectorAll('.card[data-sensor^="exec."]')].map(c => [c.dataset.sensor, c.dataset.value, c.dataset.alarm, c.dataset.stale, c.dataset.changed, c.querySelector(".meta").textContent]),
		values: window.live && [...live.values.values()].filter(r => r.sensor.startsWith("exec.")),
		sensors: window.live && [...live.sensors.values()].filter(s => s.plugin === "exec"),
		chart: Object.assign({}, document.querySelector("dialog#chart svg").dataset, {text: document.querySelector("dialog#chart p").textContent}),
	})`))
	t.Logf("alarms, cards and chart: %s (%v)", s, err)
	p.b.dump(t)
	logs(t, p.e)
}

const (
	tempCard   = `document.querySelector('.card[data-sensor="exec.temp"]')`
	steadyCard = `document.querySelector('.card[data-sensor="exec.steady"]')`
	chart      = `document.querySelector("dialog#chart")`
	// fits: nothing sticks out sideways (on the phone: no sideways scroll).
	fits = `document.documentElement.scrollWidth <= innerWidth`
)

// alarmStates is the JavaScript for the "name:state" words of the
// alarm lines under sel.
func alarmStates(sel string) string {
	return fmt.Sprintf(`[...document.querySelectorAll(%q)].map(li => li.dataset.alarm + ":" + li.dataset.state).join(" ")`, sel)
}

func testBrowserAlarms(t *testing.T, chromium, busybox, transport string) {
	data := t.TempDir() // the program's input: value, and pause while it exists
	value, pause := filepath.Join(data, "value"), filepath.Join(data, "pause")
	set := func(t *testing.T, v string) {
		t.Helper()
		tmp := value + ".new"
		if err := os.WriteFile(tmp, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, value); err != nil {
			t.Fatal(err)
		}
	}
	set(t, "20")
	execDir := filepath.Join(t.TempDir(), "exec.d")
	os.Mkdir(execDir, 0o755)
	confs := map[string]string{
		"temp.conf": fmt.Sprintf("run = /bin/sh -c 'while :; do [ -e %s ] || cat %s; sleep 0.2; done'\n", pause, value) +
			"mode = stream\ntype = number\nunit = °C\ntitle = Board\ndeadband = 0\nheartbeat = 2s\n",
		"steady.conf": "run = /bin/echo 7\ninterval = 200ms\ntitle = Steady\ndeadband = 0\nheartbeat = 3s\n",
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
	p := &alarmPage{b: mustBrowser(t, chromium), e: e, transport: transport}

	if transport == "poll" { // and a phone's screen: small screens must work too
		p.do(t, chromedp.EmulateViewport(390, 844))
	}
	p.do(t, chromedp.Navigate(stub))
	p.step(t, "live", 60*time.Second, fmt.Sprintf(`(c => c.dataset.state === "live" && c.dataset.transport === %q)(document.querySelector("#conn"))`, transport))
	p.step(t, "cards", 60*time.Second, `!!`+tempCard+` && !!`+steadyCard+` && `+tempCard+`.dataset.value === "20" && `+steadyCard+`.dataset.value === "7"`)
	// Watch the steady sensor's card and readings from now on.
	p.eval(t, `(() => {
		window.steadyStale = [];
		new MutationObserver(() => window.steadyStale.push(`+steadyCard+`.dataset.stale)).observe(`+steadyCard+`, {attributes: true, attributeFilter: ["data-stale"]});
		window.steadyReadings = [];
		live.watch("exec.steady", (r) => window.steadyReadings.push(r));
		return "";
	})()`)

	t.Run("alarms", func(t *testing.T) {
		p.step(t, "every alarm, ok", 60*time.Second, `live.alarms.size === 2 && [...live.alarms.values()].every(a => a.state === "ok")`)
		if got := p.eval(t, `[document.querySelector("#alarms").hidden, `+tempCard+`.hasAttribute("data-alarm"), document.querySelector("#log").hidden].join(" ")`); got != "true false true" {
			t.Errorf("before any alarm: banner hidden, card marked, log hidden: %s, want true false true", got)
		}

		// Over the thresholds: warm at once, hot after its second.
		set(t, "60")
		p.step(t, "the banner lists both alarms, worst first", 60*time.Second,
			alarmStates("#alarms li")+` === "hot:critical warm:warning" && !document.querySelector("#alarms").hidden`)
		p.step(t, "the card is marked critical", 10*time.Second, tempCard+`.dataset.alarm === "critical" && `+tempCard+`.dataset.value === "60"`)
		p.step(t, "the transitions, newest first", 10*time.Second, alarmStates("#log li")+`.startsWith("hot:critical warm:warning") && !document.querySelector("#log").hidden`)
		banner := p.eval(t, `document.querySelector("#alarms").innerText`)
		t.Logf("banner: %q", banner)
		if !strings.Contains(banner, "critical") || !strings.Contains(banner, "hot") || !strings.Contains(banner, "since ") {
			t.Errorf("banner %q: want the state, the name and since when", banner)
		}
		if p.eval(t, `String(`+fits+`)`) != "true" {
			t.Errorf("the page with its banner is wider than the window: %s", p.eval(t, `document.documentElement.scrollWidth + " > " + innerWidth`))
		}
		p.shot(t, "alarms")

		// Back under the clear value: both clear; the list grows.
		set(t, "20")
		p.step(t, "the banner goes", 60*time.Second, `document.querySelector("#alarms").hidden && document.querySelectorAll("#alarms li").length === 0 && !`+tempCard+`.hasAttribute("data-alarm")`)
		p.step(t, "the clearing transitions head the list", 10*time.Second,
			`(s => s.slice(0, 2).sort().join(" ") === "hot:ok warm:ok" && s.slice(2, 4).join(" ") === "hot:critical warm:warning")(`+alarmStates("#log li")+`.split(" "))`)
	})

	t.Run("history", func(t *testing.T) {
		defer chromedp.Do(p.b.ctx, chromedp.KeyEvent(kb.Escape)) // the dialog closed for the next ones
		p.step(t, "the sensor is recorded", 30*time.Second, `live.sensors.get("exec.temp").record_ms === 1000`)
		p.do(t, chromedp.Click(chromedp.CSS(`.card[data-sensor="exec.temp"]`)))
		p.step(t, "the chart opens with its ranges", 10*time.Second, chart+`.open && !`+chart+`.querySelector("nav").hidden && !!`+chart+`.querySelector('nav button[data-range="3600000"][aria-pressed="true"]')`)
		// drawn: the history of range ms is drawn, 2 points at least,
		// each point a vertex of the line and two of the band (its max
		// and its min).
		drawn := func(ms int) string {
			return fmt.Sprintf(`((d, svg) => !!d.querySelector('nav button[data-range="%d"][aria-pressed="true"]') && svg.dataset.state === "ok"
				&& Number(svg.dataset.to) - Number(svg.dataset.from) === %d && Number(svg.dataset.points) >= 2
				&& [...svg.querySelectorAll("polygon")].reduce((n, p) => n + p.points.numberOfItems, 0) === 2 * Number(svg.dataset.points)
				&& [...svg.querySelectorAll("polyline")].reduce((n, p) => n + p.points.numberOfItems, 0) >= 2)(%s, %s.querySelector("svg"))`, ms, ms, chart, chart)
		}
		p.do(t, chromedp.Click(chromedp.CSS(`dialog#chart nav button[data-range="600000"]`)))
		p.step(t, "10 min of history: avg line and min–max band", 60*time.Second, drawn(600000))
		from, to := p.eval(t, chart+`.querySelector("svg").dataset.from`), p.eval(t, chart+`.querySelector("svg").dataset.to`)
		if href, want := p.eval(t, chart+`.querySelector("nav a").href`), stub+"?history=exec.temp&from="+from+"&to="+to; href != want {
			t.Errorf("CSV link %q, want %q", href, want)
		}
		if got := p.eval(t, chart+`.querySelector("nav a").download`); got != "exec.temp.csv" {
			t.Errorf("CSV link downloads as %q, want exec.temp.csv", got)
		}
		if p.eval(t, `String(`+fits+` && `+chart+`.getBoundingClientRect().right <= innerWidth)`) != "true" {
			t.Errorf("the chart is wider than the window")
		}
		p.shot(t, "chart")
		// The link's CSV, as the browser gets it.
		status, body, _ := strings.Cut(p.eval(t, `fetch(`+chart+`.querySelector("nav a").href).then(r => r.text().then(t => r.status + "\n" + t))`), "\n")
		lines := strings.Split(strings.TrimSpace(body), "\n")
		if status != "200" || lines[0] != "time,min,avg,max" || len(lines) < 3 || !strings.Contains(body, ",20,20,20") {
			t.Errorf("CSV: HTTP %s:\n%.500s\nwant 200, the header and the samples (20 among them)", status, body)
		}
		t.Logf("CSV: %d lines, %q…", len(lines), lines[:min(3, len(lines))])
		p.do(t, chromedp.Click(chromedp.CSS(`dialog#chart nav button[data-range="86400000"]`)))
		p.step(t, "24 h of history", 60*time.Second, drawn(86400000)+` && [...`+chart+`.querySelectorAll("svg text")].some(t => t.textContent === "now")`)
		t.Logf("chart: %s", p.eval(t, chart+`.querySelector("p").textContent`))
	})
	p.step(t, "the chart is closed", 10*time.Second, `!`+chart+`.open`)

	t.Run("heartbeat", func(t *testing.T) {
		defer os.Remove(pause)
		// The steady sensor: its value never changes, so only its
		// heartbeat comes, every 3 s, while it is read every 200 ms: it
		// is never stale, and its card says since when the value is what
		// it is.
		p.step(t, "the heartbeats", 30*time.Second, `live.sensors.get("exec.steady").heartbeat_ms === 3000 && live.sensors.get("exec.temp").heartbeat_ms === 2000`)
		p.step(t, "heartbeats of the steady sensor", 60*time.Second, `window.steadyReadings.length >= 3`)
		if got := p.eval(t, `window.steadyStale.join(" ")`); strings.Contains(got, "true") {
			t.Errorf("the steady sensor went stale between its heartbeats: data-stale went %s", got)
		}
		p.step(t, "it says since when its value has not changed", 30*time.Second, `(c => {
			const rs = window.steadyReadings, r = rs[rs.length - 1], m = /^changed (\d+) (s|min) ago$/.exec(c.querySelector(".changed").textContent);
			return rs.every(x => x.changed === rs[0].changed) && r.t - r.changed >= 4000 && String(r.changed) === c.dataset.changed && !!m && (m[2] === "min" || Number(m[1]) >= 4);
		})(`+steadyCard+`)`)
		t.Logf("steady: %s; readings t−changed: %s", p.eval(t, steadyCard+`.querySelector(".meta").textContent`), p.eval(t, `window.steadyReadings.map(r => r.t - r.changed).join(" ")`))

		// A value that changes (below the alarms' thresholds): so does
		// its card's "changed".
		changed := p.eval(t, tempCard+`.dataset.changed`)
		set(t, "25")
		p.step(t, "the card says its value changed", 30*time.Second, fmt.Sprintf(`%s.dataset.value === "25" && Number(%s.dataset.changed) > Number(%q) && /^changed (just now|\d+ s ago)$/.test(%s.querySelector(".changed").textContent)`, tempCard, tempCard, changed, tempCard))
		set(t, "20")

		// The stream silent for over twice its heartbeat: stale.
		if err := os.WriteFile(pause, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		p.step(t, "the silent sensor goes stale", 30*time.Second, tempCard+`.dataset.stale === "true" && /^stale · \d+ s/.test(`+tempCard+`.querySelector(".meta").textContent.trim())`)
		p.shot(t, "stale")
		if err := os.Remove(pause); err != nil {
			t.Fatal(err)
		}
		p.step(t, "it speaks again", 30*time.Second, tempCard+`.dataset.stale === "false"`)
	})

	t.Run("stale alarms", func(t *testing.T) {
		defer os.Remove(pause)
		p.step(t, "every alarm, ok", 30*time.Second, `live.alarms.size === 2 && [...live.alarms.values()].every(a => a.state === "ok")`)
		if err := os.WriteFile(pause, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		p.step(t, "the silent sensor's alarms go stale", 30*time.Second, alarmStates("#alarms li")+` === "hot:stale warm:stale" && `+tempCard+`.dataset.alarm === "stale"`)
		if err := os.Remove(pause); err != nil {
			t.Fatal(err)
		}
		p.step(t, "and back to ok when it speaks", 30*time.Second, `document.querySelector("#alarms").hidden && !`+tempCard+`.hasAttribute("data-alarm")`)
		p.step(t, "four more transitions", 10*time.Second, `(s => s.slice(0, 2).sort().join(" ") === "hot:ok warm:ok" && s.slice(2, 4).sort().join(" ") === "hot:stale warm:stale")(`+alarmStates("#log li")+`.split(" "))`)
	})
	p.b.checkConsole(t)
}
