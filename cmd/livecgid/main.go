// Command livecgid is the livecgi supervisor: it serves browsers over
// WebSockets and runs the plugins. The CGI stub starts it on first
// contact; it can also be run by hand or from an init script. The
// built-in plugins are in it too (see builtins): run through a link named
// after one of them, or as livecgid plugin NAME, it serves that plugin.
// README.md here is the operator's manual.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/control/ctlserver"
	"github.com/livecgi/livecgi/supervisor"
)

var version = "dev"

func main() {
	if name, ok := pluginName(os.Args); ok {
		if err := servePlugin(name); err != nil {
			fmt.Fprintln(os.Stderr, "livecgid:", err)
			os.Exit(2)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "livecgid:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if isAddUser(args) {
		return addUser(args, os.Stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("livecgid", flag.ContinueOnError)
	var usage bytes.Buffer // -help goes to stdout, a usage error to stderr
	fs.SetOutput(&usage)
	configPath := fs.String("config", "/etc/livecgi/livecgi.conf", "configuration `file` (missing: defaults)")
	listen := fs.String("listen", "", "WebSocket listen `address` (overrides the config)")
	pluginsDir := fs.String("plugins-dir", "", "plugins `dir` (overrides the config)")
	stateDir := fs.String("state-dir", "", "state `dir` (overrides the config)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (overrides the config)")
	logPath := fs.String("log", "", "log `file`; - for stderr (default: livecgid.log in the state dir)")
	printConfig := fs.Bool("print-config", false, "print a commented sample configuration and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	checkMode := fs.Bool("check", false, "check config, state dir, supervisor, plugins and port, as the web server's user; exit 1 on a FAIL")
	// Listed for -help; isAddUser has sent a run with -adduser to addUser.
	fs.String("adduser", "", addUserUsage)
	role := fs.String("role", auth.RoleOperator, roleUsage)
	users := fs.String("users", "", usersUsage)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, err := usage.WriteTo(stdout)
			return err
		}
		usage.WriteTo(stderr)
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *role != auth.RoleOperator || *users != "" {
		return errors.New("-role and -users go with -adduser NAME")
	}
	switch {
	case *printConfig:
		_, err := io.WriteString(stdout, config.SampleConfig)
		return err
	case *showVersion:
		_, err := fmt.Fprintln(stdout, "livecgid", version)
		return err
	}
	// The file with the command line's overrides; state_dir as the file
	// says (the stub passes -state-dir: where it found the file's).
	loadFile := func() (config.Config, error) {
		cfg, err := config.Load(*configPath)
		for flagVal, field := range map[*string]*string{listen: &cfg.Listen, pluginsDir: &cfg.PluginsDir, logLevel: &cfg.LogLevel} {
			if *flagVal != "" {
				*field = *flagVal
			}
		}
		return cfg, err
	}
	load := func() (config.Config, error) {
		cfg, err := loadFile()
		if err == nil {
			err = cfg.Validate()
		}
		return cfg, err
	}
	cfg, err := loadFile()
	if *stateDir != "" {
		cfg.StateDir = *stateDir
	}
	if *checkMode {
		if !check(stdout, *configPath, cfg, err) {
			return errors.New("check failed: see the FAIL lines")
		}
		return nil
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return err
	}
	// SIGHUP reloads the configuration (serve); until then it must not
	// end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	dir, fallback, err := control.StateDir(cfg.StateDir)
	if err != nil {
		return err
	}
	cfg.StateDir = dir

	var out io.Writer = stderr
	if *logPath != "-" {
		p := *logPath
		if p == "" {
			p = filepath.Join(dir, control.LogFile)
		}
		lf, err := supervisor.OpenLog(p, 1<<20)
		if err != nil {
			return err
		}
		defer lf.Close()
		out = lf
	}
	var l slog.Level
	l.UnmarshalText([]byte(cfg.LogLevel))
	level := new(slog.LevelVar)
	level.Set(l)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	if fallback != nil {
		log.Warn("state dir not usable, using fallback", "wanted", cfg.StateDir, "using", dir, "reason", fallback)
	}
	smallBoardDefaults(cfg, log)

	lock, err := supervisor.Lock(filepath.Join(dir, control.LockFile))
	if errors.Is(err, supervisor.ErrLocked) {
		log.Info("another livecgid is running: exiting")
		return nil
	}
	if err != nil {
		return err
	}
	defer lock.Close()

	secret, err := control.Secret(dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("cannot listen", "addr", cfg.Listen, "err", err)
		return err
	}
	sup, err := supervisor.New(supervisor.Options{
		Config: cfg, ConfigPath: *configPath, Load: load, Level: level,
		Reloaded: func(cfg config.Config) { smallBoardDefaults(cfg, log) },
		Secret:   secret, Logger: log, Version: version,
	})
	if err != nil {
		return err
	}
	sock := filepath.Join(dir, control.ControlFile)
	os.Remove(sock) // stale from a killed supervisor: we hold the lock
	cln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer os.Remove(sock)
	err = serve(ctx, sup, ln, cln, hup)
	if err != nil {
		log.Error("livecgid failed", "err", err)
	}
	return err
}

// serve runs sup on ln and the control socket on cln until ctx ends,
// reloading the configuration at each signal on hup (may be nil). A
// listener that fails for good (a passing shortage is waited out) stops
// both and is returned: the process exits non-zero, its lock goes with
// it, and the stub's next request starts a fresh supervisor.
func serve(ctx context.Context, sup *supervisor.Supervisor, ln, cln net.Listener, hup <-chan os.Signal) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				sup.Reload(ctx) // logs what it did
			}
		}
	}()
	ctlErr := make(chan error, 1)
	go func() {
		err := ctlserver.Control{Status: sup.Status, HandOver: sup.HandOver, Handlers: sup.ControlHandlers()}.Serve(ctx, cln)
		if err != nil {
			err = fmt.Errorf("control socket: %w", err)
			cancel()
		}
		ctlErr <- err
	}()
	err := sup.Run(ctx, ln)
	cancel()
	if cerr := <-ctlErr; err == nil {
		err = cerr
	}
	return err
}

// smallBoardDefaults applies the configured GC settings unless the
// environment already chose (GOGC, GOMEMLIMIT); again at each reload.
func smallBoardDefaults(cfg config.Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") == "" && cfg.MemoryLimitMB > 0 {
		debug.SetMemoryLimit(int64(cfg.MemoryLimitMB) << 20)
	}
	if os.Getenv("GOGC") == "" && cfg.GOGC > 0 {
		debug.SetGCPercent(cfg.GOGC)
	}
	log.Debug("memory settings", "gomemlimit", debug.SetMemoryLimit(-1), "gogc", cfg.GOGC)
}
