package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserCredentialsInURL opens the dashboard, and a page embedding
// the client, as http://user:password@host/… (how people sign in to a
// device by hand, and what some bookmarks hold). fetch refuses a URL with
// credentials, a relative one resolved against such a page too, so the
// client builds its URLs without them: both pages go live. The
// supervisor's port is out of reach (public_port names a closed port), so
// the long polls, whose URL the stub gives as a path, are fetched too.
func TestBrowserCredentialsInURL(t *testing.T) {
	chromium := mustTool(t, chromiumPath)
	busybox := mustTool(t, "busybox")
	e := mustEnvWith(t, fmt.Sprintf("public_port = %d\n", freePort(t)), "system")
	port := mustStartServer(t, busyboxServer(), busybox, e)
	embed := `<!doctype html><link rel="icon" href="data:,"><p id="out">…</p>
<script src="/cgi-bin/live.cgi?client.js"></script>
<script>
window.live = LiveCGI.connect();
live.watch("system.uptime_seconds", (r) => { document.getElementById("out").textContent = r.value; });
</script>
`
	if err := os.WriteFile(filepath.Join(e.docroot, "embed.html"), []byte(embed), 0o644); err != nil {
		t.Fatal(err)
	}
	b := mustBrowser(t, chromium)
	for _, page := range []string{"/cgi-bin/live.cgi", "/embed.html"} {
		u := fmt.Sprintf("http://viewer:secret@127.0.0.1:%d%s", port, page)
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		err := chromedp.Do(ctx, chromedp.Navigate(u))
		if err == nil {
			err = waitFor(ctx, `window.live && live.state === "live" && live.transport === "poll" && live.values.has("system.uptime_seconds")`)
		}
		cancel()
		if err != nil {
			href, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.href + " stub " + (window.live && live.stub) + " state " + (window.live && live.state)`))
			b.dump(t)
			logs(t, e)
			t.Fatalf("%s: %v (page %s)", u, err, href)
		}
	}
	b.checkConsole(t)
}
