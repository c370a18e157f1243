package supervisor

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

// settle is how long a plugin file must stay unchanged before it is
// (re)loaded: writers, cp and install produce bursts of events.
var settle = 300 * time.Millisecond

// watch loads every plugin in the directory, then follows it with fsnotify
// until ctx ends: a new or replaced binary is loaded (or swapped in), a
// removed one is stopped. Events are debounced per file name.
func (s *Supervisor) watch(ctx context.Context) error {
	m := s.plugins
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(m.dir); err != nil {
		s.log.Error("cannot watch plugins dir: hot-swap off", "dir", m.dir, "err", err)
		w.Close()
		w = nil
	}
	if err := m.scan(); err != nil {
		s.log.Error("no plugins", "err", err)
	}
	if w == nil {
		<-ctx.Done()
		return nil
	}
	d := debouncer{timers: map[string]*time.Timer{}, fire: m.consider}
	defer d.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) == filepath.Clean(m.dir) {
				// The directory itself (its mode, its owner): a plugin
				// refused for it may be trusted now.
				if ev.Has(fsnotify.Chmod) {
					m.kickAll()
				}
				continue
			}
			name := filepath.Base(ev.Name)
			if filepath.Dir(ev.Name) != filepath.Clean(m.dir) || !candidate(name) {
				continue
			}
			d.touch(name)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				s.log.Warn("plugins dir events overflowed: rescanning")
				m.rescan()
				continue
			}
			s.log.Error("watch plugins dir", "err", err)
		}
	}
}

// consider acts on a plugin file as it is now: a missing file stops its
// plugin, an incomplete or non-executable one is left alone (the old
// process, if any, keeps serving), a changed binary is loaded or swapped in.
func (m *manager) consider(name string) {
	if !candidate(name) {
		return
	}
	path := filepath.Join(m.dir, name)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		m.unload(name)
		return
	}
	if err != nil {
		m.log.Warn("plugin file unreadable", "file", name, "err", err)
		return
	}
	if err := usableBinary(path, fi); err != nil {
		m.log.Info("plugin file not loaded", "file", name, "reason", err)
		m.unusable(name, identify(fi), err)
		return
	}
	m.load(name, identify(fi))
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
func (m *manager) rescan() {
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
	m.scan()
}

// scan considers every file in the directory.
func (m *manager) scan() error {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("read plugins dir: %w", err)
	}
	for _, e := range ents {
		m.consider(e.Name())
	}
	return nil
}

// debouncer calls fire(name) once a name has had no touch for settle.
type debouncer struct {
	mu     sync.Mutex
	timers map[string]*time.Timer
	fire   func(string)
}

func (d *debouncer) touch(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t := d.timers[name]; t != nil {
		t.Reset(settle)
		return
	}
	d.timers[name] = time.AfterFunc(settle, func() {
		d.mu.Lock()
		delete(d.timers, name)
		d.mu.Unlock()
		d.fire(name)
	})
}

func (d *debouncer) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range d.timers {
		t.Stop()
	}
}
