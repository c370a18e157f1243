package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
)

// Timeouts of a plugin's start. A plugin that has not completed the
// go-plugin handshake or answered Describe by then is stopped.
var (
	handshakeTimeout = 5 * time.Second
	describeTimeout  = 3 * time.Second
)

// Restart backoff after a crash: doubles from backoffMin to backoffMax and
// resets once a plugin has stayed up for backoffReset.
var (
	backoffMin   = 250 * time.Millisecond
	backoffMax   = 30 * time.Second
	backoffReset = 30 * time.Second
)

// Errors callers branch on.
var (
	ErrPluginOffline = errors.New("plugin offline")            // a command's plugin is not running
	ErrRefused       = errors.New("plugin binary not trusted") // see checkTrust
)

// manager runs the plugins of one directory: one slot per binary name,
// each with its own goroutine that starts, restarts and swaps the process.
type manager struct {
	dir       string
	socketDir string
	env       []string
	sums      map[string]string // allowed SHA-256 per file name
	hub       *hub
	log       *slog.Logger
	cmdTO     time.Duration

	mu           sync.Mutex
	slots        map[string]*slot
	dying        map[string]*slot  // removed, still stopping: a new slot of that name waits for it
	unusableSeen map[string]string // file version judged unusable once, by name (see consider)
	wg           sync.WaitGroup
	ctx          context.Context

	restarts atomic.Uint64
}

// slot is one plugin binary by name. Only its loop goroutine changes cur.
type slot struct {
	id, path string
	ident    string // file version last loaded; guarded by m.mu
	m        *manager
	log      *slog.Logger
	cur      atomic.Pointer[instance]
	swap     chan struct{} // the binary changed
	kick     chan struct{} // something it may depend on changed (the directory's mode): retry now if down
	remove   chan struct{} // the binary is gone
	stopped  chan struct{} // closed when loop returns
}

// instance is one running plugin process.
type instance struct {
	id       string
	client   *plugin.Client
	rpc      proto.PluginClient
	desc     *proto.Description
	types    map[string]proto.ValueType
	cmds     map[string]bool
	minEvery atomic.Int64 // shortest sensor interval (a time.Duration); 0 without sensors
	started  time.Time
	socket   string // its unix socket in the manager's socket dir, if any

	cancel   context.CancelFunc // ends the stream
	done     chan struct{}      // closed when the stream ended
	err      error              // why, once done is closed
	lastRead atomic.Int64       // unix nanos of the last reading

	mu       sync.Mutex
	inflight int
	draining bool
	idle     chan struct{} // closed when draining and inflight is 0
}

// validID reports whether id is lower_snake.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i, r := range id {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
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
	if !validID(name) || name == builtinPlugin {
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

// do runs command cmd of plugin id with validated JSON args.
func (m *manager) do(ctx context.Context, id, cmd, reqID string, args []byte) (json.RawMessage, error) {
	sl := m.slot(id)
	if sl == nil {
		return nil, ErrPluginOffline
	}
	for range 3 { // an instance being swapped out refuses new work; take the next
		inst := sl.cur.Load()
		if inst == nil {
			return nil, ErrPluginOffline
		}
		if !inst.acquire() {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		resp, err := inst.rpc.Do(ctx, &proto.CommandRequest{Id: reqID, Command: cmd, ArgsJson: args})
		inst.release()
		if err != nil {
			// The plugin's side of the deadline can fire a moment before
			// ours: its answer is then DeadlineExceeded with ctx still live.
			if ctx.Err() != nil || grpcstatus.Code(err) == codes.DeadlineExceeded {
				return nil, fmt.Errorf("plugin %s did not answer within %v", id, m.cmdTO)
			}
			return nil, fmt.Errorf("plugin %s: %w", id, err)
		}
		if resp.Error != "" {
			return nil, errors.New(resp.Error)
		}
		if len(resp.ValueJson) > 0 && !json.Valid(resp.ValueJson) {
			return nil, fmt.Errorf("plugin %s returned a result that is not JSON", id)
		}
		return resp.ValueJson, nil
	}
	return nil, ErrPluginOffline
}

func (in *instance) acquire() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.draining {
		return false
	}
	in.inflight++
	return true
}

func (in *instance) release() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.inflight--
	if in.draining && in.inflight == 0 {
		close(in.idle)
	}
}

// stop lets commands in flight finish (up to grace), then ends the
// stream and kills the process.
func (in *instance) stop(grace time.Duration) {
	in.mu.Lock()
	if !in.draining {
		in.draining = true
		if in.inflight == 0 {
			close(in.idle)
		}
	}
	in.mu.Unlock()
	select {
	case <-in.idle:
	case <-time.After(grace):
	}
	in.cancel()
	in.client.Kill()
	// A plugin that crashed or was killed leaves its socket behind.
	if in.socket != "" {
		os.Remove(in.socket)
	}
}

// loop owns the slot's process: start, watch, restart with backoff, swap.
func (sl *slot) loop(ctx context.Context) {
	m := sl.m
	backoff := time.Duration(0)
	unavailable := "" // the reason shown, while the plugin says it has nothing to serve
	retry := time.NewTimer(0)
	defer retry.Stop()
	watchdog := time.NewTicker(time.Second)
	defer watchdog.Stop()
	defer func() {
		if in := sl.cur.Swap(nil); in != nil {
			in.stop(m.cmdTO)
		}
	}()
	for {
		cur := sl.cur.Load()
		var done <-chan struct{}
		if cur != nil {
			done = cur.done
		}
		select {
		case <-ctx.Done():
			return

		case <-sl.remove:
			if in := sl.cur.Swap(nil); in != nil {
				in.stop(m.cmdTO)
			}
			sl.log.Info("plugin removed")
			m.hub.setPlugin(sl.id, nil, nil, nil, &wire.Status{Plugin: sl.id, State: wire.StateRemoved, Reason: "binary removed"})
			return

		case <-retry.C:
			if cur != nil {
				continue
			}
			in, err := sl.start(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, ErrRefused) {
					// No point retrying the same file: a change to it
					// (chmod, chown, a new binary) or to the directory
					// starts it again.
					sl.log.Error("plugin refused", "reason", err)
					m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateRefused, Reason: err.Error()})
					unavailable = ""
					continue
				}
				var un *unavailableError
				if errors.As(err, &un) {
					// Its own word: no restart loop. A new binary (swap),
					// the directory (kick) or, rarely, the timer tries again.
					backoff = 0
					if un.reason != unavailable {
						unavailable = un.reason
						sl.log.Info("plugin has nothing to serve here", "reason", un.reason, "retry_in", unavailableRetry)
						// Sensors a former run declared are gone, not stale.
						m.hub.setPlugin(sl.id, &wire.PluginInfo{ID: sl.id, State: wire.StateUnavailable, Reason: un.reason}, nil, nil,
							&wire.Status{Plugin: sl.id, State: wire.StateUnavailable, Reason: un.reason})
					} else {
						sl.log.Debug("plugin still has nothing to serve here", "reason", un.reason)
					}
					retry.Reset(unavailableRetry)
					continue
				}
				unavailable = ""
				m.restarts.Add(1)
				backoff = nextBackoff(backoff)
				sl.log.Error("plugin failed to start", "err", err, "retry_in", backoff)
				m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateRestarting, Reason: err.Error()})
				retry.Reset(backoff)
				continue
			}
			unavailable = ""
			sl.activate(in, wire.Status{Plugin: sl.id, State: wire.StateOnline, Version: in.desc.Version})

		case <-done:
			reason := "plugin exited"
			if cur.err != nil {
				reason = "plugin exited: " + cur.err.Error()
			}
			sl.crashed(cur, reason, &backoff, retry)

		case <-watchdog.C:
			if cur == nil || cur.minEvery.Load() == 0 {
				continue
			}
			limit := max(3*time.Duration(cur.minEvery.Load()), 5*time.Second)
			if quiet := time.Since(time.Unix(0, cur.lastRead.Load())); quiet > limit {
				sl.crashed(cur, fmt.Sprintf("plugin hung: no reading for %v", quiet.Round(time.Second)), &backoff, retry)
			}

		case <-sl.kick:
			if cur == nil {
				backoff = 0
				retry.Reset(0)
			}

		case <-sl.swap:
			if cur == nil {
				backoff = 0
				retry.Reset(0)
				continue
			}
			in, err := sl.start(ctx)
			if err != nil {
				sl.log.Error("new binary refused, old one keeps serving", "err", err)
				m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateSwapFailed, Reason: err.Error(), Version: cur.desc.Version})
				continue
			}
			sl.log.Info("plugin swapped", "old_version", cur.desc.Version, "new_version", in.desc.Version)
			sl.activate(in, wire.Status{Plugin: sl.id, State: wire.StateSwapped, Version: in.desc.Version, PreviousVersion: cur.desc.Version})
			go cur.stop(m.cmdTO)
		}
	}
}

// crashed handles a plugin process that died or hung: offline now,
// restarting after the backoff.
func (sl *slot) crashed(cur *instance, reason string, backoff *time.Duration, retry *time.Timer) {
	m := sl.m
	sl.cur.CompareAndSwap(cur, nil)
	go cur.stop(0)
	m.restarts.Add(1)
	if time.Since(cur.started) > backoffReset {
		*backoff = 0
	}
	*backoff = nextBackoff(*backoff)
	sl.log.Warn("plugin down, restarting", "reason", reason, "retry_in", *backoff)
	m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateOffline, Reason: reason, Version: cur.desc.Version})
	m.hub.setState(wire.Status{Plugin: sl.id, State: wire.StateRestarting, Reason: fmt.Sprintf("restart in %v", *backoff)})
	retry.Reset(*backoff)
}

func nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		return backoffMin
	}
	return min(2*b, backoffMax)
}

// activate makes in the slot's current instance, publishes its
// descriptors and starts its stream.
func (sl *slot) activate(in *instance, st wire.Status) {
	sensors, commands := describe(sl.id, in.desc)
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	in.lastRead.Store(time.Now().UnixNano())
	sl.cur.Store(in)
	sl.m.hub.setPlugin(sl.id, &wire.PluginInfo{ID: sl.id, State: st.State, Version: in.desc.Version}, sensors, commands, &st)
	go sl.stream(ctx, in)
}

// stream feeds in's readings to the hub until the stream ends.
func (sl *slot) stream(ctx context.Context, in *instance) {
	defer close(in.done)
	st, err := in.rpc.Stream(ctx, &proto.StreamRequest{})
	if err != nil {
		in.err = err
		return
	}
	warned := map[string]bool{}
	for {
		r, err := st.Recv()
		if err != nil {
			if ctx.Err() == nil {
				in.err = err
			}
			return
		}
		in.lastRead.Store(time.Now().UnixNano())
		if r.Changed {
			// Describe before reading on: the readings that follow may be
			// of the new sensors.
			if err := sl.redescribe(ctx, in); err != nil {
				if ctx.Err() == nil {
					in.err = err
				}
				return
			}
			continue
		}
		if sl.cur.Load() != in {
			continue // swapped out: the new instance feeds the sensors now
		}
		wr, err := toWire(sl.id, in, r)
		if err != nil && !warned[r.Sensor] {
			warned[r.Sensor] = true // once per sensor and process: a lying plugin must not flood the log
			sl.log.Warn("bad reading", "err", err)
		}
		if wr.Sensor != "" {
			sl.m.hub.publish(wr)
		}
	}
}

// redescribe reads the description of a dynamic plugin again after it
// said on its stream that it changed, and publishes the new descriptors
// as a swap would: sensors that are gone disappear from the pages, new
// ones appear, and no client is dropped. A description that fails the
// checks ends the stream (the plugin is restarted).
func (sl *slot) redescribe(ctx context.Context, in *instance) error {
	dctx, cancel := context.WithTimeout(ctx, describeTimeout)
	desc, err := in.rpc.Describe(dctx, &proto.DescribeRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("describe again: %w", err)
	}
	next := &instance{desc: desc, types: map[string]proto.ValueType{}, cmds: map[string]bool{}}
	if !desc.Dynamic {
		return errors.New("describe again: plugin said it changed but is not dynamic")
	}
	if err := next.check(); err != nil {
		return fmt.Errorf("describe again: %w", err)
	}
	// types is read only by this goroutine; desc by the slot's loop for
	// its Version, which a redescription keeps.
	in.types, in.cmds = next.types, next.cmds
	in.minEvery.Store(next.minEvery.Load())
	if sl.cur.Load() != in {
		return nil
	}
	sensors, commands := describe(sl.id, desc)
	sl.log.Info("plugin description changed", "sensors", len(sensors), "commands", len(commands))
	sl.m.hub.setPlugin(sl.id, &wire.PluginInfo{ID: sl.id, State: wire.StateOnline, Version: in.desc.Version}, sensors, commands, nil)
	return nil
}

// toWire checks a plugin's reading against its descriptor. A value of the
// wrong type becomes a reading with an error; an unknown sensor is dropped.
func toWire(pid string, in *instance, r *proto.Reading) (wire.Reading, error) {
	typ, ok := in.types[r.Sensor]
	if !ok {
		return wire.Reading{}, fmt.Errorf("reading for undeclared sensor %q dropped", r.Sensor)
	}
	w := wire.Reading{Sensor: pid + "." + r.Sensor, T: r.TMs, Error: r.Error}
	if w.T <= 0 {
		w.T = time.Now().UnixMilli()
	}
	var got proto.ValueType
	switch v := r.Value.(type) {
	case *proto.Reading_Number:
		got, w.Value = proto.ValueType_NUMBER, v.Number
		if math.IsNaN(v.Number) || math.IsInf(v.Number, 0) {
			w.Value, w.Error = nil, "value is not a finite number"
			return w, errors.New(w.Error)
		}
	case *proto.Reading_Text:
		got, w.Value = proto.ValueType_TEXT, v.Text
	case *proto.Reading_Flag:
		got, w.Value = proto.ValueType_BOOL, v.Flag
	default:
		if w.Error != "" {
			return w, nil
		}
		w.Error = "plugin sent no value"
		return w, errors.New(w.Error)
	}
	if got != typ && r.Error != "" {
		w.Value = nil // an error with a value of the wrong type: the error stands
		return w, nil
	}
	if got != typ {
		w.Value = nil
		w.Error = fmt.Sprintf("plugin sent a %s for a %s sensor", wireType(got), wireType(typ))
		return w, errors.New(w.Error)
	}
	return w, nil
}

// start runs the plugin binary and returns it ready: handshake done,
// descriptors read and checked.
func (sl *slot) start(ctx context.Context) (*instance, error) {
	m := sl.m
	if err := checkTrust(sl.path); err != nil {
		return nil, err
	}
	sum, pinned := m.sums[sl.id]
	if len(m.sums) > 0 && !pinned {
		return nil, fmt.Errorf("%w: %s is not in the plugin_sha256 allowlist", ErrRefused, sl.path)
	}
	cmd := exec.Command(sl.path)
	// go-plugin honours UnixSocketConfig.TempDir only with a RunnerFunc; the
	// plugin side reads this variable: sockets go in the private state dir.
	cmd.Env = append(m.env[:len(m.env):len(m.env)], plugin.EnvUnixSocketDir+"="+m.socketDir)
	cmd.Dir = m.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	tail := &stderrTail{}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  proto.Handshake,
		Plugins:          proto.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           newHCLog(sl.log),
		StartTimeout:     handshakeTimeout,
		Stderr:           tail,
	}
	if pinned {
		b, _ := hex.DecodeString(sum)
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: b, Hash: sha256.New()} // a fresh hash per start: it keeps state
	}
	c := plugin.NewClient(cfg)
	fail := func(err error) (*instance, error) {
		c.Kill()
		return nil, err
	}
	rpc, err := c.Client()
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		return fail(fmt.Errorf("%w: SHA-256 of %s does not match plugin_sha256 in the config", ErrRefused, sl.path))
	}
	if err != nil {
		// Kill waits for the process and for the rest of its stderr:
		// the plugin's own last word beats go-plugin's generic text.
		c.Kill()
		if why := exitedOnItsOwn(cmd, tail, "the handshake"); why != nil {
			return nil, why
		}
		err = fmt.Errorf("handshake: %s", firstLine(err))
		if line := tail.line(false); line != "" {
			err = fmt.Errorf("%w; its last stderr line: %s", err, line)
		}
		return nil, err
	}
	raw, err := rpc.Dispense(proto.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispense: %w", err))
	}
	pc, ok := raw.(proto.PluginClient)
	if !ok {
		return fail(fmt.Errorf("dispense: unexpected %T", raw))
	}
	dctx, cancel := context.WithTimeout(ctx, describeTimeout)
	desc, err := pc.Describe(dctx, &proto.DescribeRequest{})
	cancel()
	if err != nil {
		if c.Exited() {
			c.Kill()
			if why := exitedOnItsOwn(cmd, tail, "describe"); why != nil {
				return nil, why
			}
		}
		if dctx.Err() != nil {
			return fail(fmt.Errorf("describe: no answer within %v", describeTimeout))
		}
		return fail(fmt.Errorf("describe: %w", err))
	}
	in := &instance{
		id: sl.id, client: c, rpc: pc, desc: desc, started: time.Now(),
		types: map[string]proto.ValueType{}, cmds: map[string]bool{},
		done: make(chan struct{}), idle: make(chan struct{}), cancel: func() {},
	}
	if err := in.check(); err != nil {
		return fail(fmt.Errorf("describe: %w", err))
	}
	if rc := c.ReattachConfig(); rc != nil && rc.Addr != nil && rc.Addr.Network() == "unix" &&
		filepath.Dir(rc.Addr.String()) == filepath.Clean(m.socketDir) {
		in.socket = rc.Addr.String()
	}
	return in, nil
}

// check validates a plugin's self-description.
func (in *instance) check() error {
	d := in.desc
	if len(d.Sensors) == 0 && len(d.Commands) == 0 && !d.Dynamic {
		return errors.New("no sensors and no commands")
	}
	seen := map[string]bool{}
	for _, s := range d.Sensors {
		if !validID(s.Id) || seen[s.Id] {
			return fmt.Errorf("sensor id %q: want a unique lower_snake id", s.Id)
		}
		seen[s.Id] = true
		if wireType(s.Type) == "" {
			return fmt.Errorf("sensor %s: unknown value type %v", s.Id, s.Type)
		}
		if s.IntervalMs < 10 {
			return fmt.Errorf("sensor %s: interval_ms %d below 10", s.Id, s.IntervalMs)
		}
		in.types[s.Id] = s.Type
		if every := int64(time.Duration(s.IntervalMs) * time.Millisecond); in.minEvery.Load() == 0 || every < in.minEvery.Load() {
			in.minEvery.Store(every)
		}
	}
	for _, c := range d.Commands {
		if !validID(c.Id) || seen[c.Id] {
			return fmt.Errorf("command id %q: want a unique lower_snake id", c.Id)
		}
		seen[c.Id] = true
		args := map[string]bool{}
		for _, a := range c.Args {
			if a.Name == "" || args[a.Name] {
				return fmt.Errorf("command %s: argument names must be unique and not empty", c.Id)
			}
			args[a.Name] = true
			if wireType(a.Type) == "" {
				return fmt.Errorf("command %s: argument %s: unknown type %v", c.Id, a.Name, a.Type)
			}
			if a.Min != nil && a.Max != nil && *a.Min > *a.Max {
				return fmt.Errorf("command %s: argument %s: min above max", c.Id, a.Name)
			}
		}
		in.cmds[c.Id] = true
	}
	return nil
}

func wireType(t proto.ValueType) string {
	switch t {
	case proto.ValueType_NUMBER:
		return wire.ValueNumber
	case proto.ValueType_TEXT:
		return wire.ValueText
	case proto.ValueType_BOOL:
		return wire.ValueBool
	}
	return ""
}

// describe turns a plugin's descriptors into wire descriptors with global
// ids "<plugin>.<id>".
func describe(pid string, d *proto.Description) ([]wire.Sensor, []wire.Command) {
	var ss []wire.Sensor
	for _, s := range d.Sensors {
		ss = append(ss, wire.Sensor{
			ID: pid + "." + s.Id, Plugin: pid, Title: cmp(s.Title, s.Id), Unit: s.Unit,
			ValueType: wireType(s.Type), IntervalMS: s.IntervalMs,
		})
	}
	var cs []wire.Command
	for _, c := range d.Commands {
		wc := wire.Command{ID: pid + "." + c.Id, Plugin: pid, Title: cmp(c.Title, c.Id), Args: []wire.Arg{}}
		for _, a := range c.Args {
			wc.Args = append(wc.Args, wire.Arg{
				Name: a.Name, Title: a.Title, Type: wireType(a.Type), Required: a.Required, Min: a.Min, Max: a.Max, Enum: a.Enum,
			})
		}
		cs = append(cs, wc)
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].ID < ss[j].ID })
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	return ss, cs
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// checkTrust refuses a plugin binary that others could have replaced
// (control.CheckTrust).
func checkTrust(path string) error {
	err := control.CheckTrust(path)
	var te *control.TrustError
	if errors.As(err, &te) {
		err = fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return err
}
