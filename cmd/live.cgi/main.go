// Command live.cgi is the CGI stub of livecgi: drop it into a web server's
// cgi-bin. It starts the supervisor (livecgid) when needed and serves the
// dashboard (live.cgi), the JavaScript client (live.cgi?client.js) and the
// connect document (live.cgi?connect). See package cgi.
//
// The configuration file is fixed at build time:
//
//	go build -ldflags '-X github.com/livecgi/livecgi/cgi.ConfigPath=/etc/livecgi/livecgi.conf'
package main

import (
	"os"

	"github.com/livecgi/livecgi/cgi"
	"github.com/livecgi/livecgi/cgi/assets"
)

func main() {
	os.Exit(cgi.Main(cgi.Assets{Page: assets.Dashboard, PageCSP: assets.DashboardCSP, ClientJS: assets.ClientJS}))
}
