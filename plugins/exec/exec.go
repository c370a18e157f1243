package exec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/livecgi/livecgi/plugins/sdk"
	"github.com/livecgi/livecgi/proto/trust"
)

// How the directory is followed: events are debounced, and the directory
// and the programs the confs name are polled (fsnotify does not see a
// program replaced in another directory, nor a directory that does not
// exist yet).
var (
	debounce  = 300 * time.Millisecond
	pollEvery = 2 * time.Second
)

// plugin follows the exec dir: one program per NAME.conf. Only the
// watch goroutine (and newPlugin, before it starts) calls scan; mu
// guards progs for close.
type plugin struct {
	dir     string
	log     *slog.Logger
	x       *runner
	changes chan sdk.Plugin // capacity 1: the newest definition wins
	retyped chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	mu    sync.Mutex
	progs map[string]*loaded // by NAME
}

// loaded is one conf as last read: what it was read from (ident) and
// its program.
type loaded struct {
	ident string
	prog  *program
	err   error // the conf itself is unusable: a placeholder sensor says why
}

// newPlugin reads the confs in dir and follows the directory until the
// plugin's Close. A missing dir is fine: it is used once it appears.
func newPlugin(dir, version string, log *slog.Logger) sdk.Plugin {
	p := start(dir, log)
	def := p.definition()
	return sdk.Plugin{Name: "exec", Version: version, Sensors: def.Sensors, Commands: def.Commands, Changes: p.changes, Close: p.close}
}

// start loads the confs in dir and starts following it.
func start(dir string, log *slog.Logger) *plugin {
	ctx, cancel := context.WithCancel(context.Background())
	p := &plugin{
		dir: dir, log: log, x: newRunner(dir), changes: make(chan sdk.Plugin, 1), retyped: make(chan struct{}, 1),
		cancel: cancel, done: make(chan struct{}), progs: map[string]*loaded{},
	}
	p.scan()
	go p.watch(ctx)
	return p
}

// close stops every program and kills whatever is left of them.
func (p *plugin) close() {
	p.cancel()
	<-p.done
	p.x.killAll()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.progs {
		if l.prog != nil {
			l.prog.stop()
		}
	}
}

// watch rescans the directory after fsnotify events (debounced), on an
// overflow, every pollEvery and when a sensor's type was learnt, and
// publishes the new definition when something changed.
func (p *plugin) watch(ctx context.Context) {
	defer close(p.done)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		p.log.Warn("cannot watch the exec dir, polling it", "dir", p.dir, "err", err)
	} else {
		defer w.Close()
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	watching := false
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	for {
		if w != nil && !watching {
			if err := w.Add(p.dir); err == nil {
				watching, events, errs = true, w.Events, w.Errors
			}
		}
		rescan := false
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if ev.Name == p.dir && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
				watching = false
			}
			settle.Reset(debounce)
		case err := <-errs:
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				rescan = true
			} else {
				p.log.Warn("watching the exec dir", "err", err)
			}
		case <-settle.C:
			rescan = true
		case <-poll.C:
			rescan = true
		case <-p.retyped:
			p.publish()
		}
		if rescan && p.scan() {
			p.publish()
		}
	}
}

// publish hands the current definition to the SDK, replacing one it has
// not taken yet.
func (p *plugin) publish() {
	select {
	case <-p.changes:
	default:
	}
	p.changes <- p.definition()
}

// definition is the sensors and commands of every conf, sorted by conf
// name. An id already taken by an earlier conf is logged and left out.
func (p *plugin) definition() sdk.Plugin {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := make([]string, 0, len(p.progs))
	for n := range p.progs {
		names = append(names, n)
	}
	slices.Sort(names)
	var def sdk.Plugin
	taken := map[string]string{}
	take := func(id, name string) bool {
		if other, ok := taken[id]; ok {
			p.log.Error("id already used", "id", id, "conf", name+".conf", "used_by", other+".conf")
			return false
		}
		taken[id] = name
		return true
	}
	for _, n := range names {
		l := p.progs[n]
		if l.err != nil {
			if take(n, n) {
				def.Sensors = append(def.Sensors, brokenSensor(n, l.err))
			}
			continue
		}
		if c := l.prog.spec.command; c != nil {
			if take(c.id, n) {
				def.Commands = append(def.Commands, l.prog.command())
			}
			continue
		}
		ss := l.prog.sensors()
		ok := true
		for _, s := range ss {
			ok = ok && take(s.ID, n)
		}
		if ok {
			def.Sensors = append(def.Sensors, ss...)
		}
	}
	return def
}

// brokenSensor stands for a conf that cannot be used: sensor NAME, whose
// only reading is the reason.
func brokenSensor(name string, err error) sdk.Sensor {
	return sdk.Sensor{
		ID: name, Title: name + ".conf", Type: sdk.Text, Interval: streamStaleAfter,
		Watch: func(ctx context.Context, send func(sdk.Reading, error)) {
			send(sdk.Reading{}, err)
			<-ctx.Done()
		},
	}
}

// scan reads the directory and (re)loads every conf that is new or whose
// file, program or directory changed, and unloads the confs that are
// gone. It reports whether anything changed.
func (p *plugin) scan() bool {
	entries, err := os.ReadDir(p.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.log.Warn("read exec dir", "dir", p.dir, "err", err)
	}
	dirIdent := trustIdent(p.dir)
	want := map[string]bool{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".conf")
		if !ok || name == "" || name[0] == '.' || e.IsDir() {
			continue
		}
		want[name] = true
	}
	changed := false
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, l := range p.progs {
		if !want[name] {
			p.log.Info("conf removed", "conf", name+".conf")
			if l.prog != nil {
				l.prog.stop()
			}
			delete(p.progs, name)
			changed = true
		}
	}
	for name := range want {
		old := p.progs[name]
		confPath := filepath.Join(p.dir, name+".conf")
		ident := dirIdent + "|" + statIdent(confPath)
		if old != nil && old.prog != nil {
			ident += "|" + statIdent(old.prog.spec.argv[0])
		}
		if old != nil && old.ident == ident {
			continue
		}
		l := p.load(name, confPath)
		if l.prog != nil {
			l.ident = dirIdent + "|" + statIdent(confPath) + "|" + statIdent(l.prog.spec.argv[0])
		} else {
			l.ident = ident
		}
		if old != nil && old.ident == l.ident {
			continue // read between two changes: the next scan sees it
		}
		if old != nil && old.prog != nil {
			old.prog.stop()
		}
		if l.prog != nil {
			l.prog.start()
		}
		p.progs[name] = l
		changed = true
	}
	return changed
}

// load reads and checks one conf and its program.
func (p *plugin) load(name, confPath string) *loaded {
	log := p.log.With("conf", name+".conf")
	fail := func(err error) *loaded {
		log.Error("conf not loaded", "err", err)
		return &loaded{err: err}
	}
	if !validKey(name) {
		return fail(fmt.Errorf("%s.conf: the file name must be lower_snake (it names the sensor)", name))
	}
	if err := trust.Check(confPath, trust.Options{}); err != nil {
		return fail(fmt.Errorf("%s.conf refused: %w", name, err))
	}
	b, err := os.ReadFile(confPath)
	if err != nil {
		return fail(err)
	}
	s, err := parseConf(p.dir, name, b)
	if err != nil {
		return fail(err)
	}
	prog := s.argv[0]
	var broken error
	fi, err := os.Stat(prog)
	switch {
	case err != nil:
		broken = fmt.Errorf("program %s: %w", prog, unwrapExec(err))
	case !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0:
		broken = fmt.Errorf("program %s is not an executable file (mode %v)", prog, fi.Mode())
	default:
		if err := trust.Check(prog, trust.Options{}); err != nil {
			broken = fmt.Errorf("program refused: %w", err)
		}
	}
	if broken != nil {
		log.Error("program not usable", "err", broken)
	} else {
		log.Info("conf loaded", "run", strings.Join(s.argv, " "))
	}
	return &loaded{prog: newProgram(s, p.x, log, broken, p.retype)}
}

// retype asks the watch goroutine to publish the definition again.
func (p *plugin) retype() {
	select {
	case p.retyped <- struct{}{}:
	default:
	}
}

// trustIdent is what trust.Check looks at in a directory: its mode and
// owner (not its time, which every file added changes).
func trustIdent(dir string) string {
	fi, err := os.Stat(dir)
	if err != nil {
		return "missing"
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st == nil {
		return fi.Mode().String()
	}
	return fmt.Sprint(st.Mode, st.Uid)
}

// statIdent identifies a file's version: replaced, rewritten, chmod'ed
// or chown'ed, it differs.
func statIdent(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st == nil {
		return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
	}
	return fmt.Sprint(st.Dev, st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano(), st.Mode, st.Uid)
}
