package supervisor

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
	"github.com/livecgi/livecgi/supervisor/internal/pluginhost"
)

// builtinPlugin is the plugin id of the supervisor's own figures.
const builtinPlugin = "livecgid"

// Options configures a Supervisor.
type Options struct {
	Config config.Config
	// ConfigPath is the file Config was read from. With it, livecgid
	// follows the file (see Reload); "" runs Config as it is.
	ConfigPath string
	// Load reads ConfigPath again: the file's configuration with the
	// command line's overrides, state_dir as the file says. Default:
	// config.Load.
	Load func() (config.Config, error)
	// Level, if set, is the log level of Logger: Reload sets it from
	// log_level.
	Level *slog.LevelVar
	// Reloaded, if set, is called with each configuration Reload applied,
	// from the goroutine that applied it (cmd/livecgid sets the memory
	// settings from it).
	Reloaded func(config.Config)
	Secret   []byte       // HMAC secret of the tokens; required
	Logger   *slog.Logger // default: discard
	Version  string       // reported in hello and the control socket
	// SocketDir holds go-plugin's unix sockets; default <state dir>/plugins.
	SocketDir string
	// Writers is the number of goroutines writing to clients; default
	// 2×GOMAXPROCS, at least 4.
	Writers int
	// Stats is how often the supervisor publishes its own figures as the
	// livecgid sensors; default 2 s.
	Stats time.Duration

	timing *timing // tests' delays; nil: defaultTiming
	// pollUnused is how long a poll session lives with no poll after
	// the one that opened it; 0: the constant pollUnused.
	pollUnused time.Duration
}

// timing holds the delays of the plugin host and of the broker bridge.
// Tests shorten them per supervisor (Options.timing), so they can run in
// parallel.
type timing struct {
	host pluginhost.Timing
	// The broker bridge's reconnect backoff (mqttbridge.Options).
	mqttBackoffMin, mqttBackoffMax time.Duration
}

// defaultTiming is the timing of a real supervisor.
func defaultTiming() timing {
	return timing{host: pluginhost.DefaultTiming(), mqttBackoffMin: time.Second, mqttBackoffMax: time.Minute}
}

// Supervisor serves browsers and runs plugins. Create it with New and start
// it with Run; it is done when Run returns. Its methods may be called
// concurrently.
type Supervisor struct {
	// cfg is the configuration in force; Reload replaces it whole. Read
	// it with config, once per request or command.
	cfg     atomic.Pointer[config.Config]
	secret  []byte
	log     *slog.Logger
	version string
	writers int
	stats   time.Duration
	timing  timing
	hub     *fanout.Hub
	plugins *pluginhost.Host

	// tls_cert and tls_key: cert is nil for plain ws://; tlsConf serves
	// the current one (Reload swaps it).
	cert    atomic.Pointer[tls.Certificate]
	tlsConf *tls.Config

	mqtt  mqttRun   // the broker bridge (internal/mqttbridge), none without mqtt_url
	rl    reloader  // following the configuration file (reload.go)
	users usersFile // auth_users, as Recheck reads it (reload.go)

	alarms  alarms  // alarm.<name> (alarms.go)
	records records // record.<id>: the history (records.go)

	audit trail    // the audit trail (audit.go)
	cmds  commands // commands in hand, for closeAudit
	polls polls    // long-poll sessions (poll.go)
	// pollUnused: see the constant.
	pollUnused time.Duration

	nonceMu sync.Mutex
	nonces  map[string]time.Time // used tokens until they expire

	hsMu       sync.Mutex
	handshakes list.List // of net.Conn: connections whose request is not in yet, oldest first

	port int
	mu   sync.Mutex
}

// New checks opts and returns a Supervisor ready to Run.
func New(opts Options) (*Supervisor, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(opts.Secret) < 16 {
		return nil, errors.New("secret: want at least 16 bytes")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Config
	s := &Supervisor{
		secret: opts.Secret, log: log, version: opts.Version,
		writers: opts.Writers, stats: opts.Stats, nonces: map[string]time.Time{},
	}
	s.audit.log = log
	s.cfg.Store(&cfg)
	s.timing = defaultTiming()
	if opts.timing != nil {
		s.timing = *opts.timing
	}
	if s.version == "" {
		s.version = "dev"
	}
	if s.writers <= 0 {
		s.writers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if s.stats <= 0 {
		s.stats = 2 * time.Second
	}
	s.pollUnused = opts.pollUnused
	if s.pollUnused <= 0 {
		s.pollUnused = pollUnused
	}
	epoch := make([]byte, 6)
	rand.Read(epoch)
	s.hub = fanout.New(fanout.Options{
		Epoch: hex.EncodeToString(epoch), Version: s.version, History: cfg.History,
		MaxClients: cfg.MaxClients, MaxPerKey: cfg.MaxClientsPerAddr, Writers: s.writers, WriteTimeout: cfg.WriteTimeout,
		CommandRole: func(command string) string { return s.config().CommandRole(command) },
	})
	cert, err := loadCert(cfg)
	if err != nil {
		return nil, err
	}
	s.cert.Store(cert)
	s.tlsConf = &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.cert.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("tls_cert is no longer set")
		},
		MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
	}
	socketDir := opts.SocketDir
	if socketDir == "" {
		socketDir = filepath.Join(cfg.StateDir, control.SocketDir)
	}
	s.plugins = pluginhost.New(pluginhost.Options{
		Dir: cfg.PluginsDir, SocketDir: socketDir, Env: pluginEnv(cfg), Sums: cfg.PluginSHA256, Reserved: builtinPlugin,
		CommandTimeout: cfg.CommandTimeout, Hub: readings{s.hub, s}, Demand: s.hub, Log: log, Timing: &s.timing.host,
	})
	b, err := s.newBridge(cfg.MQTT)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	s.mqtt.cur = b
	if err := s.alarms.init(s, cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	s.records.init(cfg.Sensors, log)
	s.initReload(opts)
	return s, nil
}

// config returns the configuration in force; the caller must not change
// it.
func (s *Supervisor) config() *config.Config { return s.cfg.Load() }

// pluginEnv is the environment plugins start with under cfg.
func pluginEnv(cfg config.Config) []string {
	return append(os.Environ(), proto.EnvProcRoot+"="+cfg.ProcRoot, proto.EnvSysRoot+"="+cfg.SysRoot,
		proto.EnvExecDir+"="+cfg.ExecDir, proto.EnvNetInterfaces+"="+cfg.NetInterfaces)
}

// loadCert loads tls_cert and tls_key; nil without them.
func loadCert(cfg config.Config) (*tls.Certificate, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls_cert, tls_key: %w", err)
	}
	return &cert, nil
}

// Status is what the control socket reports.
func (s *Supervisor) Status() control.Status {
	s.mu.Lock()
	port := s.port
	s.mu.Unlock()
	st := control.Status{PID: os.Getpid(), Port: port, Version: s.version, Epoch: s.hub.Epoch(), Clients: s.hub.ClientCount(),
		TLS: s.cert.Load() != nil, ConfigSum: s.config().Sum}
	st.ConfigError, st.Restart = s.rl.state()
	return st
}

// Run serves WebSockets on ln (over TLS with tls_cert) and runs the
// plugins until ctx ends (or the idle timeout passes), then shuts down in
// order: stop accepting, close every client with "going away", stop every
// plugin, stop watching, save the history (history_dir).
func (s *Supervisor) Run(ctx context.Context, ln net.Listener) error {
	// Before any reading, and before Status has a port: the stub asks
	// for nothing until then.
	s.records.load(s.config().Sensors.HistoryDir)
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.mu.Lock()
		s.port = a.Port
		s.mu.Unlock()
	}
	ln = &tlsListener{Listener: ln, s: s}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pctx, stopPlugins := context.WithCancel(context.Background())
	s.alarms.start() // before the first reading
	if err := s.plugins.Start(pctx); err != nil {
		stopPlugins()
		s.alarms.stop()
		return err
	}
	s.audit.open(s.config().StateDir)
	defer s.closeAudit()
	defer stopPlugins() // before the audit trail closes, as step 3 below

	s.registerBuiltin()
	s.alarms.describe()

	s.hub.Start()
	var bg sync.WaitGroup
	bg.Go(func() { s.publishStats(ctx) })
	bg.Go(func() { s.idleExit(ctx, cancel) })
	bg.Go(func() { s.sweepPolls(ctx) })
	bg.Go(func() { s.alarms.run(ctx) })
	bg.Go(func() { s.syncHistory(ctx) })
	s.startBridge(ctx, &bg)
	watchErr := make(chan error, 1)
	bg.Go(func() { watchErr <- s.plugins.Watch(ctx) })
	bg.Go(func() { s.follow(ctx) })

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.serve(ctx, ln) }()
	s.log.Info("livecgid serving", "addr", ln.Addr().String(), "plugins_dir", s.config().PluginsDir, "version", s.version, "epoch", s.hub.Epoch())

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case err = <-watchErr:
		if err != nil {
			err = fmt.Errorf("watch plugins: %w", err)
		}
	}
	cancel()
	// 1. Stop accepting.
	ln.Close()
	// 2. Going away to every client (Shutdown does not wait for hijacked
	// connections); their readers return and detach them.
	var cw sync.WaitGroup
	for _, c := range s.hub.Shutdown() {
		c.Shut()
		if c.Conn() == nil {
			continue // a poll session: its waiting poll ends with ctx
		}
		cw.Go(func() { c.Conn().Close(websocket.StatusGoingAway, "supervisor stopping") })
	}
	cw.Wait()
	// 3. Stop every plugin.
	stopPlugins()
	s.plugins.Wait()
	// 4. The watcher and the rest; then the history, every reading in.
	bg.Wait()
	s.records.save(s.config().Sensors.HistoryDir, "stop")
	// 5. alarm_exec, then the alarms' states.
	s.alarms.stop()
	s.hub.Stop()
	s.log.Info("livecgid stopped")
	return err
}
