package supervisor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/fsnotify/fsnotify"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/trust"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
	"github.com/livecgi/livecgi/supervisor/internal/mqttbridge"
)

// Following the configuration file (README.md, "Configuration
// changes"). The stub reads livecgi.conf on every request; livecgid
// follows it: fsnotify on the file's directory (editors and package
// managers replace it by rename, and a watch on the file would follow
// the old inode), and Reload, which SIGHUP calls. A change applies at
// once and to the clients already connected: each command holds its
// client's identity to the configuration in force (hold), and a reload
// that changes who may do what signs out the clients left with no role
// and sends the others a fresh hello; record.<id> keys start and stop
// recording (records.go). What cannot change in a running
// process (listen, plugins_dir, state_dir, history_memory_kb; max_clients
// and history past what it started with) keeps its old value: the log says to restart,
// and so do Status and livecgid -check. A file that does not load keeps
// the last good configuration running, with its error in the log, Status
// and -check.

// configSettle is how long the file must be quiet after an event before
// it is read: an editor writing in place sends several.
const configSettle = 100 * time.Millisecond

// reloader is the supervisor's side of the configuration file. follow,
// Run's goroutine, does every reload, one at a time.
type reloader struct {
	path     string                        // "": nothing to follow
	load     func() (config.Config, error) // reads path
	level    *slog.LevelVar                // may be nil
	reloaded func(config.Config)           // may be nil
	req      chan chan error               // Reload's requests, taken by follow

	mu      sync.Mutex    // guards the fields below
	first   config.Config // the file as it was at start (for state_dir as it says)
	file    config.Config // the file as last taken (for its Sum)
	lastErr string        // why the file as it is now was not taken
	restart []string      // keys whose new values wait for a restart
	changed chan struct{} // closed by the next reload that applies
}

// initReload sets up the reloader from opts (New).
func (s *Supervisor) initReload(opts Options) {
	rl := &s.rl
	rl.path, rl.load, rl.level, rl.reloaded = opts.ConfigPath, opts.Load, opts.Level, opts.Reloaded
	rl.req = make(chan chan error)
	rl.changed = make(chan struct{})
	rl.file, rl.first = opts.Config, opts.Config
	if rl.path == "" {
		return
	}
	if rl.load == nil {
		rl.load = func() (config.Config, error) { return config.Load(rl.path) }
	}
	// state_dir as the file says it (Config's is resolved), to tell its
	// changes from. A file changed since Config was read is taken when
	// follow starts (rl.file is Config's).
	if f, err := rl.load(); err == nil {
		rl.first = f
	}
}

// state returns why the file was not taken and what waits for a
// restart, for Status.
func (rl *reloader) state() (lastErr, restart string) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.lastErr, strings.Join(rl.restart, ", ")
}

// reloaded returns a channel closed when the next reload applies.
func (s *Supervisor) reloaded() <-chan struct{} {
	s.rl.mu.Lock()
	defer s.rl.mu.Unlock()
	return s.rl.changed
}

// Reload reads the configuration file again, as a change of the file
// does, and applies it even if it did not change: what it names (the
// TLS certificate, the users file) may have. It returns the file's error
// (the last good configuration runs on) once the reload is done, or
// ctx's. It needs Run to be running and Options.ConfigPath.
func (s *Supervisor) Reload(ctx context.Context) error {
	if s.rl.path == "" {
		return errors.New("no configuration file to reload")
	}
	reply := make(chan error, 1)
	select {
	case s.rl.req <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// follow watches the configuration file's directory (and the users
// file's) until ctx ends, and does the reloads: after an event, once the
// file has been quiet for configSettle, and at each Reload. A directory
// that cannot be watched (it does not exist yet) is tried again every
// few seconds, and the file's stamp looked at meanwhile.
func (s *Supervisor) follow(ctx context.Context) {
	if s.rl.path == "" {
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-s.rl.req:
				r <- errors.New("no configuration file to reload")
			}
		}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("config file not watched: changes apply on SIGHUP", "err", err)
	} else {
		defer w.Close()
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	cfgTimer, usersTimer := time.NewTimer(time.Hour), time.NewTimer(time.Hour)
	cfgTimer.Stop()
	usersTimer.Stop()
	defer cfgTimer.Stop()
	defer usersTimer.Stop()
	retry := time.NewTimer(time.Hour) // armed while a directory is not watched
	retry.Stop()
	defer retry.Stop()

	// The files that matter, by the name an event gives: the config file
	// and the users file, and where each leads if it is a link.
	var cfgNames, usersNames []string
	watched := map[string]bool{} // directories watched
	missing := false             // a directory is not watched: look at stamps
	stamp := fileStamp(s.rl.path)
	rewatch := func() {
		cfgNames = linkNames(s.rl.path)
		usersNames = nil
		if u := s.config().AuthUsers; u != "" {
			usersNames = linkNames(u)
		}
		want := map[string]bool{}
		for _, n := range append(slices.Clone(cfgNames), usersNames...) {
			want[filepath.Dir(n)] = true
		}
		missing = false
		for d := range want {
			if !watched[d] && (w == nil || w.Add(d) != nil) {
				missing = true
				continue
			}
			watched[d] = true
		}
		for d := range watched {
			if !want[d] {
				w.Remove(d)
				delete(watched, d)
			}
		}
		if missing {
			retry.Reset(2 * time.Second)
		}
	}
	rewatch()
	reload := func(why string, force bool) error {
		err := s.reload(why, force)
		rewatch()
		stamp = fileStamp(s.rl.path)
		return err
	}
	// A change made before the watch was set up has no event.
	reload("file changed", false)
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.rl.req:
			r <- reload("SIGHUP", true)
		case <-cfgTimer.C:
			reload("file changed", false)
		case <-usersTimer.C:
			s.recheckClients(s.config())
		case <-retry.C:
			rewatch()
			if st := fileStamp(s.rl.path); st != stamp {
				reload("file changed", false)
			}
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			name := filepath.Clean(ev.Name)
			if watched[name] && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				// The directory itself went: watch it again once back.
				delete(watched, name)
				missing = true
				retry.Reset(2 * time.Second)
			}
			if slices.Contains(cfgNames, name) {
				cfgTimer.Reset(configSettle)
			}
			if slices.Contains(usersNames, name) {
				usersTimer.Reset(configSettle)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s.log.Warn("config dir watch", "err", err) // an overflow included: read both again
			cfgTimer.Reset(configSettle)
			usersTimer.Reset(configSettle)
		}
	}
}

// linkNames returns path and, if it is a symbolic link, where it leads:
// a change of either is a change of the file.
func linkNames(path string) []string {
	names := []string{filepath.Clean(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != names[0] {
		names = append(names, real)
	}
	return names
}

// fileStamp names one version of the file at path ("" if it is missing):
// a replaced or rewritten file changes inode, size, mtime or ctime.
func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d/%d/%d/%d.%d", st.Ino, fi.Size(), fi.ModTime().UnixNano(), st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
}

// reload reads the file and applies it when it changed (or when force):
// see the top of this file. Only follow calls it.
func (s *Supervisor) reload(why string, force bool) error {
	rl := &s.rl
	next, err := rl.load()
	cur := s.config()
	run := next
	var restart []string
	var cert *tls.Certificate
	var b *mqttbridge.Bridge
	mqttChanged := false
	if err == nil {
		// What a running process cannot change keeps its value.
		run.StateDir = cur.StateDir
		if next.StateDir != rl.first.StateDir {
			restart = append(restart, "state_dir")
		}
		if next.Listen != cur.Listen {
			restart = append(restart, "listen")
			run.Listen = cur.Listen
		}
		if next.PluginsDir != cur.PluginsDir {
			restart = append(restart, "plugins_dir")
			run.PluginsDir = cur.PluginsDir
		}
		// What can fail is done before anything is applied.
		cert, err = loadCert(run)
	}
	if err == nil {
		_, err = parseAlarms(run.Sensors)
	}
	if err == nil && !reflect.DeepEqual(run.MQTT, cur.MQTT) {
		mqttChanged = true
		b, err = s.newBridge(run.MQTT)
	}
	rl.mu.Lock()
	if err != nil {
		msg := err.Error()
		if msg != rl.lastErr || force {
			s.log.Error("config not reloaded: the last good configuration keeps running", "file", rl.path, "by", why, "err", err)
		}
		rl.lastErr = msg
		rl.mu.Unlock()
		return err
	}
	wasBroken := rl.lastErr != ""
	rl.lastErr = ""
	if next.Sum == rl.file.Sum && !force {
		rl.mu.Unlock()
		if wasBroken {
			s.log.Info("config file loads again: it is the configuration running", "file", rl.path)
		}
		return nil
	}
	restart = append(restart, historyRestart(cur, &run)...)
	clients, history := s.hub.SetLimits(run.MaxClients, run.History, run.WriteTimeout)
	s.hub.SetMaxPerKey(run.MaxClientsPerAddr)
	if clients < run.MaxClients {
		restart = append(restart, "max_clients")
		run.MaxClients = clients
	}
	if history < run.History {
		restart = append(restart, "history")
		run.History = history
	}
	// The history takes its new sensors before the demand follows the
	// configuration (followDemand wakes on rl.changed): the first reading
	// of a sensor recorded from now on is kept.
	s.records.apply(run.Sensors.Record)
	s.cfg.Store(&run)
	s.cert.Store(cert)
	if rl.level != nil {
		var l slog.Level
		if l.UnmarshalText([]byte(run.LogLevel)) == nil {
			rl.level.Set(l)
		}
	}
	rl.file = next
	rl.restart = restart
	close(rl.changed)
	rl.changed = make(chan struct{})
	rl.mu.Unlock()

	changed := changedKeys(cur, &run)
	s.log.Info("config reloaded", "file", rl.path, "by", why, "changed", strings.Join(changed, ","))
	if len(restart) > 0 {
		s.log.Warn(fmt.Sprintf("config: %s changed: restart livecgid (kill -TERM %d; the next page load starts it)",
			strings.Join(restart, ", "), os.Getpid()), "running", fmt.Sprintf("listen %s, plugins_dir %s, state_dir %s, max_clients %d, history %d",
			cur.Listen, cur.PluginsDir, cur.StateDir, clients, history))
	}
	if mqttChanged {
		s.swapBridge(b)
	}
	if !slices.Equal(pluginEnv(*cur), pluginEnv(run)) || !reflect.DeepEqual(cur.PluginSHA256, run.PluginSHA256) {
		s.log.Info("config: restarting the plugins with the new proc_root, sys_root, exec_dir, net_interfaces or plugin_sha256")
		s.plugins.Reconfigure(pluginEnv(run), run.PluginSHA256)
	}
	if force || cur.AuthSetup() != run.AuthSetup() || !reflect.DeepEqual(cur.CommandRoles, run.CommandRoles) {
		s.recheckClients(&run)
	}
	s.alarms.reconfigure(&run)
	if rl.reloaded != nil {
		rl.reloaded(run)
	}
	return nil
}

// changedKeys names the keys whose values differ between a and b.
func changedKeys(a, b *config.Config) []string {
	var out []string
	var walk func(prefix string, va, vb reflect.Value)
	walk = func(prefix string, va, vb reflect.Value) {
		t := va.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Name == "Sum" {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(keyName(f.Name)+"_", va.Field(i), vb.Field(i))
				continue
			}
			if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
				out = append(out, keyName(prefix+f.Name))
			}
		}
	}
	walk("", reflect.ValueOf(*a), reflect.ValueOf(*b))
	return out
}

// keyName is the config key of a Config field: its name in snake case,
// but for the few keys named otherwise.
func keyName(field string) string {
	switch field {
	case "CommandRoles":
		return "command_role"
	case "mqtt_DeviceID":
		return "device_id"
	case "mqtt_QoS":
		return "mqtt_qos"
	case "mqtt_KeepAlive":
		return "mqtt_keepalive"
	case "mqtt_HomeAssistant":
		return "mqtt_homeassistant"
	case "sensors_Deadband": // per-sensor keys: <prefix><id>
		return config.KeyDeadband + "*"
	case "sensors_Heartbeat":
		return config.KeyHeartbeat + "*"
	case "sensors_Alarms":
		return config.KeyAlarm + "*"
	case "sensors_Record":
		return config.KeyRecord + "*"
	}
	field = strings.TrimPrefix(field, "sensors_") // Config.Sensors' keys have no prefix
	prefix, name := "", field
	if i := strings.LastIndexByte(field, '_'); i >= 0 {
		prefix, name = field[:i+1], field[i+1:]
	}
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) && (!unicode.IsUpper(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return prefix + b.String()
}

// recheckClients holds every signed-in client to cfg after a change of
// who may do what: one left with no role is closed (a WebSocket with
// wire.CloseSignedOut, a poll session ended), and every other one gets a
// fresh hello saying its role now and what each command needs.
func (s *Supervisor) recheckClients(cfg *config.Config) {
	who := map[*fanout.Client]auth.Identity{}
	for _, c := range s.hub.Clients() {
		if c.Setup() == "" {
			continue // the bridge: its role is mqtt_role
		}
		id, err := s.hold(cfg, c.Who(), c.Setup())
		if err == nil {
			who[c] = id
			continue
		}
		c.Log().Info("client signed out by the configuration", "err", err)
		if c.Conn() == nil {
			s.endPoll(c)
			continue
		}
		c.Shut()
		go c.Conn().Close(wire.CloseSignedOut, "signed out: the configuration changed")
	}
	s.hub.Rehello(who)
}

// usersFile is auth_users as Recheck reads it: parsed again only when
// the file changed (its stamp), but checked for trust each time.
type usersFile struct {
	mu    sync.Mutex
	path  string
	stamp string
	users []auth.User
	err   error
}

func (u *usersFile) read(path string) ([]auth.User, error) {
	if path == "" {
		return nil, nil
	}
	if err := trust.Check(path, trust.Options{Secret: true, StickyDirs: true}); err != nil {
		return nil, fmt.Errorf("users file refused: %w", err)
	}
	st := fileStamp(path)
	u.mu.Lock()
	defer u.mu.Unlock()
	if path == u.path && st == u.stamp && st != "" {
		return u.users, u.err
	}
	u.users, u.err = auth.ReadUsers(path)
	u.path, u.stamp = path, st
	return u.users, u.err
}

// mqttRun is the broker bridge of the configuration in force.
type mqttRun struct {
	mu   sync.Mutex
	cur  *mqttbridge.Bridge // nil without mqtt_url
	ctx  context.Context    // Run's; nil before Run
	wg   *sync.WaitGroup    // Run's background goroutines
	stop context.CancelFunc
	done chan struct{} // closed when the running bridge's run returned
}

// newBridge returns the broker bridge m asks for, nil without mqtt_url:
// a client of the hub whose command messages take the frame path as
// every transport's frames do (ask), under one rate limit for all of
// them.
func (s *Supervisor) newBridge(m config.MQTT) (*mqttbridge.Bridge, error) {
	g := new(gate)
	return mqttbridge.New(mqttbridge.Options{
		MQTT: m, Hub: s.hub, Described: s.plugins.Described, Log: s.log,
		Limits: func() mqttbridge.Limits { return mqttbridge.Limits{MaxFrame: s.config().MaxFrame} },
		Frames: func(ctx context.Context, who auth.Identity, remote string, log *slog.Logger, frame []byte) []byte {
			return s.ask(ctx, sender{who: who, remote: remote, log: log}, g, frame)
		},
		Backoff: s.timing.mqttBackoffMin, MaxBackoff: s.timing.mqttBackoffMax,
	})
}

// startBridge runs the bridge, if any, among Run's goroutines bg.
func (s *Supervisor) startBridge(ctx context.Context, bg *sync.WaitGroup) {
	s.mqtt.mu.Lock()
	defer s.mqtt.mu.Unlock()
	s.mqtt.ctx, s.mqtt.wg = ctx, bg
	s.runBridgeLocked()
}

func (s *Supervisor) runBridgeLocked() {
	b := s.mqtt.cur
	if b == nil || s.mqtt.ctx == nil {
		return
	}
	ctx, cancel := context.WithCancel(s.mqtt.ctx)
	done := make(chan struct{})
	s.mqtt.stop, s.mqtt.done = cancel, done
	s.mqtt.wg.Go(func() {
		defer close(done)
		b.Run(ctx)
	})
}

// swapBridge stops the running bridge (it says offline and disconnects)
// and starts b (nil: none). Only follow calls it, while Run runs.
func (s *Supervisor) swapBridge(b *mqttbridge.Bridge) {
	s.mqtt.mu.Lock()
	defer s.mqtt.mu.Unlock()
	if s.mqtt.stop != nil {
		s.mqtt.stop()
		<-s.mqtt.done
		s.mqtt.stop, s.mqtt.done = nil, nil
	}
	s.mqtt.cur = b
	if b != nil {
		s.log.Info("mqtt: bridge restarted for the new configuration", "mqtt", b.Broker())
	}
	s.runBridgeLocked()
}

// tlsListener serves TLS on the connections it accepts while tls_cert
// is set (a reload may set or unset it).
type tlsListener struct {
	net.Listener
	s *Supervisor
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.s.cert.Load() == nil {
		return c, err
	}
	return tls.Server(c, l.s.tlsConf), nil
}
