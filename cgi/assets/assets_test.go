package assets

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestDashboardInlinesClient(t *testing.T) {
	page := Dashboard()
	if !bytes.Contains(page, []byte("<script>"+string(ClientJS())+"</script>")) {
		t.Fatal("dashboard does not hold client.js in a <script>")
	}
	if bytes.Contains(page, []byte(clientMarker)) {
		t.Fatal("dashboard still holds the client marker")
	}
	if &Dashboard()[0] != &page[0] {
		t.Fatal("Dashboard is computed more than once")
	}
}

// TestNoExternalResources checks that nothing the browser loads comes from
// elsewhere: devices often have no internet access, and a CDN is a leak.
// The only URL attribute allowed is a data: URL (the empty favicon).
func TestNoExternalResources(t *testing.T) {
	bad := []struct {
		name string
		re   *regexp.Regexp
	}{
		{"absolute URL", regexp.MustCompile(`(?i)\b(https?|ftp|wss?):`)},
		{"protocol-relative URL", regexp.MustCompile(`["'(=]\s*//[a-z0-9]`)},
		{"embedded frame or object", regexp.MustCompile(`(?i)<(iframe|object|embed|img|audio|video|base)\b`)},
		{"CSS import or url()", regexp.MustCompile(`(?i)@import|url\(`)},
		{"font face", regexp.MustCompile(`(?i)@font-face`)},
	}
	urlAttr := regexp.MustCompile(`(?i)<[a-z][^>]*?\s(src|href|srcset|action|formaction|poster|data|background)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)`)
	for name, b := range map[string][]byte{"Dashboard": Dashboard(), "ClientJS": ClientJS()} {
		for _, c := range bad {
			if loc := c.re.FindIndex(b); loc != nil {
				lo, hi := max(loc[0]-40, 0), min(loc[1]+40, len(b))
				t.Errorf("%s has a %s: %q", name, c.name, b[lo:hi])
			}
		}
		for _, m := range urlAttr.FindAllSubmatch(b, -1) {
			if v := strings.Trim(string(m[2]), `"'`); !strings.HasPrefix(v, "data:") {
				t.Errorf("%s loads %s=%q", name, m[1], v)
			}
		}
	}
}

// TestClientInlinable checks that client.js cannot end the <script> it is
// inlined in, nor switch the HTML parser into a comment state.
func TestClientInlinable(t *testing.T) {
	low := strings.ToLower(string(ClientJS()))
	for _, s := range []string{"</script", "<!--", "<script"} {
		if strings.Contains(low, s) {
			t.Errorf("client.js contains %q", s)
		}
	}
}

// TestDashboardHooks checks the DOM hooks that browser tests rely on.
func TestDashboardHooks(t *testing.T) {
	page := string(Dashboard())
	for _, hook := range []string{
		`id="conn" data-state="connecting"`,
		`conn.dataset.state = live.state`,
		`conn.dataset.transport =`,
		`p.el.dataset.plugin = id`,
		`p.el.dataset.state =`,
		`el.dataset.sensor = s.id`,
		`class="value"`,
		`u.el.dataset.value =`,
		`u.el.dataset.stale =`,
		`el.dataset.command = c.id`,
		`out.dataset.resultFor = c.id`,
		`out.dataset.state = "ok"`,
		`out.dataset.state = "error"`,
		`LiveCGI.connect({ stub: location.pathname, history: 960 })`,
		`id="chart"`,
		`u.el.dataset.changed =`,
		`u.el.dataset.alarm = worst`,
		`id="alarms"`,
		`id="log"`,
		`li.dataset.alarm = a.name`,
		`li.dataset.state = a.state`,
		`Object.assign(plot.dataset, { state, points:`,
		`data-range="600000"`,
		`csv.href = live.historyCSV(id, from, to)`,
	} {
		if !strings.Contains(page, hook) {
			t.Errorf("dashboard lacks %s", hook)
		}
	}
}

// TestDashboardCSP checks that the policy names every inline script and
// style, and that the page has nothing the policy would block.
func TestDashboardCSP(t *testing.T) {
	policy := DashboardCSP()
	page := string(Dashboard())
	if n, want := strings.Count(policy, "'sha256-"), strings.Count(page, "<script>")+strings.Count(page, "<style>"); n != want || want != 3 {
		t.Errorf("policy has %d hashes, page has %d inline scripts and styles (want 3): %s", n, want, policy)
	}
	if strings.Contains(policy, "unsafe") {
		t.Errorf("policy allows unsafe sources: %s", policy)
	}
	if m := regexp.MustCompile(`(?i)<[^>]*\s(on[a-z]+|style)\s*=`).FindString(page); m != "" {
		t.Errorf("page has an inline handler or style attribute the policy blocks: %q", m)
	}
	if strings.Contains(page, "<script ") || strings.Contains(page, "<style ") {
		t.Error("page has a <script> or <style> with attributes; the hash extraction expects none")
	}
}

// mustNode returns the path of node, skipping the test when it is missing,
// or failing it when CI=true.
func mustNode(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("node is required with CI=true: %v", err)
		}
		tb.Skipf("node not found: %v", err)
	}
	return path
}

func runNode(t *testing.T, node string, args ...string) {
	t.Helper()
	out, err := exec.Command(node, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestJSSyntax parses client.js and every inline script of the page.
func TestJSSyntax(t *testing.T) {
	node := mustNode(t)
	runNode(t, node, "--check", "client.js")
	scripts := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllSubmatch(Dashboard(), -1)
	if len(scripts) != 2 {
		t.Fatalf("dashboard has %d inline scripts, want 2 (client and page)", len(scripts))
	}
	dir := t.TempDir()
	for i, s := range scripts {
		name := filepath.Join(dir, "inline"+string(rune('0'+i))+".js")
		if err := os.WriteFile(name, s[1], 0o600); err != nil {
			t.Fatal(err)
		}
		runNode(t, node, "--check", name)
	}
}

// TestClientLogic runs the node unit tests of client.js (backoff, resume,
// commands) in testdata/client_test.js.
func TestClientLogic(t *testing.T) {
	node := mustNode(t)
	runNode(t, node, filepath.Join("testdata", "client_test.js"))
}

// TestInlineBlocks checks the scanner that finds the inline scripts and
// styles the CSP hashes, against the regexp it replaces.
func TestInlineBlocks(t *testing.T) {
	re := regexp.MustCompile(`(?s)<(script|style)>(.*?)</(?:script|style)>`)
	tests := []struct{ name, page string }{
		{"none", `<p>no scripts</p>`},
		{"empty", `<script></script><style></style>`},
		{"both", "<style>a{}</style>\n<script>x()\n</script><p>"},
		{"attributes ignored", `<script src="a.js"></script><script>y</script>`},
		{"unclosed", `<script>x<style>`},
		{"first closing tag ends it", `<script>a</style>b</script><style>c</style>`},
		{"lookalikes", `<scripts>no</scripts><stylez>no</stylez><<script>yes</script>`},
		{"the dashboard", string(Dashboard())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got, want []string
			inlineBlocks([]byte(tt.page), func(kind string, body []byte) { got = append(got, kind+":"+string(body)) })
			for _, m := range re.FindAllStringSubmatch(tt.page, -1) {
				want = append(want, m[1]+":"+m[2])
			}
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Errorf("got %q\nwant %q", got, want)
			}
		})
	}
}

// TestNoRegexp keeps the regexp package out of this package, and so out of
// the stub: it costs ~0.25 MiB on linux/arm.
func TestNoRegexp(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "regexp" || strings.HasPrefix(dep, "regexp/") {
			t.Errorf("cgi/assets depends on %s", dep)
		}
	}
}
