package cgi

import (
	"fmt"
	"io"
	"os"

	"github.com/livecgi/livecgi/proto/config"
)

// Describe writes what the stub is and what it would use: the config file
// compiled in (ConfigPath), the state dir, the supervisor binary, the
// plugins dir and the port. It reads the config file and nothing else; it
// creates nothing and starts nothing. cmd/live.cgi prints it when run
// from a shell.
func Describe(w io.Writer, version string) {
	cfg, err := config.Load(ConfigPath)
	conf := ConfigPath
	switch _, serr := os.Stat(ConfigPath); {
	case err != nil:
		conf += " (error: " + err.Error() + "; defaults below)"
	case os.IsNotExist(serr):
		conf += " (not found: the defaults)"
	}
	state := cfg.StateDir
	if _, err := os.Stat(state); err != nil {
		state += " (created on the first request; if it cannot be, a private dir under " + os.TempDir() + ")"
	}
	fmt.Fprintf(w, `live.cgi %s: the CGI stub of livecgi. A web server runs it: put it in
cgi-bin and open http://<device>/cgi-bin/live.cgi in a browser. On a
request it starts the supervisor if none runs and serves the dashboard,
?client.js, ?connect and long polls (?poll, POST ?command). Run from a
shell it does nothing but print this.

  config file   %s
  state dir     %s
  supervisor    %s
  plugins dir   %s
  listen        %s

The config file is fixed at build time (make build CONFIG=/path).
To see why it does not work: livecgid -check, as the web server's user.
`, version, conf, state, cfg.Supervisor, cfg.PluginsDir, cfg.Listen)
}
