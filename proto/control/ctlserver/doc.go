// Package ctlserver is the supervisor's side of the control socket
// (proto/control is the protocol and the stub's client): it answers
// "status", the poll and command requests of the kinds it is given
// handlers for, and takes over the browsers' sockets that stubs hand it.
// It uses package net and encoding/json, which the stub must not link;
// livecgid and tests use it.
//
// Files:
//
//	serve.go     Serve and Control.Serve: the accept loop and one
//	             connection's request; Accept and Passing, the accept
//	             rule of every listener of the supervisor (a passing
//	             shortage of descriptors or memory never ends one)
//	handler.go   Handler (one request kind), Answer and ErrorAnswer,
//	             DecodeRequest (a request's JSON, strictly)
//	handover.go  the receiving end of control.SendHandOver: the
//	             descriptor, checked to be a TCP socket passed by this
//	             user or root (SO_PEERCRED)
//
// Start with Control in serve.go. The tests (TestProbe, TestRequests,
// TestHandOver) hold control's client to this server.
package ctlserver
