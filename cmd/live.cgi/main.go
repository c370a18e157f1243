// Command live.cgi is the CGI stub of livecgi: drop it into a web server's
// cgi-bin. It starts the supervisor (livecgid) when needed and serves the
// dashboard (live.cgi), the JavaScript client (live.cgi?client.js), the
// connect document (live.cgi?connect), long polling (live.cgi?poll, and
// POST live.cgi?command) and, linked as nph-live.cgi, the WebSocket on
// the web server's own port (nph-live.cgi?ws). See package cgi and its
// README.md.
//
// Run from a shell (no GATEWAY_INTERFACE in the environment) it only says
// what it is and which config file, state dir and supervisor it would use;
// -help and -version exit 0, anything else 2.
//
// The configuration file is fixed at build time:
//
//	go build -ldflags '-X github.com/livecgi/livecgi/cgi.ConfigPath=/etc/livecgi/livecgi.conf'
package main

import (
	"fmt"
	"os"

	"github.com/livecgi/livecgi/cgi"
	"github.com/livecgi/livecgi/cgi/assets"
)

var version = "dev"

func main() {
	if os.Getenv("GATEWAY_INTERFACE") == "" {
		os.Exit(shell(os.Args[1:]))
	}
	os.Exit(cgi.Main(cgi.Assets{Page: assets.Dashboard, PageCSP: assets.DashboardCSP, ClientJS: assets.ClientJS}))
}

// shell answers a run from a shell. Under CGI the arguments are the
// words of a query string, so they are read only here.
func shell(args []string) int {
	if len(args) == 1 {
		switch args[0] {
		case "-version", "--version":
			fmt.Println("live.cgi", version)
			return 0
		case "-help", "--help", "-h":
			cgi.Describe(os.Stdout, version)
			return 0
		}
	}
	cgi.Describe(os.Stderr, version)
	return 2
}
