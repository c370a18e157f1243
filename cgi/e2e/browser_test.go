package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto/testkit"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// TestBrowser opens the dashboard in headless Chromium through busybox
// httpd, with the real supervisor and the system and leds plugins: the
// page goes live, readings flow, a command changes an LED on the (fixture)
// sysfs and its card follows, and a supervisor killed with SIGKILL is
// replaced by the page's own reconnect, which asks the stub for a new one.
//
// LIVECGI_SCREENSHOT=path.png saves a full-page screenshot there; it goes
// to the test's temp dir otherwise.
func TestBrowser(t *testing.T) {
	chromium := mustTool(t, chromiumPath)
	busybox := mustTool(t, "busybox")

	sysRoot := sdktest.CopyFixture(t, filepath.Join("..", "..", "plugins", "leds", "testdata", "sys"))
	// auth = none: everyone is a viewer; this one command is opened to
	// viewers (TestBrowserRoles signs people in). Uptime is sent on every
	// change (every 5 s), not only past its deadband of a minute: the
	// test watches it change.
	e := mustEnvWith(t, "sys_root = "+sysRoot+"\ncommand_role = leds.set_brightness viewer\ndeadband.system.uptime_seconds = 0\n", "system", "leds")
	var srv server
	for _, s := range servers {
		if s.name == "busybox" {
			srv = s
		}
	}
	port := mustStartServer(t, srv, busybox, e)
	page := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port)

	b := mustBrowser(t, chromium)
	ctx := b.ctx
	step := func(name string, timeout time.Duration, f func(ctx context.Context) error) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		start := time.Now()
		if err := f(sctx); err != nil {
			b.dump(t)
			logs(t, e)
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond))
	}
	attr := func(ctx context.Context, sel, name string) (string, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[string](
			fmt.Sprintf(`(document.querySelector(%s) || {dataset: {}}).dataset[%s] || ""`, strconv.Quote(sel), strconv.Quote(name))))
	}
	// changes waits until the data-value of sensor's card is set and then
	// differs from what it was first.
	changes := func(sensor string) func(ctx context.Context) error {
		sel := fmt.Sprintf(`.card[data-sensor=%q]`, sensor)
		return func(ctx context.Context) error {
			if err := waitFor(ctx, fmt.Sprintf(`!!(document.querySelector(%q) || {dataset: {}}).dataset.value`, sel)); err != nil {
				return err
			}
			first, err := attr(ctx, sel, "value")
			if err != nil {
				return err
			}
			return waitFor(ctx, fmt.Sprintf(`(v => v && v !== %q)(document.querySelector(%q).dataset.value)`, first, sel))
		}
	}

	step("open the dashboard", 30*time.Second, func(ctx context.Context) error {
		if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
			return err
		}
		return waitFor(ctx, `document.querySelector("#conn").dataset.state === "live"`)
	})
	step("plugins and cards", 20*time.Second, func(ctx context.Context) error {
		return waitFor(ctx, `["system", "leds", "livecgid"].every(p => document.querySelector('section[data-plugin="' + p + '"][data-state="online"]'))`+
			` && !!document.querySelector('.card[data-sensor="leds.led0_brightness"]')`)
	})
	step("a reading changes", 30*time.Second, changes("system.uptime_seconds"))

	// The command, through the form as a user would.
	brightness := filepath.Join(sysRoot, "class", "leds", "led0", "brightness")
	form := `form[data-command="leds.set_brightness"]`
	step("set an LED's brightness", 30*time.Second, func(ctx context.Context) error {
		if err := chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.CSS(form+` [data-arg="led"]`)),
			chromedp.SetValue(chromedp.CSS(form+` [data-arg="led"]`), "led0"),
			chromedp.SetValue(chromedp.CSS(form+` [data-arg="value"]`), "42"),
			chromedp.Click(chromedp.CSS(form+` button[type="submit"]`)),
		); err != nil {
			return err
		}
		out := `output[data-result-for="leds.set_brightness"]`
		if err := waitFor(ctx, fmt.Sprintf(`["ok", "error"].includes(document.querySelector(%q).dataset.state)`, out)); err != nil {
			return err
		}
		state, _ := attr(ctx, out, "state")
		text, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(out)))
		if state != "ok" {
			return fmt.Errorf("result %s: %q", state, text)
		}
		t.Logf("set_brightness answered %q", text)
		return waitFor(ctx, `document.querySelector('.card[data-sensor="leds.led0_brightness"]').dataset.value === "42"`)
	})
	if got, err := os.ReadFile(brightness); err != nil || strings.TrimSpace(string(got)) != "42" {
		t.Errorf("%s holds %q (%v), want 42", brightness, got, err)
	}
	if text, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`.card[data-sensor="leds.led0_brightness"] .value`))); err != nil || text != "42" {
		t.Errorf("led0 brightness card shows %q (%v), want 42", text, err)
	}

	// Let the sparklines gather a few points, then take the picture.
	step("more readings", 30*time.Second, changes("system.uptime_seconds"))
	shot := os.Getenv("LIVECGI_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "dashboard.png")
	}
	step("screenshot", 30*time.Second, func(ctx context.Context) error {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG")) {
			return fmt.Errorf("screenshot is not a PNG: % x", png[:min(8, len(png))])
		}
		return os.WriteFile(shot, png, 0o644)
	})
	t.Logf("screenshot: %s", shot)

	// A long title wraps to two lines at most, the whole of it in title.
	step("titles wrap", 10*time.Second, func(ctx context.Context) error {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
			const el = document.querySelector('.card[data-sensor="livecgid.coalesced_total"] .title');
			return [getComputedStyle(el).webkitLineClamp, getComputedStyle(el).whiteSpace, el.title.split("\n")[0]].join("|");
		})()`))
		if want := "2|normal|Readings coalesced for slow clients"; err != nil || got != want {
			return fmt.Errorf("title: %q (%v), want line clamp|white-space|title %q", got, err, want)
		}
		return nil
	})
	// A click on a card opens its chart: an SVG with both axes labelled
	// and the history as a line; Esc closes it.
	step("open a chart", 20*time.Second, func(ctx context.Context) error {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`.card[data-sensor="system.uptime_seconds"]`))); err != nil {
			return err
		}
		return waitFor(ctx, `(() => {
			const d = document.querySelector("dialog#chart"), texts = [...d.querySelectorAll("svg text")].map(t => t.textContent);
			return d.open && d.querySelector("h2").textContent === "Uptime" && !!d.querySelector("svg polyline") &&
				texts.includes("latest") && texts.some(t => /^−\d+ (s|min)$/.test(t)) && texts.filter(t => / s$|^\d/.test(t)).length >= 3;
		})()`)
	})
	labels, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("dialog#chart svg text")].map(t => t.textContent).join(", ") + " | " + document.querySelector("dialog#chart p").textContent`))
	t.Logf("chart: %s", labels)
	step("close the chart", 10*time.Second, func(ctx context.Context) error {
		if err := chromedp.Do(ctx, chromedp.KeyEvent(kb.Escape)); err != nil {
			return err
		}
		return waitFor(ctx, `!document.querySelector("dialog#chart").open`)
	})

	// Kill the supervisor hard; the page must notice, reconnect by itself
	// (its ?connect starts a new supervisor) and show fresh readings.
	before := testkit.Supervisors(e.state)
	if len(before) != 1 {
		t.Fatalf("supervisors before the kill: %v, want one", before)
	}
	step("watch the indicator", 10*time.Second, func(ctx context.Context) error {
		_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
			const conn = document.querySelector("#conn");
			window.connStates = [];
			new MutationObserver(() => window.connStates.push(conn.dataset.state)).observe(conn, {attributes: true, attributeFilter: ["data-state"]});
			return true;
		})()`))
		return err
	})
	testkit.KillAndReap(before[0])
	step("reconnecting", 30*time.Second, func(ctx context.Context) error {
		return waitFor(ctx, `window.connStates.includes("reconnecting")`)
	})
	step("live again", 60*time.Second, func(ctx context.Context) error {
		return waitFor(ctx, `window.connStates.lastIndexOf("live") > window.connStates.indexOf("reconnecting") && document.querySelector("#conn").dataset.state === "live"`)
	})
	states, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.connStates`))
	t.Logf("indicator after SIGKILL: %v", states)
	if after := testkit.Supervisors(e.state); len(after) != 1 || after[0] == before[0] {
		t.Errorf("supervisors after SIGKILL of %d and the reconnect: %v, want one new one", before[0], after)
	}
	step("readings flow again", 30*time.Second, changes("system.uptime_seconds"))
	step("the LED card again", 30*time.Second, func(ctx context.Context) error {
		return waitFor(ctx, `document.querySelector('.card[data-sensor="leds.led0_brightness"]').dataset.value === "42"`)
	})
	if slices.Contains(states, "closed") {
		t.Errorf("indicator went through closed: %v", states)
	}

	// A page on another origin (localhost, while the stub is asked at
	// 127.0.0.1) is refused; it can read why, and asks only once.
	elsewhere := `<!doctype html><link rel="icon" href="data:,"><p id="out">…</p>
<script src="http://127.0.0.1:` + strconv.Itoa(port) + `/cgi-bin/live.cgi?client.js"></script>
<script>
window.seen = [];
const live = LiveCGI.connect();
live.on("error", (e) => window.seen.push(e.code + ": " + e.message));
live.on("state", (s) => { document.getElementById("out").textContent = s.state; });
</script>
`
	if err := os.WriteFile(filepath.Join(e.docroot, "elsewhere.html"), []byte(elsewhere), 0o644); err != nil {
		t.Fatal(err)
	}
	step("a page elsewhere is told why", 30*time.Second, func(ctx context.Context) error {
		if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("http://localhost:%d/elsewhere.html", port))); err != nil {
			return err
		}
		return waitFor(ctx, `window.live === undefined && typeof live === "object" && live.state === "closed"`)
	})
	seen, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.seen`))
	asked, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`performance.getEntriesByType("resource").filter((r) => r.name.endsWith("?connect")).length`))
	if len(seen) != 1 || !strings.HasPrefix(seen[0], "refused: connect: cross_site: ") || asked != 1 {
		t.Errorf("page elsewhere: errors %q after %d ?connect, want one refused with the stub's reason after one", seen, asked)
	}
	t.Logf("page elsewhere: %q", seen)

	b.checkConsole(t)
}

// mustTool finds the program name, skipping the test when it is missing,
// or failing it when CI=true.
func mustTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return path
}

// browser is one headless Chromium with one tab.
type browser struct {
	ctx  context.Context // the tab
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

// mustBrowser starts chromium with a fresh profile and opens a tab, with
// the extra options if any. The cleanup closes it and kills whatever is
// left of its processes.
func mustBrowser(t *testing.T, chromium string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	profile := t.TempDir()
	// A hang guard for everything the browser does in this test.
	root, cancelRoot := context.WithTimeout(context.Background(), 5*time.Minute)
	out := &testkit.Buffer{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(root, append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
		chromedp.CombinedOutput(out),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			// Its own process group, killed as a whole when the
			// allocator's context ends; and killed with this process.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		}),
	}, extra...)...)
	tab, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	b := &browser{ctx: tab}
	consoleCtx, stopConsole := context.WithCancel(tab)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		stopConsole()
		wg.Wait()
		cancelTab()
		cancelAlloc()
		cancelRoot()
		// Whatever outlived the browser's process group: any process
		// that uses the profile.
		for range 3 {
			testkit.KillMatching("--user-data-dir=" + profile)
			time.Sleep(50 * time.Millisecond)
		}
		if s := out.String(); t.Failed() {
			t.Logf("chromium output (end):\n%s", s[max(0, len(s)-4000):])
		}
	})
	if err := chromedp.Do(tab); err != nil { // starts the browser, bound to the tab's context
		t.Fatalf("start %s: %v\n%s", chromium, err, out.String())
	}
	messages := chromedp.Console(consoleCtx)
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.msgs = append(b.msgs, m)
			b.mu.Unlock()
		}
	})
	return b
}

// checkConsole logs what the page wrote to its console and fails the test
// on an uncaught exception or a Content-Security-Policy violation.
func (b *browser) checkConsole(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.msgs {
		t.Logf("console: %s", m)
		if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
			t.Errorf("page: %s (%s:%d)", m, m.URL, m.Line+1)
		}
	}
}

// dump logs the page's state, for a failed step.
func (b *browser) dump(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		conn: document.querySelector("#conn") && document.querySelector("#conn").dataset.state,
		note: document.querySelector("#note") && document.querySelector("#note").textContent,
		plugins: [...document.querySelectorAll("section[data-plugin]")].map(s => s.dataset.plugin + ":" + s.dataset.state),
		cards: Object.fromEntries([...document.querySelectorAll(".card[data-sensor]")].map(c => [c.dataset.sensor, c.dataset.value])),
		results: [...document.querySelectorAll("output[data-result-for]")].map(o => o.dataset.resultFor + ":" + o.dataset.state + ":" + o.textContent),
		states: window.connStates,
	})`))
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("page state: %v", err)
	}
	t.Logf("page state: %s", state)
	b.checkConsole(t)
}

// waitFor polls a JavaScript condition, evaluated from outside the page:
// chromedp.Poll compiles its predicate with new Function, which the
// page's CSP (rightly) forbids.
func waitFor(ctx context.Context, cond string) error {
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("evaluate %s: %w", cond, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", cond, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
