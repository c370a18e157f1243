// Package assets is the browser side of livecgi, embedded in the CGI stub:
// the JavaScript client (client.js) that pages include to receive live
// sensor readings and run commands, and the dashboard page
// (dashboard.html) built from the descriptors the supervisor sends.
//
// Start with Dashboard, which the stub serves on a plain GET, and ClientJS,
// which it serves at ?client.js. The wire protocol both speak is described
// in proto/README.md. The package uses the standard library only, and has
// no external resources: the page works on a device without internet access.
package assets

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"strings"
	"sync"
)

//go:embed client.js dashboard.html
var files embed.FS

// clientMarker is the placeholder in dashboard.html that the client replaces.
const clientMarker = "/*LIVECGI_CLIENT*/"

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("assets: " + err.Error()) // embedded: cannot happen in a built binary
	}
	return b
}

var clientJS = mustRead("client.js")

// ClientJS returns the JavaScript client, to be served with Content-Type
// "text/javascript; charset=utf-8". Pages load it with
// <script src="/cgi-bin/live.cgi?client.js"></script> and call
// LiveCGI.connect(). The returned slice is shared: callers must not modify
// it. Safe for concurrent use.
func ClientJS() []byte { return clientJS }

var dashboard = sync.OnceValue(func() []byte {
	page := mustRead("dashboard.html")
	if bytes.Count(page, []byte(clientMarker)) != 1 {
		panic("assets: dashboard.html must hold the client marker exactly once")
	}
	return bytes.Replace(page, []byte(clientMarker), clientJS, 1)
})

// Dashboard returns the dashboard page with the client inlined, to be served
// with Content-Type "text/html; charset=utf-8". It finds the stub at its
// own URL path (location.pathname), so it must be served by the stub
// itself. The page is built on first use; the returned slice is shared:
// callers must not modify it. Safe for concurrent use.
func Dashboard() []byte { return dashboard() }

// inlineBlocks calls f with the kind ("script" or "style") and the body of
// every <script> and <style> element without attributes in page, in order.
// A body ends at the first closing tag of either kind, as the HTML parser's
// raw text does for the kind that opened it; dashboard.html holds no other
// kind of closing tag inside these elements. Plain scanning instead of a
// regexp keeps the regexp package out of the stub (~0.25 MiB on linux/arm).
func inlineBlocks(page []byte, f func(kind string, body []byte)) {
	for {
		i := bytes.IndexByte(page, '<')
		if i < 0 {
			return
		}
		page = page[i:]
		kind := ""
		switch {
		case bytes.HasPrefix(page, []byte("<script>")):
			kind = "script"
		case bytes.HasPrefix(page, []byte("<style>")):
			kind = "style"
		default:
			page = page[1:]
			continue
		}
		page = page[len(kind)+2:]
		end := -1
		for _, closing := range []string{"</script>", "</style>"} {
			if j := bytes.Index(page, []byte(closing)); j >= 0 && (end < 0 || j < end) {
				end = j
			}
		}
		if end < 0 {
			return
		}
		f(kind, page[:end])
		page = page[end:]
	}
}

var csp = sync.OnceValue(func() string {
	var scripts, styles []string
	inlineBlocks(Dashboard(), func(kind string, body []byte) {
		sum := sha256.Sum256(body)
		h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if kind == "script" {
			scripts = append(scripts, h)
		} else {
			styles = append(styles, h)
		}
	})
	return "default-src 'none'; script-src " + strings.Join(scripts, " ") +
		"; style-src " + strings.Join(styles, " ") +
		"; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
})

// DashboardCSP returns a Content-Security-Policy for the dashboard page: it
// allows only the page's own inline script and style (by hash), fetches to
// the page's origin and WebSocket connections (the supervisor listens on
// another port). The stub may send it as a header with Dashboard. Safe for
// concurrent use.
func DashboardCSP() string { return csp() }
