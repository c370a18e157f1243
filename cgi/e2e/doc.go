// Package e2e tests live.cgi end to end under real CGI web servers
// (busybox httpd, lighttpd, mini_httpd) with the real supervisor and the
// system plugin: the page, the client, the connect document, a WebSocket
// client that receives readings, and concurrent first contacts that start
// exactly one supervisor. browser_test.go drives the dashboard in headless
// Chromium (/usr/bin/chromium, through chromedp) with the leds plugin on a
// fixture sysfs: live readings, a command from the page's form, and the
// page's own reconnect after the supervisor is killed. It has tests only;
// start with e2e_test.go.
//
// A missing web server or browser skips its test, or fails it when CI=true.
// LIVECGI_SCREENSHOT=file.png keeps the browser test's screenshot.
package e2e
