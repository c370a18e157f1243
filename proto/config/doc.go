// Package config is livecgi.conf: the file the stub and the supervisor
// both read, "key = value" lines over the defaults, every key in
// sample.conf (livecgid -print-config). Standard library only and light:
// the stub links it.
//
// Files:
//
//	config.go   Config, Default, Load (a file that others could have
//	            written is refused: trust.Check), Parse, Validate;
//	            HostAllowed (allowed_hosts, against DNS rebinding) and
//	            PublicBase (public_url); the build-time defaults
//	            (DefaultStateDir, ... set with -ldflags -X)
//	auth.go     the auth keys: the modes (AuthNone, AuthBasic, ...),
//	            command_role; Authorize, the one check of every transport
//	            before a command runs, and Recheck, an identity held to
//	            the rules of a changed file
//	mqtt.go     the broker bridge's keys (MQTT): Broker, ResponseTopic,
//	            Device, Password
//	sample.conf the commented defaults (SampleConfig)
//
// Start with Config and Load in config.go. Who a user is and the users
// file are proto/auth.
package config
