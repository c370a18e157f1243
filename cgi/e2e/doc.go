// Package e2e tests live.cgi end to end under real CGI web servers
// (busybox httpd, lighttpd, mini_httpd, and nphd, which runs CGIs as boa
// 0.94.14rc21 does) with the real supervisor and the system plugin: the
// page, the client, the connect document, a WebSocket client that
// receives readings, and concurrent first contacts that start exactly one
// supervisor (e2e_test.go). The other transports: long polling through
// the stub (poll_test.go) and the same-port WebSocket through
// nph-live.cgi, with its fallback under servers that give a pipe
// (reach_test.go). Signing in under each auth mode (auth_test.go), a
// recorded sensor's history as a CSV download and over long polling,
// kept across a stop (history_test.go), and make demo as a person runs
// it (demo_test.go).
//
// The browser tests drive the dashboard in headless Chromium
// (/usr/bin/chromium, through chromedp) with the leds plugin on a fixture
// sysfs: live readings, a command from the page's form, and the page's own
// reconnect after the supervisor is killed (browser_test.go), its cards
// (dashboard_test.go), long polling (poll_browser_test.go), same-port and
// HTTPS (reach_test.go), roles (auth_test.go), credentials in the URL
// (credentials_test.go), and alarms, history charts and staleness by
// heartbeat with exec sensors a test drives (browser_alarm_test.go). It
// has tests only; start with e2e_test.go.
//
// A missing web server or browser skips its test, or fails it when CI=true.
// LIVECGI_SCREENSHOT=file.png keeps the browser tests' screenshots (the
// alarm test's beside it, file-<part>-<transport>.png).
package e2e
