package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
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

// timing holds the manager's delays. Tests shorten them per supervisor
// (Options.timing), so they can run in parallel.
type timing struct {
	// A plugin that has not completed the go-plugin handshake or answered
	// Describe within these is stopped.
	handshake, describe time.Duration
	// Restart backoff after a crash: doubles from backoffMin to backoffMax
	// and resets once a plugin has stayed up for backoffReset.
	backoffMin, backoffMax, backoffReset time.Duration
	// How often a plugin that said it has nothing to serve (see
	// proto.ExitUnavailable) is tried again; a new binary is tried at once.
	unavailableRetry time.Duration
	// How long a plugin file must stay unchanged (no event, and its ctime
	// that old) before it is judged: writers, cp and install produce
	// bursts of events.
	settle time.Duration
	// How long a file judged unusable (not executable, not a complete ELF
	// binary) must then stay unchanged before clients are told
	// (swap_failed): install creates the file 0600 and chmods it only
	// after a copy that may pause, and a slow writer may pause too.
	patience time.Duration
	// Retry of a plugins directory that cannot be watched (it does not
	// exist yet, or the watch failed), besides the watch on its nearest
	// ancestor.
	dirRetryMin, dirRetryMax time.Duration
	// The broker bridge's reconnect backoff (mqtt.go): doubles from min to
	// max, and resets after a connection that lasted a minute.
	mqttBackoffMin, mqttBackoffMax time.Duration
}

// defaultTiming is the timing of a real supervisor.
func defaultTiming() timing {
	return timing{
		handshake: 5 * time.Second, describe: 3 * time.Second,
		backoffMin: 250 * time.Millisecond, backoffMax: 30 * time.Second, backoffReset: 30 * time.Second,
		unavailableRetry: 10 * time.Minute,
		settle:           300 * time.Millisecond, patience: 3 * time.Second,
		dirRetryMin: time.Second, dirRetryMax: time.Minute,
		mqttBackoffMin: time.Second, mqttBackoffMax: time.Minute,
	}
}

// manager runs the plugins of one directory: one slot per binary name,
// each with its own goroutine that starts, restarts and swaps the process.
type manager struct {
	dir       string
	socketDir string
	env       []string          // guarded by mu (settings, reconfigure)
	sums      map[string]string // allowed SHA-256 per file name; guarded by mu
	hub       *hub
	log       *slog.Logger
	cmdTO     time.Duration
	timing    timing
	demand    *demand // plugins stream only while it is held
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

// slot is one plugin binary by name. Only its loop goroutine changes cur.
type slot struct {
	id, path string
	ident    string // file version last loaded; guarded by m.mu
	m        *manager
	log      *slog.Logger
	cur      atomic.Pointer[instance]
	// pub is held while the loop changes cur together with the hub's
	// descriptors, and while a redescription checks cur and publishes:
	// an instance that is no longer current never overwrites its
	// successor's descriptors (or their removal).
	pub     sync.Mutex
	swap    chan struct{} // the binary changed
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
func (m *manager) load(name, ident string) {
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
	if !proto.ValidID(name) || name == builtinPlugin {
		m.log.Warn("plugin ignored: file name must be lower_snake and not "+builtinPlugin, "file", name)
		m.hub.setState(wire.Status{Plugin: name, State: wire.StateRefused, Reason: "file name must be lower_snake"})
		return
	}
	sl := &slot{
		id: name, path: filepath.Join(m.dir, name), m: m, log: m.log.With("plugin", name), ident: ident,
		swap: make(chan struct{}, 1), kick: make(chan struct{}, 1), remove: make(chan struct{}, 1), stopped: make(chan struct{}),
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
func (m *manager) unusable(name, ident string, why error) {
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
	m.hub.setState(wire.Status{Plugin: name, State: wire.StateSwapFailed, Reason: reason, Version: cur.desc.Version})
}

// unload stops the plugin called name and reports its sensors gone.
func (m *manager) unload(name string) {
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
func (m *manager) kickAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sl := range m.slots {
		select {
		case sl.kick <- struct{}{}:
		default:
		}
	}
}

// wait blocks until every slot has stopped its process (after ctx ends).
func (m *manager) wait() { m.wg.Wait() }

func (m *manager) slot(id string) *slot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.slots[id]
}
