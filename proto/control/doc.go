// Package control is the contract between the CGI stub and the supervisor,
// standard library only so the stub stays small: the configuration file
// both read (Config, Load), the state directory they share (StateDir), the
// tokens the stub mints and the supervisor checks (MintToken, VerifyToken),
// who may do what (auth.go: Authorize, the users file, Basic credentials),
// the connect document a browser fetches (Connect), and the control socket
// on which the stub probes the supervisor (Probe, Control) and hands it a
// browser's connection (SendHandOver), with the accept rule of every
// listener of the supervisor (Accept).
package control
