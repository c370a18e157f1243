package supervisor

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
	"github.com/livecgi/livecgi/supervisor/internal/pluginhost"
	"github.com/livecgi/livecgi/supervisor/internal/ratelimit"
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

	audit *LogFile // the audit trail; nil: the log
	cmds  commands // commands in hand, for closeAudit
	polls polls    // long-poll sessions (poll.go)

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
	epoch := make([]byte, 6)
	rand.Read(epoch)
	s.hub = fanout.New(fanout.Options{
		Epoch: hex.EncodeToString(epoch), Version: s.version, History: cfg.History,
		MaxClients: cfg.MaxClients, Writers: s.writers, WriteTimeout: cfg.WriteTimeout,
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
		CommandTimeout: cfg.CommandTimeout, Hub: s.hub, Demand: s.hub, Log: log, Timing: &s.timing.host,
	})
	b, err := s.newBridge(cfg.MQTT)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	s.mqtt.cur = b
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
// plugin, stop watching.
func (s *Supervisor) Run(ctx context.Context, ln net.Listener) error {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.mu.Lock()
		s.port = a.Port
		s.mu.Unlock()
	}
	ln = &tlsListener{Listener: ln, s: s}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pctx, stopPlugins := context.WithCancel(context.Background())
	if err := s.plugins.Start(pctx); err != nil {
		stopPlugins()
		return err
	}
	s.openAudit()
	defer s.closeAudit()
	defer stopPlugins() // before the audit trail closes, as step 3 below

	s.registerBuiltin()

	s.hub.Start()
	var bg sync.WaitGroup
	bg.Go(func() { s.publishStats(ctx, cancel) })
	bg.Go(func() { s.sweepPolls(ctx) })
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
	// 4. The watcher and the rest.
	bg.Wait()
	s.hub.Stop()
	s.log.Info("livecgid stopped")
	return err
}

// upgrade turns a request for /live into a WebSocket client after checking
// its Host (allowed_hosts) and its token; anything else gets an error
// answer.
func (s *Supervisor) upgrade(w *connWriter, r *http.Request) {
	cfg := s.config()
	if !cfg.HostAllowed(r.Host) {
		s.log.Info("upgrade refused: host not allowed", "remote", r.RemoteAddr, "host", r.Host)
		http.Error(w, fmt.Sprintf("forbidden: host %q is not in allowed_hosts (see the config file)", r.Host), http.StatusForbidden)
		return
	}
	if r.URL.Path != "/live" {
		http.Error(w, "not found: the live endpoint is /live", http.StatusNotFound)
		return
	}
	origin := r.Header.Get("Origin")
	claims, err := control.VerifyToken(s.secret, r.URL.Query().Get("token"), origin, s.hub.Epoch(), time.Now())
	if err == nil && !s.useNonce(claims.Nonce) {
		err = errors.New("token already used")
	}
	var who auth.Identity
	if err == nil {
		who, err = s.admit(cfg, claims.Identity)
	}
	if err != nil {
		s.log.Info("upgrade refused", "remote", r.RemoteAddr, "origin", origin, "err", err)
		http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !cfg.HostAllowed(u.Host) {
		http.Error(w, "forbidden: bad origin or origin host not in allowed_hosts", http.StatusForbidden)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{wire.Subprotocol},
		OriginPatterns:  []string{u.Host}, // the token vouches for this origin
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		s.log.Info("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	if conn.Subprotocol() != wire.Subprotocol {
		conn.Close(websocket.StatusPolicyViolation, "subprotocol "+wire.Subprotocol+" required")
		return
	}
	c := s.hub.NewClient(fanout.ClientOptions{
		Conn: conn, Net: w.nc, Cork: w.cork, Who: who, Setup: cfg.AuthSetup(), Remote: r.RemoteAddr,
		Log: s.log.With("remote", r.RemoteAddr, "user", claims.User),
	})
	switch err := s.hub.Attach(c); err {
	case nil:
	case fanout.ErrTooMany:
		s.log.Warn("client refused: too many clients", "max_clients", cfg.MaxClients)
		conn.Close(wire.CloseTooMany, "too many clients")
		return
	default:
		conn.Close(websocket.StatusGoingAway, "supervisor stopping")
		return
	}
	c.Log().Debug("client connected")
	// The reader is a fresh goroutine: the upgrade grew this one's stack,
	// and an idle client should cost only what a blocked read needs.
	ctx := r.Context()
	go func() {
		stop := s.keepalive(c)
		s.read(ctx, c)
		stop()
		s.hub.Detach(c)
		c.Log().Debug("client gone")
	}()
}

// useNonce makes a token single-use; it reports false if it was used.
func (s *Supervisor) useNonce(n string) bool {
	s.nonceMu.Lock()
	defer s.nonceMu.Unlock()
	now := time.Now()
	if len(s.nonces) > 1024 {
		for k, exp := range s.nonces {
			if now.After(exp) {
				delete(s.nonces, k)
			}
		}
	}
	if _, ok := s.nonces[n]; ok {
		return false
	}
	s.nonces[n] = now.Add(s.config().TokenTTL + time.Minute)
	return true
}

// read handles c's frames until the connection ends, and then closes it
// whatever the reason (a client that vanished without a close frame
// included), so its descriptor is released.
//
// The rate limit is checked before a frame is read: a frame over it is
// discarded unread, never decoded. A client that keeps sending over its
// rate for ratelimit.FloodGrace is closed with wire.CloseRateLimits. The limits
// (max_frame, rate, burst) are the configuration's as each frame comes.
func (s *Supervisor) read(ctx context.Context, c *fanout.Client) {
	defer c.Conn().CloseNow()
	var lim ratelimit.Limiter
	var lastWarn time.Time
	var maxFrame int64
	for {
		cfg := s.config()
		if cfg.MaxFrame != maxFrame {
			maxFrame = cfg.MaxFrame
			c.Conn().SetReadLimit(maxFrame)
		}
		lim.Set(cfg.Rate, cfg.Burst)
		typ, r, err := c.Conn().Reader(ctx)
		if err != nil {
			if st := websocket.CloseStatus(err); st != -1 {
				c.Log().Debug("client closed", "status", st)
			} else {
				c.Log().Debug("read ended", "err", err)
			}
			return
		}
		now := time.Now()
		if !lim.Allow(now) {
			if _, err := io.Copy(io.Discard, r); err != nil {
				c.Log().Debug("read ended", "err", err)
				return
			}
			if lim.Drop(now) {
				c.Log().Warn("client closed: kept sending over its rate limit", "rate", lim.Rate(), "for", ratelimit.FloodGrace)
				c.Conn().Close(wire.CloseRateLimits, "rate limit exceeded")
				return
			}
			if now.Sub(lastWarn) > time.Second {
				lastWarn = now
				c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrRateLimited,
					Message: fmt.Sprintf("more than %g messages per second: messages dropped", lim.Rate())})
			}
			continue
		}
		data, err := io.ReadAll(r)
		if err != nil {
			c.Log().Debug("read ended", "err", err)
			linger(c.Net())
			return
		}
		lim.Charge(len(data))
		if typ != websocket.MessageText {
			c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrBadMessage, Message: "binary frames are not accepted"})
			continue
		}
		if !utf8.Valid(data) {
			c.Log().Info("client closed: text frame is not UTF-8")
			c.Conn().Close(websocket.StatusInvalidFramePayloadData, "text frame is not UTF-8")
			return
		}
		msg, err := wire.DecodeClient(data)
		if err != nil {
			c.QueueJSON(decodeError(err))
			continue
		}
		switch m := msg.(type) {
		case *wire.CommandMsg:
			s.command(ctx, c, m)
		case *wire.Subscribe:
			snap, unknown := s.hub.Subscribe(c, m.Sensors)
			if len(unknown) > 0 {
				c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrUnknownSensor, Message: fmt.Sprintf("unknown sensors: %q", unknown)})
			}
			c.QueueControl(snap)
		case *wire.Resume:
			c.QueueControl(s.hub.Resume(c, m.Epoch, m.Seq))
		}
	}
}

// decodeError is the answer to a frame DecodeClient refused: with the
// command's id when it could be read. Every transport answers with it.
func decodeError(err error) wire.Error {
	var de *wire.DecodeError
	if errors.As(err, &de) {
		return de.Frame()
	}
	return wire.Error{Type: wire.TypeError, Code: wire.ErrBadMessage, Message: err.Error()}
}

// command validates m against the command's schema and runs it on its
// plugin; the result goes to c only. c's identity is held to the
// configuration in force (see hold), which also gives the timeout.
func (s *Supervisor) command(ctx context.Context, c *fanout.Client, m *wire.CommandMsg) {
	if !s.cmds.enter() {
		c.Log().Info("command not run: livecgid is stopping", "command", m.Name, "id", m.ID)
		c.QueueJSON(wire.Result{Type: wire.TypeResult, ID: m.ID, Error: "livecgid is stopping: command not run"})
		return
	}
	defer s.cmds.wg.Done()
	cfg := s.config()
	who, ok := s.authorize(cfg, c, m)
	if !ok {
		return
	}
	cmd, ok := s.hub.Command(m.Name)
	if !ok {
		c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrUnknownCommand, ID: m.ID, Message: fmt.Sprintf("unknown command %q", m.Name)})
		s.auditCommand(who, c.Remote(), m, wire.ErrUnknownCommand)
		return
	}
	args, err := pluginhost.ValidateArgs(cmd.Args, m.Args)
	if err != nil {
		c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrBadArgs, ID: m.ID, Message: fmt.Sprintf("%s: %v", m.Name, err)})
		s.auditCommand(who, c.Remote(), m, wire.ErrBadArgs+": "+err.Error())
		return
	}
	s.cmds.wg.Add(1) // this call's count is still held
	go func() {
		defer s.cmds.wg.Done()
		cctx, cancel := context.WithTimeout(context.Background(), cfg.CommandTimeout)
		defer cancel()
		local := m.Name[len(cmd.Plugin)+1:]
		v, err := s.plugins.Do(cctx, cmd.Plugin, local, m.ID, args)
		if errors.Is(err, pluginhost.ErrNoAnswer) {
			err = fmt.Errorf("plugin %s did not answer within %v", cmd.Plugin, cfg.CommandTimeout)
		}
		res := wire.Result{Type: wire.TypeResult, ID: m.ID, OK: err == nil}
		if err != nil {
			res.Error = err.Error()
			c.Log().Info("command failed", "command", m.Name, "id", m.ID, "err", err)
			s.auditCommand(who, c.Remote(), m, "failed: "+err.Error())
		} else {
			if len(v) > 0 {
				res.Value = json.RawMessage(v)
			}
			s.auditCommand(who, c.Remote(), m, "ok")
		}
		c.QueueJSON(res)
	}()
}

// linger reads and discards what a client still sends, for up to a
// second or 1 MiB, before its connection is closed mid-frame (a frame
// over max_frame, answered with close 1009): closing a socket with
// unread data makes the kernel send a reset, which can destroy the close
// frame before the client has read it, and with it the reason.
func linger(nc net.Conn) {
	if nc == nil || nc.SetReadDeadline(time.Now().Add(time.Second)) != nil {
		return
	}
	io.CopyN(io.Discard, nc, 1<<20)
}
