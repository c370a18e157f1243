// Package cgi is live.cgi, the CGI stub of livecgi: the small program a
// CGI-only web server (boa, busybox httpd, mini_httpd, lighttpd, ...) runs on
// every request. Standard library only, and of this module only the
// packages light by construction: proto/control (the control socket's
// client in system calls, its documents in hand-written JSON),
// proto/config, proto/auth and proto/trust; TestDeps keeps it so, TestSize
// holds the binary to its budget. README.md here is its manual.
//
// On every request the stub makes sure the supervisor (livecgid) runs,
// starting it fully detached from the web server when its control socket
// does not answer, and then answers one of (ParseParams reads the query):
//
//	live.cgi              the dashboard page (text/html)
//	live.cgi?client.js    the JavaScript client (text/javascript)
//	live.cgi?connect      a control.Connect JSON document: the WebSocket URL
//	                      (the host the browser used, the supervisor's port),
//	                      a short-lived token bound to the page's origin,
//	                      and the transports to try (same-port, ws, poll)
//	nph-live.cgi?ws&token=T
//	                      the browser's connection, handed to the
//	                      supervisor (nph.go): a WebSocket on the web
//	                      server's own port, where it gives nph CGIs the
//	                      socket (boa 0.94.14rc21)
//	live.cgi?poll&token=T
//	                      long polling (poll.go): opens a poll session with
//	                      a token from ?connect; the supervisor answers
//	                      {"session", "seq", "frames"}
//	live.cgi?poll&session=S[&since=N]
//	                      the next poll of session S: the frames after
//	                      sequence number N, once there is news
//	POST live.cgi?command&session=S
//	                      one command (or history) frame (the body, at
//	                      most max_frame bytes) of a poll session,
//	                      answered with its result (history) or error
//	                      frame
//	live.cgi?history=SENSOR[&from=MS][&to=MS]
//	                      a recorded sensor's history as a CSV download
//	                      (history.go), for the person signed in as
//	                      ?connect signs in; from and to default to the
//	                      last hour
//
// Parameters named v or _ (cache busters) may come with any of them; any
// other query, or a method other than GET or HEAD (POST for ?command), is
// refused. Every failure is a JSON document {"error": CODE, "reason": TEXT}
// with a fitting HTTP status sent in the CGI "Status:" header (under an
// nph- name, an HTTP status line); CODE is one of the Err* constants (or
// the supervisor's, passed through for a poll or a command) and TEXT says
// what a person can do about it.
//
// Start with Main (what cmd/live.cgi calls), then Stub.Serve (one request
// in, one Response out; pure apart from starting the supervisor and
// asking it), RequestFromEnv (the CGI environment, parsed by pure
// functions) and Response.Write. start.go starts the supervisor (a lock so
// that one stub of many does, every descriptor of the web server closed),
// proto/control.Probe asks its control socket, poll.go carries polls
// and commands to it (proto/control's client), history.go a CSV download, nph.go hands it a browser's connection. auth.go signs
// visitors in; reaper.go is the stub run again as the keeper of an
// auth_command, so that the command cannot outlive it. shell.go is what a
// run from a shell prints.
//
// Why not net/http/cgi.Serve with an http.Handler: net/http alone adds
// about 1.5 MiB for linux/arm to a stub of 2.6 MiB, over the 3 MiB budget
// for a program exec'd on every page load (TestSize, TestDeps). The
// request/response types here are small enough that tests wrap Stub.Serve
// in an http.Handler themselves (handler in helpers_test.go) and run it
// under httptest.
package cgi
