package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/trust"
	"github.com/livecgi/livecgi/supervisor"
)

// check answers "why isn't it working?" for the user running it (run it
// as the web server's user: the stub and the supervisor it starts run as
// that user): one line per part, "ok" or "FAIL" with the fix. It may
// create the state dir, as the stub would. It reports whether all is ok.
func check(w io.Writer, configPath string, cfg config.Config, cfgErr error) bool {
	good := true
	line := func(ok bool, what, msg, fix string) {
		if ok {
			fmt.Fprintf(w, "ok    %-10s %s\n", what, msg)
			return
		}
		good = false
		fmt.Fprintf(w, "FAIL  %-10s %s\n      %-10s fix: %s\n", what, msg, "", fix)
	}
	// trustLine reports a file that others could replace, with
	// trust.Check's own fix.
	trustLine := func(what string, err error, why string) {
		var te *trust.Error
		if errors.As(err, &te) {
			line(false, what, te.Path+" "+te.Problem, te.Fix+" ("+why+")")
		} else {
			line(false, what, err.Error(), "")
		}
	}

	// The configuration: parsed, and not writable by others (it names the
	// binary the stub runs).
	_, statErr := os.Stat(configPath)
	switch {
	case cfgErr != nil:
		line(false, "config", cfgErr.Error(), "correct that line (livecgid -print-config shows every key)")
	case errors.Is(statErr, fs.ErrNotExist):
		line(true, "config", configPath+" not found: the defaults", "")
	default:
		if err := cfg.Validate(); err != nil {
			line(false, "config", configPath+": "+err.Error(), "correct the value")
		} else if err := supervisor.CheckAlarms(cfg); err != nil {
			line(false, "config", configPath+": "+err.Error(), "correct the rule: alarm.<name> = "+supervisor.AlarmSyntax)
		} else if err := trust.Check(configPath, trust.Options{}); err != nil {
			trustLine("config", err, "it names the program the stub runs")
		} else {
			line(true, "config", configPath, "")
		}
	}

	// The state dir, as the stub and the supervisor resolve it.
	state, fallback, err := control.StateDir(cfg.StateDir)
	switch {
	case err != nil:
		line(false, "state dir", err.Error(), fmt.Sprintf("create %s owned by uid %d with mode 0700, or set state_dir to a directory this user may create", cfg.StateDir, os.Getuid()))
		state = ""
	case fallback != nil:
		line(true, "state dir", fmt.Sprintf("%s (%s is not usable: %v)", state, cfg.StateDir, fallback), "")
	default:
		line(true, "state dir", state, "")
	}

	// The supervisor binary the stub starts.
	bin := cfg.Supervisor
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	if fi, err := os.Stat(bin); err != nil {
		line(false, "supervisor", err.Error(), "install livecgid there, or set supervisor in the config")
	} else if !fi.Mode().IsRegular() || syscall.Access(bin, 1) != nil {
		line(false, "supervisor", bin+" is not an executable file for uid "+strconv.Itoa(os.Getuid()), "chmod 0755 "+bin)
	} else if err := trust.Check(bin, trust.Options{}); err != nil {
		trustLine("supervisor", err, "the stub runs it")
	} else {
		line(true, "supervisor", bin, "")
	}

	// The plugins dir and each plugin, by the supervisor's rules.
	dir := cfg.PluginsDir
	if ents, err := os.ReadDir(dir); err != nil {
		line(false, "plugins", err.Error(), "create it (mode 0755) and put plugin binaries in it, or set plugins_dir")
	} else if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o022 != 0 {
		line(false, "plugins", fmt.Sprintf("%s is writable by group or others (mode %v): every plugin is refused", dir, fi.Mode().Perm()), "chmod go-w "+dir)
	} else {
		n := 0
		for _, e := range ents {
			ok, err := supervisor.CheckPluginFile(dir, e.Name(), cfg.PluginSHA256)
			if !ok {
				continue
			}
			n++
			if err != nil {
				fix := "chmod 0755, chown root or this user; or remove it"
				if errors.Is(err, supervisor.ErrRefused) && len(cfg.PluginSHA256) > 0 {
					fix = "add its sum to plugin_sha256 (sha256sum " + filepath.Join(dir, e.Name()) + "), or remove it"
				}
				line(false, "plugin", e.Name()+": "+err.Error(), fix)
			} else {
				line(true, "plugin", e.Name(), "")
			}
		}
		if n == 0 {
			line(false, "plugins", dir+" holds no plugin", "install plugins there (make install), e.g. system")
		} else {
			line(true, "plugins", fmt.Sprintf("%s: %d plugin file(s)", dir, n), "")
		}
	}

	// The WebSocket port: held by our supervisor, or free for it.
	port := ""
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if st, err := probe(ctx, state); err == nil {
		port = strconv.Itoa(st.Port)
		line(true, "port", fmt.Sprintf("%s held by livecgid %s, pid %d (listen = %s)", port, st.Version, st.PID, cfg.Listen), "")
		running(line, configPath, cfg, st)
	} else if ln, err := net.Listen("tcp", cfg.Listen); err != nil {
		fix := "stop the program holding it (ss -ltnp) or set listen to a free port"
		if errors.Is(err, syscall.EACCES) {
			fix = "ports below 1024 need root: set listen to a higher port"
		}
		line(false, "port", "cannot listen on "+cfg.Listen+": "+err.Error(), fix)
	} else {
		_, port, _ = net.SplitHostPort(cfg.Listen)
		ln.Close()
		line(true, "port", cfg.Listen+" is free for livecgid", "")
	}

	// What a browser is told.
	if port != "" {
		if port == "0" {
			port = "<a free port chosen at start>"
		}
		msg := "a page from http://HOST/ gets ws://HOST:" + port + "/live?token=…, with HOST the name it used; the firewall must let TCP " + port + " through"
		if host, _, _ := net.SplitHostPort(cfg.Listen); host != "" {
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				msg += " (listen is on loopback: only browsers on this machine can connect)"
			}
		}
		line(true, "browser", msg, "")
	}

	// The broker bridge.
	if cfg.MQTT.URL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if msg, err := supervisor.CheckBroker(ctx, cfg); err != nil {
			line(false, "mqtt", err.Error(), "check mqtt_url, the broker's port and firewall, mqtt_username and mqtt_password_file, mqtt_ca")
		} else {
			line(true, "mqtt", msg, "")
		}
	}
	return good
}

// probe asks the supervisor behind dir's control socket; an empty dir
// has none.
func probe(ctx context.Context, dir string) (control.Status, error) {
	if dir == "" {
		return control.Status{}, errors.New("no state dir")
	}
	return control.Probe(ctx, dir)
}

// running says whether the supervisor that runs (st) runs the
// configuration file as it is now.
func running(line func(ok bool, what, msg, fix string), configPath string, cfg config.Config, st control.Status) {
	pid := strconv.Itoa(st.PID)
	switch {
	case st.ConfigError != "":
		line(false, "running", "livecgid pid "+pid+" did not take "+configPath+" as it is now and runs its last good configuration: "+st.ConfigError,
			"correct the file: livecgid reads it again when it changes (or on kill -HUP "+pid+")")
	case st.ConfigSum != cfg.Sum:
		line(false, "running", "livecgid pid "+pid+" does not run "+configPath+" as it is now (it has not reloaded it yet, or it was started with another -config)",
			"kill -HUP "+pid+" makes it read the file again; if that does not help, kill -TERM "+pid+" (the next page load starts it)")
	case st.Restart != "":
		line(false, "running", "livecgid pid "+pid+" runs "+configPath+", but its new "+st.Restart+" takes a restart",
			"kill -TERM "+pid+"; the next page load starts it")
	default:
		line(true, "running", "livecgid pid "+pid+" runs "+configPath+" as it is now", "")
	}
}
