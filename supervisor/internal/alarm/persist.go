package alarm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// StateFile is the name of the saved alarm states in livecgid's state
// directory; LogFile that of the transition log.
const (
	StateFile = "alarms.json"
	LogFile   = "alarms.log"
)

// saved is the form of Save: the version, for a later change of it.
type saved struct {
	Version int          `json:"version"`
	Alarms  []savedAlarm `json:"alarms"`
}

type savedAlarm struct {
	State
	Raised bool `json:"raised,omitempty"` // under a stale state: it was raised
}

// Save writes the state of every alarm as JSON, for Load after a restart.
func (e *Engine) Save(w io.Writer) error {
	e.mu.Lock()
	s := saved{Version: 1, Alarms: make([]savedAlarm, len(e.alarms))}
	for i, a := range e.alarms {
		s.Alarms[i] = savedAlarm{State: a.cur, Raised: a.raised}
	}
	e.mu.Unlock()
	return json.NewEncoder(w).Encode(s)
}

// Load restores the states Save wrote, before the first Observe: an
// alarm that was raised or stale stays so, with its since and message,
// until a fresh reading (or its sensor's silence) re-evaluates it, and
// no transition is reported for it. Alarms the rules no longer have, or
// now watch another sensor, are dropped.
func (e *Engine) Load(r io.Reader) error {
	var s saved
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return fmt.Errorf("load alarm states: %w", err)
	}
	if s.Version != 1 {
		return fmt.Errorf("load alarm states: version %d, want 1", s.Version)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, sa := range s.Alarms {
		a := e.byName[sa.Name]
		switch {
		case a == nil || a.rule.Sensor != sa.Sensor:
			continue
		case sa.State.State == Warning || sa.State.State == Critical:
			a.raised = true
		case sa.State.State == Stale:
			a.raised = sa.Raised
		case sa.State.State != OK:
			continue
		}
		a.cur = sa.State
	}
	return nil
}

// SaveFile saves to path (mode 0600), replacing it at once: a crash
// leaves the old file or the new one, never half of one.
func (e *Engine) SaveFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("save alarm states: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails once renamed
	err = e.Save(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save alarm states: %w", err)
	}
	return nil
}

// LoadFile loads from path; a missing file is no error (a first start).
func (e *Engine) LoadFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load alarm states: %w", err)
	}
	defer f.Close()
	return e.Load(f)
}
