// Package control is the contract between the CGI stub and the
// supervisor: what the stub asks on the supervisor's control socket and
// what it is told, the tokens the stub mints and the supervisor checks,
// and the state directory they share. The stub links it, so it is light
// by construction: standard library only, and neither package net nor
// encoding/json (proto/deps_test.go and the stub's TestDeps hold it to
// that). The socket's server side, which needs both, is
// proto/control/ctlserver; the configuration file both read is
// proto/config, who may do what proto/auth, and which files are safe to
// use proto/trust.
//
// Files:
//
//	protocol.go  the messages: Status (the answer to "status"), Connect
//	             (the document the stub serves at ?connect) and its
//	             Transports, PollRequest, CommandRequest and HistoryRequest
//	             (the poll, command and CSV download requests the stub
//	             passes on), their error codes
//	client.go    the client side, in system calls: Probe, Poll, Command, History
//	json.go      those documents written and read by hand, as
//	             encoding/json does (TestJSONMatches, FuzzParseStatus)
//	handover.go  SendHandOver: a browser's socket passed to the supervisor
//	             (SCM_RIGHTS), for the WebSocket on the web server's port
//	token.go     MintToken, VerifyToken: HMAC tokens bound to the page's
//	             origin and the supervisor's run, carrying an auth.Identity
//	state.go     StateDir (the private directory of both, with its
//	             fallback), Secret (the tokens' key), the files in it
//
// Start with protocol.go, then Probe and Poll in client.go; ctlserver's
// tests run this client against the server.
package control
