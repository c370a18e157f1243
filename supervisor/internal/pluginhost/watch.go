package pluginhost

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch loads every plugin in the directory, then follows it with fsnotify
// until ctx ends: a new or replaced binary is loaded (or swapped in), a
// removed one is stopped. Events are debounced per file name. A plugins
// directory that does not exist (yet), or goes away, is waited for: its
// nearest existing ancestor is watched for its creation, and the watch is
// retried with backoff.
func (m *Host) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	d := &debouncer{timers: map[string]*debounce{}, fire: m.consider, settle: m.timing.Settle, drained: m.start.changed}
	defer d.stop()
	dir := filepath.Clean(m.dir)
	m.links = &links{add: w.Add, targets: map[string]string{}, dirs: map[string]bool{}}

	up := false    // dir itself is watched
	ancestor := "" // the ancestor watched while dir is not
	lastErr := ""  // the last failure to watch dir, logged once
	backoff := time.Duration(0)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	arm := func() {
		for {
			err := w.Add(dir)
			if err == nil {
				up, backoff, lastErr = true, 0, ""
				retry.Stop()
				if ancestor != "" {
					w.Remove(ancestor)
					ancestor = ""
					m.log.Info("plugins dir watched: hot-swap on", "dir", dir)
				}
				if err := m.scan(d); err != nil {
					m.log.Error("no plugins", "err", err)
				}
				return
			}
			if err.Error() != lastErr {
				lastErr = err.Error()
				m.log.Error("cannot watch plugins dir: hot-swap waits for it", "dir", dir, "err", err)
				// What is there runs; what is gone stops.
				m.rescan(d)
			}
			a := existingAncestor(dir)
			if a == ancestor {
				break
			}
			if ancestor != "" {
				w.Remove(ancestor)
				ancestor = ""
			}
			if a == "" || w.Add(a) != nil {
				break
			}
			ancestor = a
			// Look again: the directory may have appeared before this watch.
		}
		backoff = min(max(2*backoff, m.timing.DirRetryMin), m.timing.DirRetryMax)
		retry.Reset(backoff)
	}
	arm()
	m.start.scanned(d)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C:
			if !up {
				arm()
			}
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !up {
				// Something changed on the way to the directory: it (or
				// a directory above it) may be there now.
				arm()
				continue
			}
			if filepath.Clean(ev.Name) == dir {
				switch {
				case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
					// Gone or moved away: its plugins stop; wait for it.
					up = false
					w.Remove(dir)
					arm()
				case ev.Has(fsnotify.Chmod):
					// Its mode or owner: a plugin refused for it may be
					// trusted now.
					m.kickAll()
				}
				continue
			}
			name := filepath.Base(ev.Name)
			if filepath.Dir(ev.Name) != dir {
				// A link's target replaced in its own directory.
				for _, n := range m.links.linking(filepath.Clean(ev.Name)) {
					d.touch(n)
				}
				continue
			}
			if candidate(name) {
				d.touch(name)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				m.log.Warn("plugins dir events overflowed: rescanning")
				m.rescan(d)
				continue
			}
			m.log.Error("watch plugins dir", "err", err)
		}
	}
}

// existingAncestor returns the nearest directory above dir that exists, or "".
func existingAncestor(dir string) string {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
		if filepath.Dir(p) == p {
			return ""
		}
	}
}

// consider acts on a plugin file as it is now: a missing file stops its
// plugin, a changed binary is loaded or swapped in. A file is judged only
// once quiet: one changed within settle (by its ctime, which any write,
// chmod or chown moves) is looked at again later. An unusable file
// (incomplete, not executable) is left alone, the old process, if any,
// serving on; clients are told only if it stays unusable and unchanged for
// patience. consider returns when to look at the file again, or 0.
func (m *Host) consider(name string) time.Duration {
	if !candidate(name) {
		return 0
	}
	path := filepath.Join(m.dir, name)
	m.links.note(name, path)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		m.judged(name, "")
		m.unload(name)
		return 0
	}
	if err != nil {
		m.log.Warn("plugin file unreadable", "file", name, "err", err)
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if age := time.Since(time.Unix(st.Ctim.Unix())); age >= 0 && age < m.timing.Settle {
			return m.timing.Settle - age
		}
	}
	ident := identify(fi)
	if err := usableBinary(path, fi); err != nil {
		if m.judged(name, ident+"/"+ctime(fi)) {
			m.unusable(name, ident, err)
			return 0
		}
		m.log.Info("plugin file not loaded", "file", name, "reason", err, "judged_again_in", m.timing.Patience)
		return m.timing.Patience
	}
	m.judged(name, "")
	m.load(name, ident)
	return 0
}

// judged records that the version v of file name was found unusable and
// reports whether it was already, last time: then it has stayed so for
// patience. An empty v forgets name.
func (m *Host) judged(name, v string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v == "" || m.unusableSeen[name] == v {
		delete(m.unusableSeen, name)
		return v != ""
	}
	if m.unusableSeen == nil {
		m.unusableSeen = map[string]string{}
	}
	m.unusableSeen[name] = v
	return false
}

func ctime(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d.%09d", st.Ctim.Sec, st.Ctim.Nsec)
	}
	return ""
}

// identify names one version of a file: a replaced or rewritten binary
// changes inode, size or modification time; chmod and chown change mode
// or owner, which decide whether it may run at all.
func identify(fi os.FileInfo) string {
	var ino uint64
	var uid uint32
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino, uid = st.Ino, st.Uid
	}
	return fmt.Sprintf("%d/%d/%d/%o/%d", ino, fi.Size(), fi.ModTime().UnixNano(), fi.Mode(), uid)
}

// usableBinary reports why path is not a complete executable ELF file.
func usableBinary(path string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not executable")
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("not a complete ELF binary: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF file of type %v, not an executable", f.Type)
	}
	// A half-written file often has a valid header; its segments and
	// sections reach past the end.
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Off+p.Filesz > uint64(fi.Size()) {
			return errors.New("truncated ELF binary")
		}
	}
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_NOBITS && sec.Offset+sec.FileSize > uint64(fi.Size()) {
			return errors.New("truncated ELF binary")
		}
	}
	return nil
}

// rescan loads every plugin file and unloads slots whose file is gone.
func (m *Host) rescan(d *debouncer) {
	m.mu.Lock()
	names := make([]string, 0, len(m.slots))
	for n := range m.slots {
		names = append(names, n)
	}
	m.mu.Unlock()
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(m.dir, n)); errors.Is(err, os.ErrNotExist) {
			m.unload(n)
		}
	}
	m.scan(d)
}

// scan considers every file in the directory; d looks again at those
// that are not quiet or not usable yet.
func (m *Host) scan(d *debouncer) error {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("read plugins dir: %w", err)
	}
	for _, e := range ents {
		if again := m.consider(e.Name()); again > 0 {
			d.after(e.Name(), again)
		}
	}
	return nil
}

// debouncer calls fire(name) once a name has had no touch for settle, and
// again after the delay fire returns, if any, until it returns 0.
type debouncer struct {
	fire    func(string) time.Duration
	settle  time.Duration
	drained func() // called when a name's last fire has run; may be nil

	mu      sync.Mutex
	timers  map[string]*debounce
	stopped bool
}

// debounce is one name's timer; gen counts its re-arms, so a fire that
// overlapped a touch leaves the timer to that touch.
type debounce struct {
	t   *time.Timer
	gen int
}

// touch: name changed; judge it once it has been quiet for settle.
func (d *debouncer) touch(name string) { d.after(name, d.settle) }

// after (re)arms name's timer to fire in dur.
func (d *debouncer) after(name string, dur time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	if e := d.timers[name]; e != nil {
		e.gen++
		e.t.Reset(dur)
		return
	}
	e := &debounce{}
	d.timers[name] = e
	e.t = time.AfterFunc(dur, func() { d.run(name, e) })
}

func (d *debouncer) run(name string, e *debounce) {
	d.mu.Lock()
	gen := e.gen
	d.mu.Unlock()
	again := d.fire(name)
	d.mu.Lock()
	if e.gen != gen || d.stopped {
		d.mu.Unlock()
		return // touched meanwhile: armed again
	}
	if again > 0 {
		e.t.Reset(again)
		d.mu.Unlock()
		return
	}
	delete(d.timers, name)
	d.mu.Unlock()
	if d.drained != nil { // not under mu: no lock order with the callee's
		d.drained()
	}
}

// pending returns how many names wait for a fire.
func (d *debouncer) pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.timers)
}

// startup follows the plugins directory's first look, for a consumer
// that must not publish the plugins' descriptions before they are there
// (the broker bridge's retained $meta: see Host.Described). The zero
// value is ready to use; its methods may be called concurrently.
type startup struct {
	mu   sync.Mutex
	deb  *debouncer    // set once the first scan is done
	wake chan struct{} // closed and replaced at each change
}

// scanned records that the first scan is done; d judges the files it
// put off.
func (st *startup) scanned(d *debouncer) {
	st.mu.Lock()
	st.deb = d
	st.mu.Unlock()
	st.changed()
}

// changed wakes whoever waits on state's channel.
func (st *startup) changed() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.wake != nil {
		close(st.wake)
		st.wake = nil
	}
}

// state returns the debouncer of the first scan (nil before it is done)
// and a channel closed at the next change.
func (st *startup) state() (*debouncer, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.wake == nil {
		st.wake = make(chan struct{})
	}
	return st.deb, st.wake
}

// Described reports whether the plugins livecgid started with have
// described themselves: the first scan of the directory is done, no file
// is still put off (being written, not executable yet), and every plugin
// loaded has published a state (online with its descriptors, or
// refused, unavailable, restarting: each at its first start; see
// slot.said), after which the publisher holds it. The channel is closed
// when that may have changed.
func (m *Host) Described() (bool, <-chan struct{}) {
	d, wake := m.start.state()
	if d == nil || d.pending() > 0 {
		return false, wake
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sl := range m.slots {
		if !sl.spoke.Load() {
			return false, wake
		}
	}
	return true, wake
}

func (d *debouncer) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	for _, e := range d.timers {
		e.t.Stop()
	}
}

// links follows the targets of plugin files that are symlinks: the
// built-in plugins are links to livecgid, outside the plugins dir. A
// target replaced in its own directory (a new livecgid installed by
// rename) is a change of every plugin that links to it, so those
// directories are watched too.
type links struct {
	add func(dir string) error // watch a directory

	mu      sync.Mutex
	targets map[string]string // plugin name → the file its link leads to
	dirs    map[string]bool   // target directories watched
}

// note records where the plugin file path (called name) leads, if it is
// a link, and watches that directory.
func (l *links) note(name, path string) {
	if l == nil {
		return
	}
	target := ""
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			target = real
		} else if t, err := os.Readlink(path); err == nil { // dangling: the name it gives
			if !filepath.IsAbs(t) {
				t = filepath.Join(filepath.Dir(path), t)
			}
			target = filepath.Clean(t)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if target == "" {
		delete(l.targets, name)
		return
	}
	l.targets[name] = target
	if d := filepath.Dir(target); !l.dirs[d] && l.add(d) == nil {
		l.dirs[d] = true
	}
}

// linking returns the plugins whose link leads to path.
func (l *links) linking(path string) []string {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var names []string
	for n, t := range l.targets {
		if t == path {
			names = append(names, n)
		}
	}
	return names
}
