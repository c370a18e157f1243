package ratelimit

import (
	"testing"
	"time"
)

// TestLimiter: a burst goes through whole, then the rate; a large frame
// costs one message more per FrameCost bytes; a client dropped from for
// FloodGrace without a pause of a second is flooding, one that pauses is
// not.
func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var z Limiter
	if z.Allow(t0) {
		t.Fatal("the zero Limiter let a frame through")
	}
	var l Limiter
	l.Set(2, 3)
	for i := range 3 {
		if !l.Allow(t0) {
			t.Fatalf("frame %d of the burst refused", i)
		}
		l.Charge(10)
	}
	if l.Allow(t0) {
		t.Fatal("a frame past the burst let through")
	}
	if !l.Allow(t0.Add(500 * time.Millisecond)) { // 2 a second: one more
		t.Fatal("a frame at the rate refused")
	}
	l.Charge(2 * FrameCost) // three messages' worth
	if l.Allow(t0.Add(1500 * time.Millisecond)) {
		t.Fatal("a large frame cost one message only")
	}
	if l.Rate() != 2 {
		t.Fatalf("Rate() = %v", l.Rate())
	}

	var f Limiter
	now := t0
	for ; now.Sub(t0) < FloodGrace; now = now.Add(500 * time.Millisecond) {
		if f.Drop(now) {
			t.Fatalf("flooding after %v", now.Sub(t0))
		}
	}
	if !f.Drop(now) {
		t.Fatalf("not flooding after %v of drops", now.Sub(t0))
	}
	if f.Drop(now.Add(1100 * time.Millisecond)) {
		t.Fatal("flooding after a pause of over a second")
	}
}
