package main

import (
	"math/bits"
	"time"
)

// hist is a log-linear histogram of durations in microseconds: exact below
// 64 µs, then 32 buckets per power of two (about 3 % wide). The zero value
// is empty; it is not safe for concurrent use (each client has its own and
// they are merged).
type hist struct {
	counts [2048]uint32
	n      uint64
	sum    float64 // µs
	max    int64   // µs
}

func bucket(us int64) int {
	if us < 64 {
		return int(max(us, 0))
	}
	msb := bits.Len64(uint64(us)) - 1
	return (msb-5)*32 + int(uint64(us)>>(msb-5))
}

// bucketMid is the middle of bucket i in µs.
func bucketMid(i int) float64 {
	if i < 64 {
		return float64(i)
	}
	shift := i/32 - 1
	m := i%32 + 32
	lo := float64(m << shift)
	return lo + float64(int64(1)<<shift)/2
}

func (h *hist) add(us int64) {
	if us < 0 {
		us = 0 // clocks are one; a negative latency is rounding
	}
	h.counts[bucket(us)]++
	h.n++
	h.sum += float64(us)
	h.max = max(h.max, us)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q ≤ 1) in µs; the maximum is exact.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return min(bucketMid(i), float64(h.max))
		}
	}
	return float64(h.max)
}

// Dist summarises a histogram in milliseconds.
type Dist struct {
	N    uint64  `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

func (h *hist) dist() Dist {
	if h.n == 0 {
		return Dist{}
	}
	ms := func(us float64) float64 { return us / 1000 }
	return Dist{
		N: h.n, Mean: ms(h.sum / float64(h.n)),
		P50: ms(h.quantile(0.5)), P90: ms(h.quantile(0.9)), P99: ms(h.quantile(0.99)), Max: ms(float64(h.max)),
	}
}

func (h *hist) addDuration(d time.Duration) { h.add(d.Microseconds()) }
