// Package e2e tests live.cgi end to end under real CGI web servers
// (busybox httpd, lighttpd, mini_httpd) with the real supervisor and the
// system plugin: the page, the client, the connect document, a WebSocket
// client that receives readings, and concurrent first contacts that start
// exactly one supervisor. It has tests only; start with e2e_test.go.
//
// A missing web server binary skips its test, or fails it when CI=true.
package e2e
