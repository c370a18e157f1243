// Package control is the contract between the CGI stub and the supervisor,
// standard library only so the stub stays small: the configuration file
// both read (Config, Load, with the broker bridge's keys in MQTT; the
// commented defaults in sample.conf), the trust rule for the files they
// run or read (trust.go: CheckTrust), the state directory they share
// (StateDir, Secret), the tokens the stub mints and the supervisor checks
// (MintToken, VerifyToken), who may do what (auth.go: Authorize, the
// users file, Basic credentials), the connect document a browser fetches
// (Connect, its Transports), and the control socket on which the stub
// probes the supervisor (Probe, Control), passes it a long poll or a
// command (poll.go: PollRequest, CommandRequest, Handler) and hands it a
// browser's connection (SendHandOver), with the accept rule of every
// listener of the supervisor (Accept).
package control
