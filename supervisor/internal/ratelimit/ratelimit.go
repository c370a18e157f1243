// Package ratelimit is the token bucket a client's messages go through,
// whatever carries them (a WebSocket, a long poll, the broker): rate
// messages a second with bursts of burst, a large frame costing more, and
// a client that keeps sending over its rate told apart from a burst.
package ratelimit

import "time"

// FloodGrace is how long a client may keep sending over its rate limit
// (frames dropped with no pause of a second) before it is closed with
// wire.CloseRateLimits. A burst that calms down is only dropped from.
const FloodGrace = 3 * time.Second

// FrameCost is the frame size that costs one more message in the limiter:
// the rate limits bytes too (rate × FrameCost per second), so large frames
// cannot flood at the message rate.
const FrameCost = 4 << 10

// Limiter is a token bucket for one client's messages. The zero value
// lets nothing through until Set; it is not safe for concurrent use.
type Limiter struct {
	rate, burst, tokens float64
	last                time.Time
	overSince, lastDrop time.Time // the current run of dropped frames
}

// Set makes the bucket rate messages a second with bursts of burst (the
// configuration's rate and burst, which a reload may change).
func (l *Limiter) Set(rate float64, burst int) {
	l.rate, l.burst = rate, float64(burst)
}

// Rate is the rate Set gave, in messages a second.
func (l *Limiter) Rate() float64 { return l.rate }

// Allow reports whether a frame arriving now may be read; Charge then
// takes its cost.
func (l *Limiter) Allow(now time.Time) bool {
	if l.last.IsZero() {
		l.tokens = l.burst
	} else {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	return l.tokens >= 1
}

// Charge takes the cost of a frame of n bytes: one message, and one more
// per FrameCost bytes (the bucket may go below zero).
func (l *Limiter) Charge(n int) {
	l.tokens -= 1 + float64(n/FrameCost)
}

// Drop counts a frame dropped now and reports whether the client has been
// over its rate for FloodGrace.
func (l *Limiter) Drop(now time.Time) (flooding bool) {
	if now.Sub(l.lastDrop) > time.Second {
		l.overSince = now
	}
	l.lastDrop = now
	return now.Sub(l.overSince) >= FloodGrace
}
