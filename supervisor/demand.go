package supervisor

import "sync"

// demand counts the consumers of readings: each attached browser now, and
// any other kind (a long-poll session, a bridge) the same way, with one
// hold and one release. Sampling follows it: plugins stream, and the
// supervisor publishes its own figures and pings clients, only while
// someone holds it; the idle timeout runs only while no one does.
//
// The zero value is not usable; a nil *demand ignores hold and release.
type demand struct {
	mu      sync.Mutex
	n       int
	changed chan struct{} // closed and replaced at each 0→1 and 1→0
}

func newDemand() *demand { return &demand{changed: make(chan struct{})} }

// hold adds a consumer. It never blocks on the listeners: safe under any
// lock.
func (d *demand) hold() { d.add(1) }

// release removes a consumer added by hold.
func (d *demand) release() { d.add(-1) }

func (d *demand) add(k int) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	was := d.n > 0
	d.n += k
	if d.n < 0 {
		panic("demand released more often than held")
	}
	if d.n > 0 != was {
		close(d.changed)
		d.changed = make(chan struct{})
	}
}

// Demand reports whether anyone consumes readings now, and a channel that
// is closed at the next change (0→1 or 1→0).
func (d *demand) Demand() (active bool, changed <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n > 0, d.changed
}
