package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/wire"
)

// Errors callers branch on.
var (
	ErrPluginOffline = errors.New("plugin offline")            // a command's plugin is not running
	ErrRefused       = errors.New("plugin binary not trusted") // see checkTrust
)

// Timing holds the host's delays. Tests shorten them per host
// (Options.Timing), so they can run in parallel.
type Timing struct {
	// A plugin that has not completed the go-plugin handshake or answered
	// Describe within these is stopped.
	Handshake, Describe time.Duration
	// Restart backoff after a crash: doubles from BackoffMin to BackoffMax
	// and resets once a plugin has stayed up for BackoffReset.
	BackoffMin, BackoffMax, BackoffReset time.Duration
	// How often a plugin that said it has nothing to serve (see
	// proto.ExitUnavailable) is tried again; a new binary is tried at once.
	UnavailableRetry time.Duration
	// How long a plugin file must stay unchanged (no event, and its ctime
	// that old) before it is judged: writers, cp and install produce
	// bursts of events.
	Settle time.Duration
	// How long a file judged unusable (not executable, not a complete ELF
	// binary) must then stay unchanged before clients are told
	// (swap_failed): install creates the file 0600 and chmods it only
	// after a copy that may pause, and a slow writer may pause too.
	Patience time.Duration
	// Retry of a plugins directory that cannot be watched (it does not
	// exist yet, or the watch failed), besides the watch on its nearest
	// ancestor.
	DirRetryMin, DirRetryMax time.Duration
}

// DefaultTiming is the timing of a real supervisor.
func DefaultTiming() Timing {
	return Timing{
		Handshake: 5 * time.Second, Describe: 3 * time.Second,
		BackoffMin: 250 * time.Millisecond, BackoffMax: 30 * time.Second, BackoffReset: 30 * time.Second,
		UnavailableRetry: 10 * time.Minute,
		Settle:           300 * time.Millisecond, Patience: 3 * time.Second,
		DirRetryMin: time.Second, DirRetryMax: time.Minute,
	}
}

// Publisher is where the host publishes its plugins' readings,
// descriptors and states; *fanout.Hub is one. Its methods may be called
// concurrently, from any of the host's goroutines.
type Publisher interface {
	Publish(r wire.Reading) bool
	SetPlugin(id string, info *wire.PluginInfo, sensors []wire.Sensor, commands []wire.Command, st *wire.Status)
	SetState(st wire.Status)
}

// Options configures a Host.
type Options struct {
	Dir       string            // the plugins directory
	SocketDir string            // go-plugin's unix sockets
	Env       []string          // the environment plugins start with
	Sums      map[string]string // allowed SHA-256 per file name (plugin_sha256); empty allows any
	// Reserved is a plugin id no file may take (the supervisor's own).
	Reserved string
	// CommandTimeout is how long a plugin being stopped may finish its
	// commands in flight.
	CommandTimeout time.Duration
	Hub            Publisher
	Demand         Demand
	Log            *slog.Logger
	Timing         *Timing // nil: DefaultTiming
}

// Host runs the plugins of one directory: one slot per binary name,
// each with its own goroutine that starts, restarts and swaps the process.
// Create it with New, start it with Start and Watch. Its methods may be
// called concurrently.
type Host struct {
	dir       string
	socketDir string
	env       []string          // guarded by mu (settings, reconfigure)
	sums      map[string]string // allowed SHA-256 per file name; guarded by mu
	reserved  string
	hub       Publisher
	log       *slog.Logger
	cmdTO     time.Duration
	timing    Timing
	demand    Demand  // plugins stream only what is wanted, while it is
	links     *links  // where plugin links lead (see watch)
	start     startup // the directory's first look (see described)

	mu           sync.Mutex
	slots        map[string]*slot
	dying        map[string]*slot  // removed, still stopping: a new slot of that name waits for it
	unusableSeen map[string]string // file version judged unusable once, by name (see consider)
	wg           sync.WaitGroup
	ctx          context.Context

	restarts atomic.Uint64
	streams  atomic.Int64 // Stream RPCs open now
}

// New returns a host of the plugins in o.Dir; nothing runs before Start.
func New(o Options) *Host {
	m := &Host{
		dir: o.Dir, socketDir: o.SocketDir, env: o.Env, sums: o.Sums, reserved: o.Reserved, hub: o.Hub,
		log: o.Log, cmdTO: o.CommandTimeout, slots: map[string]*slot{}, timing: DefaultTiming(), demand: o.Demand,
	}
	if o.Timing != nil {
		m.timing = *o.Timing
	}
	return m
}

// Start makes the socket directory, removes the sockets a killed
// supervisor left there, and lets plugins run until ctx ends (Wait waits
// for them to stop).
func (m *Host) Start(ctx context.Context) error {
	if err := os.MkdirAll(m.socketDir, 0o700); err != nil {
		return fmt.Errorf("plugin socket dir: %w", err)
	}
	cleanSockets(m.socketDir, m.log)
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	return nil
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

// Restarts returns how many times a plugin was restarted.
func (m *Host) Restarts() uint64 { return m.restarts.Load() }

// Streams returns how many Stream RPCs are open now.
func (m *Host) Streams() int64 { return m.streams.Load() }

// Slot reports what the host has of plugin id: a slot (loaded), a
// process serving it (running), and its commands in flight.
func (m *Host) Slot(id string) (loaded, running bool, inFlight int) {
	sl := m.slot(id)
	if sl == nil {
		return false, false, 0
	}
	in := sl.cur.Load()
	if in == nil {
		return true, false, 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return true, true, in.inflight
}

// slot is one plugin binary by name. Only its loop goroutine changes cur.
type slot struct {
	id, path string
	ident    string // file version last loaded; guarded by m.mu
	m        *Host
	log      *slog.Logger
	cur      atomic.Pointer[instance]
	spoke    atomic.Bool // it has published a state (see said)
	// pub is held while the loop changes cur together with the hub's
	// descriptors, and while a redescription checks cur and publishes:
	// an instance that is no longer current never overwrites its
	// successor's descriptors (or their removal).
	pub     sync.Mutex
	swap    chan struct{} // the binary changed
	rewatch chan struct{} // a Stream opened or closed (see rewatched)
	kick    chan struct{} // something it may depend on changed (the directory's mode): retry now if down
	remove  chan struct{} // the binary is gone
	stopped chan struct{} // closed when loop returns
}

// candidate reports whether a file name in the plugins directory is meant
// to be a plugin at all: dotfiles, editor and temp files are not.
func candidate(name string) bool {
	return name != "" && name[0] != '.' && !strings.HasSuffix(name, "~") &&
		!strings.HasSuffix(name, ".tmp") && !strings.HasSuffix(name, ".swp") && !strings.HasPrefix(name, "#")
}

// load starts the plugin called name, or swaps it if it runs already
// and ident (see identify) differs from the version it runs.
func (m *Host) load(name, ident string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// A slot of this name that is being removed must be gone first, or its
	// "removed" would come after (and undo) the new one's descriptors.
	for m.dying[name] != nil {
		old := m.dying[name]
		m.mu.Unlock()
		<-old.stopped
		m.mu.Lock()
	}
	if m.ctx.Err() != nil {
		return
	}
	if sl := m.slots[name]; sl != nil {
		if sl.ident == ident {
			return
		}
		sl.ident = ident
		select {
		case sl.swap <- struct{}{}:
		default: // a swap is pending already
		}
		return
	}
	if !proto.ValidID(name) || name == m.reserved {
		m.log.Warn("plugin ignored: file name must be lower_snake and not "+m.reserved, "file", name)
		m.hub.SetState(wire.Status{Plugin: name, State: wire.StateRefused, Reason: "file name must be lower_snake"})
		return
	}
	sl := &slot{
		id: name, path: filepath.Join(m.dir, name), m: m, log: m.log.With("plugin", name), ident: ident,
		swap: make(chan struct{}, 1), rewatch: make(chan struct{}, 1), kick: make(chan struct{}, 1), remove: make(chan struct{}, 1), stopped: make(chan struct{}),
	}
	m.slots[name] = sl
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(sl.stopped)
		sl.loop(m.ctx)
		m.mu.Lock()
		if m.slots[name] == sl {
			delete(m.slots, name)
		}
		if m.dying[name] == sl {
			delete(m.dying, name)
		}
		m.mu.Unlock()
	}()
}

// unusable reports a plugin file that is there but cannot be run (not
// executable, not a complete ELF binary). If that plugin runs, the old
// process keeps serving and clients are told why the new file was not
// loaded, once per version of the file.
func (m *Host) unusable(name, ident string, why error) {
	m.mu.Lock()
	sl := m.slots[name]
	if sl == nil || sl.ident == ident {
		m.mu.Unlock()
		return
	}
	sl.ident = ident
	m.mu.Unlock()
	cur := sl.cur.Load()
	if cur == nil {
		return // down anyway: its next start says why
	}
	reason := "new binary not loaded: " + why.Error()
	sl.log.Warn("new binary not loaded, old one keeps serving", "reason", why)
	m.hub.SetState(wire.Status{Plugin: name, State: wire.StateSwapFailed, Reason: reason, Version: cur.desc.Version})
}

// unload stops the plugin called name and reports its sensors gone.
func (m *Host) unload(name string) {
	m.mu.Lock()
	sl := m.slots[name]
	if sl != nil {
		delete(m.slots, name)
		if m.dying == nil {
			m.dying = map[string]*slot{}
		}
		m.dying[name] = sl
	}
	m.mu.Unlock()
	if sl == nil {
		return
	}
	select {
	case sl.remove <- struct{}{}:
	default:
	}
}

// kickAll makes every plugin that is down try to start again now: a
// refusal may have been lifted (the directory's mode changed).
func (m *Host) kickAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sl := range m.slots {
		select {
		case sl.kick <- struct{}{}:
		default:
		}
	}
}

// Wait blocks until every slot has stopped its process (after Start's
// ctx ends).
func (m *Host) Wait() { m.wg.Wait() }

func (m *Host) slot(id string) *slot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.slots[id]
}

// settings returns the environment and the checksums plugins start with.
func (m *Host) settings() ([]string, map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.env, m.sums
}

// Reconfigure makes plugins start with env and sums from now on, and
// restarts every running one with them: one no longer allowed is
// refused.
func (m *Host) Reconfigure(env []string, sums map[string]string) {
	m.mu.Lock()
	m.env, m.sums = env, sums
	names := make([]string, 0, len(m.slots))
	for n := range m.slots {
		names = append(names, n)
	}
	m.mu.Unlock()
	slices.Sort(names)
	for _, n := range names {
		m.unload(n)
		if fi, err := os.Stat(filepath.Join(m.dir, n)); err == nil {
			m.load(n, identify(fi))
		}
	}
}
