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
	"github.com/livecgi/livecgi/proto/testkit"
)

// TestBrowserPoll opens the dashboard in headless Chromium through busybox
// httpd with the supervisor's WebSocket port out of the browser's reach
// (public_port names a closed port): the page goes live by long polling
// through the stub and says so, an LED command works, and a supervisor
// killed with SIGKILL is replaced and the page is live again by itself.
func TestBrowserPoll(t *testing.T) {
	chromium := mustTool(t, chromiumPath)
	busybox := mustTool(t, "busybox")
	sysRoot := sdktest.CopyFixture(t, filepath.Join("..", "..", "plugins", "leds", "testdata", "sys"))
	closed := freePort(t) // nothing listens there once freePort returns
	// Uptime on every change (every 5 s), not past a minute's deadband:
	// the test watches it change.
	e := mustEnvWith(t, fmt.Sprintf("sys_root = %s\ncommand_role = leds.set_brightness viewer\npublic_port = %d\ndeadband.system.uptime_seconds = 0\n", sysRoot, closed), "system", "leds")
	port := mustStartServer(t, busyboxServer(), busybox, e)
	page := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/live.cgi", port)

	b := mustBrowser(t, chromium)
	step := func(name string, timeout time.Duration, cond string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, timeout)
		defer cancel()
		for {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
			if ok {
				return
			}
			select {
			case <-ctx.Done():
				b.dump(t)
				logs(t, e)
				t.Fatalf("%s: waiting for %s: %v (%v)", name, cond, ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if err := chromedp.Do(b.ctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	const onPoll = `(c => c.dataset.state === "live" && c.dataset.transport === "poll" && c.textContent === "live · long-poll")(document.querySelector("#conn"))`
	step("live over long polling", 30*time.Second, onPoll)
	step("cards", 30*time.Second, `!!document.querySelector('.card[data-sensor="leds.led0_brightness"]') && !!document.querySelector('.card[data-sensor="system.uptime_seconds"]').dataset.value`)
	first, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('.card[data-sensor="system.uptime_seconds"]').dataset.value`))
	step("a reading changes", 30*time.Second, fmt.Sprintf(`document.querySelector('.card[data-sensor="system.uptime_seconds"]').dataset.value !== %q`, first))

	form := `form[data-command="leds.set_brightness"]`
	if err := chromedp.Do(b.ctx,
		chromedp.SetValue(chromedp.CSS(form+` [data-arg="led"]`), "led0"),
		chromedp.SetValue(chromedp.CSS(form+` [data-arg="value"]`), "42"),
		chromedp.Click(chromedp.CSS(form+` button[type="submit"]`)),
	); err != nil {
		t.Fatal(err)
	}
	step("the command's result", 30*time.Second, `document.querySelector('output[data-result-for="leds.set_brightness"]').dataset.state === "ok"`)
	step("the LED card follows", 30*time.Second, `document.querySelector('.card[data-sensor="leds.led0_brightness"]').dataset.value === "42"`)
	if got, _ := os.ReadFile(filepath.Join(sysRoot, "class", "leds", "led0", "brightness")); strings.TrimSpace(string(got)) != "42" {
		t.Errorf("led0 brightness holds %q, want 42", got)
	}

	before := testkit.Supervisors(e.state)
	if len(before) != 1 {
		t.Fatalf("supervisors: %v, want one", before)
	}
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(() => {
		const conn = document.querySelector("#conn");
		window.connStates = [];
		new MutationObserver(() => window.connStates.push(conn.dataset.state)).observe(conn, {attributes: true, attributeFilter: ["data-state"]});
		return true;
	})()`)); err != nil {
		t.Fatal(err)
	}
	testkit.KillAndReap(before[0])
	step("reconnecting", 60*time.Second, `window.connStates.includes("reconnecting")`)
	step("live again over long polling", 60*time.Second, `window.connStates.lastIndexOf("live") > window.connStates.indexOf("reconnecting") && `+onPoll)
	if after := testkit.Supervisors(e.state); len(after) != 1 || after[0] == before[0] {
		t.Errorf("supervisors after SIGKILL of %d: %v, want one new one", before[0], after)
	}
	first, _ = chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('.card[data-sensor="system.uptime_seconds"]').dataset.value`))
	step("readings flow again", 30*time.Second, fmt.Sprintf(`document.querySelector('.card[data-sensor="system.uptime_seconds"]').dataset.value !== %q`, first))
	b.checkConsole(t)
}
