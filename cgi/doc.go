// Package cgi is live.cgi, the CGI stub of livecgi: the small program a
// CGI-only web server (boa, busybox httpd, mini_httpd, lighttpd, ...) runs on
// every request. Standard library only, and of this module only the
// packages light by construction: proto/control (the control socket's
// client in system calls, its documents in hand-written JSON),
// proto/config, proto/auth and proto/trust; TestDeps keeps it so, TestSize
// holds the binary to its budget.
//
// On every request the stub makes sure the supervisor (livecgid) runs,
// starting it fully detached from the web server when its control socket
// does not answer, and then answers one of:
//
//	live.cgi              the dashboard page (text/html)
//	live.cgi?client.js    the JavaScript client (text/javascript)
//	live.cgi?connect      a control.Connect JSON document: the WebSocket URL
//	                      (the host the browser used, the supervisor's port),
//	                      a short-lived token bound to the page's origin,
//	                      and the transports to try (same-port, ws)
//	nph-live.cgi?ws&token=T
//	                      the browser's connection, handed to the
//	                      supervisor (nph.go): a WebSocket on the web
//	                      server's own port, where it gives nph CGIs the
//	                      socket (boa 0.94.14rc21)
//
// Every failure is a JSON document {"error": CODE, "reason": TEXT} with a
// fitting HTTP status sent in the CGI "Status:" header (under an nph- name,
// an HTTP status line); CODE is one of the Err* constants and TEXT says
// what a person can do about it.
//
// Start with Main (what cmd/live.cgi calls), then Stub.Serve (one request
// in, one Response out; pure apart from starting the supervisor),
// RequestFromEnv (the CGI environment, parsed by pure functions) and
// Response.WriteCGI. auth.go signs visitors in; reaper.go is the stub run
// again as the keeper of an auth_command, so that the command cannot
// outlive it.
//
// Why not net/http/cgi.Serve with an http.Handler: net/http makes the stub
// 4.1 MiB for linux/arm instead of 2.6 MiB, over the 3 MiB budget for a
// program exec'd on every page load. The request/response types here are
// small enough that tests wrap Stub.Serve in an http.Handler themselves
// (see handler_test.go) and run it under httptest.
package cgi
