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
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// builtinPlugin is the plugin id of the supervisor's own figures.
const builtinPlugin = "livecgid"

// Options configures a Supervisor.
type Options struct {
	Config  config.Config
	Secret  []byte       // HMAC secret of the tokens; required
	Logger  *slog.Logger // default: discard
	Version string       // reported in hello and the control socket
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

// Supervisor serves browsers and runs plugins. Create it with New and start
// it with Run; it is done when Run returns.
type Supervisor struct {
	cfg     config.Config
	secret  []byte
	log     *slog.Logger
	version string
	writers int
	stats   time.Duration
	hub     *hub
	plugins *manager
	tls     *tls.Config // tls_cert and tls_key; nil: plain ws://
	demand  *demand     // consumers of readings (see demand)
	bridge  *bridge     // the broker bridge (mqtt.go); nil without mqtt_url

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
	s := &Supervisor{
		cfg: opts.Config, secret: opts.Secret, log: log, version: opts.Version,
		writers: opts.Writers, stats: opts.Stats, nonces: map[string]time.Time{},
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
	s.demand = newDemand()
	consumers := 0 // guarded by the hub's lock (OnConsumers)
	s.hub = newHub(fanout.Options{
		Epoch: hex.EncodeToString(epoch), Version: s.version, History: s.cfg.History,
		MaxClients: s.cfg.MaxClients, Writers: s.writers, WriteTimeout: s.cfg.WriteTimeout,
		CommandRole: s.cfg.CommandRole,
		// Each attached client, a poll session's too, holds demand.
		OnConsumers: func(n int) {
			for ; consumers < n; consumers++ {
				s.demand.hold()
			}
			for ; consumers > n; consumers-- {
				s.demand.release()
			}
		},
	})
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls_cert, tls_key: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	b, err := newBridge(s)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	s.bridge = b
	socketDir := opts.SocketDir
	if socketDir == "" {
		socketDir = filepath.Join(s.cfg.StateDir, control.SocketDir)
	}
	s.plugins = &manager{
		dir: s.cfg.PluginsDir, socketDir: socketDir, sums: s.cfg.PluginSHA256, hub: s.hub,
		log: log, cmdTO: s.cfg.CommandTimeout, slots: map[string]*slot{}, timing: defaultTiming(), demand: s.demand,
		env: append(os.Environ(), proto.EnvProcRoot+"="+s.cfg.ProcRoot, proto.EnvSysRoot+"="+s.cfg.SysRoot,
			proto.EnvExecDir+"="+s.cfg.ExecDir),
	}
	if opts.timing != nil {
		s.plugins.timing = *opts.timing
	}
	return s, nil
}

// Status is what the control socket reports.
func (s *Supervisor) Status() control.Status {
	s.mu.Lock()
	port := s.port
	s.mu.Unlock()
	return control.Status{PID: os.Getpid(), Port: port, Version: s.version, Epoch: s.hub.Epoch(), Clients: s.hub.clientCount(), TLS: s.tls != nil}
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
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := os.MkdirAll(s.plugins.socketDir, 0o700); err != nil {
		return fmt.Errorf("plugin socket dir: %w", err)
	}
	cleanSockets(s.plugins.socketDir, s.log)
	s.openAudit()
	defer s.closeAudit()

	pctx, stopPlugins := context.WithCancel(context.Background())
	defer stopPlugins()
	s.plugins.ctx = pctx
	s.registerBuiltin()

	s.hub.Start()
	var bg sync.WaitGroup
	bg.Go(func() { s.publishStats(ctx, cancel) })
	bg.Go(func() { s.pinger(ctx) })
	bg.Go(func() { s.sweepPolls(ctx) })
	if s.bridge != nil {
		bg.Go(func() { s.bridge.run(ctx) })
	}
	watchErr := make(chan error, 1)
	bg.Go(func() { watchErr <- s.watch(ctx) })

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.serve(ctx, ln) }()
	s.log.Info("livecgid serving", "addr", ln.Addr().String(), "plugins_dir", s.cfg.PluginsDir, "version", s.version, "epoch", s.hub.Epoch())

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
	s.plugins.wait()
	// 4. The watcher and the rest.
	bg.Wait()
	s.hub.Stop()
	s.log.Info("livecgid stopped")
	return err
}

// cleanSockets removes go-plugin socket dirs left by a killed supervisor.
func cleanSockets(dir string, log *slog.Logger) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err == nil {
			log.Info("removed stale plugin socket", "path", e.Name())
		}
	}
}

// upgrade turns a request for /live into a WebSocket client after checking
// its Host (allowed_hosts) and its token; anything else gets an error
// answer.
func (s *Supervisor) upgrade(w *connWriter, r *http.Request) {
	if !s.cfg.HostAllowed(r.Host) {
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
	if err != nil {
		s.log.Info("upgrade refused", "remote", r.RemoteAddr, "origin", origin, "err", err)
		http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !s.cfg.HostAllowed(u.Host) {
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
	conn.SetReadLimit(s.cfg.MaxFrame)
	c := s.hub.NewClient(fanout.ClientOptions{
		Conn: conn, Net: w.nc, Cork: w.cork, Who: claims.Identity, Remote: r.RemoteAddr,
		Log: s.log.With("remote", r.RemoteAddr, "user", claims.User),
	})
	switch err := s.hub.Attach(c); err {
	case nil:
	case fanout.ErrTooMany:
		s.log.Warn("client refused: too many clients", "max_clients", s.cfg.MaxClients)
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
		s.read(ctx, c)
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
	s.nonces[n] = now.Add(s.cfg.TokenTTL + time.Minute)
	return true
}

// read handles c's frames until the connection ends, and then closes it
// whatever the reason (a client that vanished without a close frame
// included), so its descriptor is released.
//
// The rate limit is checked before a frame is read: a frame over it is
// discarded unread, never decoded. A client that keeps sending over its
// rate for floodGrace is closed with wire.CloseRateLimits.
func (s *Supervisor) read(ctx context.Context, c *fanout.Client) {
	defer c.Conn().CloseNow()
	lim := limiter{rate: s.cfg.Rate, burst: float64(s.cfg.Burst)}
	for {
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
		if !lim.allow(now) {
			if _, err := io.Copy(io.Discard, r); err != nil {
				c.Log().Debug("read ended", "err", err)
				return
			}
			if lim.drop(now) {
				c.Log().Warn("client closed: kept sending over its rate limit", "rate", s.cfg.Rate, "for", floodGrace)
				c.Conn().Close(wire.CloseRateLimits, "rate limit exceeded")
				return
			}
			if now.Sub(lim.lastWarn) > time.Second {
				lim.lastWarn = now
				c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrRateLimited,
					Message: fmt.Sprintf("more than %g messages per second: messages dropped", s.cfg.Rate)})
			}
			continue
		}
		data, err := io.ReadAll(r)
		if err != nil {
			c.Log().Debug("read ended", "err", err)
			linger(c.Net())
			return
		}
		lim.charge(len(data))
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
			var de *wire.DecodeError
			errors.As(err, &de)
			c.QueueJSON(wire.Error{Type: wire.TypeError, Code: de.Code, Message: err.Error()})
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

// command validates m against the command's schema and runs it on its
// plugin; the result goes to c only.
func (s *Supervisor) command(ctx context.Context, c *fanout.Client, m *wire.CommandMsg) {
	if !s.cmds.enter() {
		c.Log().Info("command not run: livecgid is stopping", "command", m.Name, "id", m.ID)
		c.QueueJSON(wire.Result{Type: wire.TypeResult, ID: m.ID, Error: "livecgid is stopping: command not run"})
		return
	}
	defer s.cmds.wg.Done()
	if !s.authorize(c, m) {
		return
	}
	cmd, ok := s.hub.Command(m.Name)
	if !ok {
		c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrUnknownCommand, ID: m.ID, Message: fmt.Sprintf("unknown command %q", m.Name)})
		s.auditCommand(c, m, wire.ErrUnknownCommand)
		return
	}
	args, err := validateArgs(cmd.Args, m.Args)
	if err != nil {
		c.QueueJSON(wire.Error{Type: wire.TypeError, Code: wire.ErrBadArgs, ID: m.ID, Message: fmt.Sprintf("%s: %v", m.Name, err)})
		s.auditCommand(c, m, wire.ErrBadArgs+": "+err.Error())
		return
	}
	s.cmds.wg.Add(1) // this call's count is still held
	go func() {
		defer s.cmds.wg.Done()
		cctx, cancel := context.WithTimeout(context.Background(), s.cfg.CommandTimeout)
		defer cancel()
		local := m.Name[len(cmd.Plugin)+1:]
		v, err := s.plugins.do(cctx, cmd.Plugin, local, m.ID, args)
		res := wire.Result{Type: wire.TypeResult, ID: m.ID, OK: err == nil}
		if err != nil {
			res.Error = err.Error()
			c.Log().Info("command failed", "command", m.Name, "id", m.ID, "err", err)
			s.auditCommand(c, m, "failed: "+err.Error())
		} else {
			if len(v) > 0 {
				res.Value = json.RawMessage(v)
			}
			s.auditCommand(c, m, "ok")
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

// pinger pings every client each PingInterval and drops those that do not
// answer in time. With no consumer it sleeps.
func (s *Supervisor) pinger(ctx context.Context) {
	if s.cfg.PingInterval <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		active, changed := s.demand.state()
		if !active {
			t.Stop()
			select {
			case <-ctx.Done():
				return
			case <-changed:
				t.Reset(s.cfg.PingInterval)
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			continue
		case <-t.C:
		}
		for _, c := range s.hub.Clients() {
			if c.Conn() == nil {
				continue // a poll session
			}
			go func() {
				pctx, cancel := context.WithTimeout(ctx, s.cfg.PingInterval)
				defer cancel()
				if err := c.Conn().Ping(pctx); err != nil && ctx.Err() == nil {
					c.Log().Info("client dropped: no pong", "err", err)
					c.Conn().CloseNow()
				}
			}()
		}
	}
}

// floodGrace is how long a client may keep sending over its rate limit
// (frames dropped with no pause of a second) before it is closed with
// wire.CloseRateLimits. A burst that calms down is only dropped from.
const floodGrace = 3 * time.Second

// frameCost is the frame size that costs one more message in the limiter:
// the rate limits bytes too (rate × frameCost per second), so large frames
// cannot flood at the message rate.
const frameCost = 4 << 10

// limiter is a token bucket for one client's messages; used by the
// client's reader only.
type limiter struct {
	rate, burst, tokens float64
	last                time.Time
	overSince, lastDrop time.Time // the current run of dropped frames
	lastWarn            time.Time
}

// allow reports whether a frame arriving now may be read; charge then
// takes its cost.
func (l *limiter) allow(now time.Time) bool {
	if l.last.IsZero() {
		l.tokens = l.burst
	} else {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	return l.tokens >= 1
}

// charge takes the cost of a frame of n bytes: one message, and one more
// per frameCost bytes (the bucket may go below zero).
func (l *limiter) charge(n int) {
	l.tokens -= 1 + float64(n/frameCost)
}

// drop counts a frame dropped now and reports whether the client has been
// over its rate for floodGrace.
func (l *limiter) drop(now time.Time) (flooding bool) {
	if now.Sub(l.lastDrop) > time.Second {
		l.overSince = now
	}
	l.lastDrop = now
	return now.Sub(l.overSince) >= floodGrace
}
