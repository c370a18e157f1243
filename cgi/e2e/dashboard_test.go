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

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
)

// TestBrowserDashboardCards opens the dashboard in headless Chromium over
// the system plugin's fixtures and exec confs made for it:
//   - a card whose title wraps to two lines has its value in line with
//     its neighbours';
//   - a long text value, cut on the card, is in the value's title and
//     shown whole after a click (and again cut after another);
//   - net_interfaces in livecgi.conf chooses the interface cards (eth0
//     and the idle ifb0 here; lo, wlan0 and br-lan not);
//   - the exec plugin, once its confs are gone, says where confs go.
func TestBrowserDashboardCards(t *testing.T) {
	chromium := mustTool(t, chromiumPath)
	busybox := mustTool(t, "busybox")
	fixtures := filepath.Join("..", "..", "plugins", "system", "testdata")
	procRoot := sdktest.CopyFixture(t, filepath.Join(fixtures, "proc"))
	sysRoot := sdktest.CopyFixture(t, filepath.Join(fixtures, "sys"))
	execDir := filepath.Join(t.TempDir(), "exec.d")
	os.Mkdir(execDir, 0o755)
	long := strings.Repeat("a long text value that does not fit on its card ", 4) + "THE END"
	confs := map[string]string{
		"a_short.conf": "run = /bin/echo 5\ninterval = 1s\ntitle = Short\n",
		"b_wrapped.conf": "run = /bin/echo 7\ninterval = 1s\n" +
			"title = A sensor whose title is long enough to wrap onto two lines\n",
		"c_text.conf": "run = /bin/echo '" + long + "'\ninterval = 1s\ntype = text\ntitle = Text\n",
	}
	for name, conf := range confs {
		if err := os.WriteFile(filepath.Join(execDir, name), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := mustEnvWith(t, fmt.Sprintf("proc_root = %s\nsys_root = %s\nexec_dir = %s\nnet_interfaces = eth0 ifb0\n", procRoot, sysRoot, execDir), "system", "exec")
	port := mustStartServer(t, busyboxServer(), busybox, e)

	b := mustBrowser(t, chromium)
	step := func(name string, timeout time.Duration, cond string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, timeout)
		defer cancel()
		if err := waitFor(ctx, cond); err != nil {
			b.dump(t)
			logs(t, e)
			t.Fatalf("%s: %v", name, err)
		}
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	if err := chromedp.Do(b.ctx, chromedp.Navigate(fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port))); err != nil {
		t.Fatal(err)
	}
	card := func(id string) string { return fmt.Sprintf(`document.querySelector('.card[data-sensor=%q]')`, id) }
	step("exec cards with values", 30*time.Second, `["exec.a_short", "exec.b_wrapped", "exec.c_text"].every(id => (c => c && c.dataset.value)(document.querySelector('.card[data-sensor="' + id + '"]')))`)

	// The cards sit side by side; the wrapped title takes two lines, the
	// short one one, and the values (two numbers and a text, smaller)
	// stand on the same baseline: a 0-height inline-block at the end of
	// each value marks it.
	got := eval(`(() => {
		const c = (id) => document.querySelector('.card[data-sensor="' + id + '"]');
		const lines = (id) => {
			const r = document.createRange();
			r.selectNodeContents(c(id).querySelector(".title"));
			return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size;
		};
		const baseline = (id) => {
			const m = document.createElement("span");
			m.style.cssText = "display:inline-block;width:0;height:0";
			c(id).querySelector(".value").append(m);
			const y = m.getBoundingClientRect().bottom;
			m.remove();
			return Math.round(y);
		};
		const ids = ["exec.a_short", "exec.b_wrapped", "exec.c_text"];
		const rows = new Set(ids.map((id) => Math.round(c(id).getBoundingClientRect().top)));
		return [rows.size, lines("exec.a_short"), lines("exec.b_wrapped"), ...ids.map(baseline)].join(" ");
	})()`)
	var rows, shortLines, wrappedLines, short, wrapped, text int
	fmt.Sscan(got, &rows, &shortLines, &wrappedLines, &short, &wrapped, &text)
	if rows != 1 || shortLines != 1 || wrappedLines < 2 || short != wrapped || short != text {
		t.Errorf("rows, title lines (short, wrapped), baselines (short, wrapped, text): %s; want 1 row, 1 and 2+ lines, one baseline", got)
	}
	shot := filepath.Join(t.TempDir(), "cards.png")
	if s := os.Getenv("LIVECGI_SCREENSHOT"); s != "" {
		shot = s
	}
	if png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)); err == nil {
		os.WriteFile(shot, png, 0o644)
	}
	t.Logf("%s; screenshot %s", got, shot)

	// The long text: cut, whole in its title; a click shows it whole.
	value := card("exec.c_text") + `.querySelector(".value")`
	if got := eval(value + `.title`); got != long {
		t.Errorf("text value's title %q, want the whole text", got)
	}
	if eval(`String(`+value+`.scrollWidth > `+value+`.clientWidth)`) != "true" {
		t.Errorf("the long text is not cut: the test shows nothing")
	}
	if err := chromedp.Do(b.ctx, chromedp.Click(chromedp.CSS(`.card[data-sensor="exec.c_text"]`))); err != nil {
		t.Fatal(err)
	}
	step("the whole text after a click", 10*time.Second, `(v => v.scrollWidth <= v.clientWidth && v.scrollHeight <= v.clientHeight + 1 && v.textContent.endsWith("THE END"))(`+value+`)`)
	if err := chromedp.Do(b.ctx, chromedp.Click(chromedp.CSS(`.card[data-sensor="exec.c_text"]`))); err != nil {
		t.Fatal(err)
	}
	step("cut again after another", 10*time.Second, `(v => v.scrollWidth > v.clientWidth)(`+value+`)`)

	// Interfaces: the ones net_interfaces names, and only those.
	nets := eval(`[...document.querySelectorAll('.card[data-sensor^="system.net_"][data-sensor$="_rx_bytes_per_second"]')].map(c => c.dataset.sensor).join(" ")`)
	if nets != "system.net_eth0_rx_bytes_per_second system.net_ifb0_rx_bytes_per_second" {
		t.Errorf("interface cards: %q, want eth0's and ifb0's (net_interfaces = eth0 ifb0)", nets)
	}

	// Without confs the exec plugin's line names its directory.
	for name := range confs {
		os.Remove(filepath.Join(execDir, name))
	}
	step("exec says where confs go", 30*time.Second, `(s => s && s.hasAttribute("data-empty") && s.textContent.includes(`+fmt.Sprintf("%q", execDir)+`))(document.querySelector('section[data-plugin="exec"]'))`)
	t.Logf("exec line: %s", eval(`document.querySelector('section[data-plugin="exec"]').innerText.replace(/\s+/g, " ")`))
	b.checkConsole(t)
}
