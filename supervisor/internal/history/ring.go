package history

import (
	"math"
	"sort"
)

// rawRing keeps the samples of one sensor in the hour before its newest
// one, as many as fit, oldest overwritten first. A slot is 8 bytes: the
// time as a uint32 count of milliseconds after base (49.7 days of range:
// base moves up when it runs out) and the value as a float32.
type rawRing struct {
	base int64 // ms since the Unix epoch that off counts from
	off  []uint32
	val  []float32
	head int // slot of the next sample
	n    int // samples held, ≤ len(off)
}

func newRawRing(slots int) rawRing {
	return rawRing{off: make([]uint32, slots), val: make([]float32, slots)}
}

// slot returns the index in off/val of the i-th oldest sample.
func (r *rawRing) slot(i int) int {
	j := r.head - r.n + i
	if j < 0 {
		j += len(r.off)
	}
	return j
}

// at returns the i-th oldest sample.
func (r *rawRing) at(i int) (ms int64, v float32) {
	j := r.slot(i)
	return r.base + int64(r.off[j]), r.val[j]
}

// push appends a sample no older than the newest one held, forgetting
// those more than RawSpan older.
func (r *rawRing) push(ms int64, v float32) {
	for r.n > 0 {
		if t, _ := r.at(0); t >= ms-spanMs {
			break
		}
		r.n--
	}
	if r.n == 0 {
		r.base = ms
	} else if ms-r.base > math.MaxUint32 { // every sample is within an hour of ms
		first, _ := r.at(0)
		for i := range r.n {
			r.off[r.slot(i)] -= uint32(first - r.base)
		}
		r.base = first
	}
	r.off[r.head], r.val[r.head] = uint32(ms-r.base), v
	if r.head++; r.head == len(r.off) {
		r.head = 0
	}
	if r.n < len(r.off) {
		r.n++
	}
}

// search returns the index of the oldest sample at or after ms.
func (r *rawRing) search(ms int64) int {
	return sort.Search(r.n, func(i int) bool { t, _ := r.at(i); return t >= ms })
}

// copyTo pushes the newest samples that fit into d, oldest first.
func (r *rawRing) copyTo(d *rawRing) {
	for i := max(0, r.n-len(d.off)); i < r.n; i++ {
		d.push(r.at(i))
	}
}

// tier keeps min/avg/max/count per bucket of width ms for the newest
// len(cnt) buckets. Bucket k covers [k*width, (k+1)*width) and lives in slot
// k mod len(cnt); its time is implicit, so a slot is 14 bytes. The newest
// bucket (last) is also kept in float64 (lo, hi, sum, n), so its average does
// not drift as samples are added, and is written through to its slot on
// every sample: the slots are always current.
type tier struct {
	width         int64 // bucket width, ms
	last          int64 // bucket number of the newest slot
	min, avg, max []float32
	cnt           []uint16 // samples in the bucket, saturating; 0: empty

	end         int64   // (last+1)*width: a sample before it needs no division
	cur         int     // slot(last)
	lo, hi, sum float64 // bucket last, in full precision
	n           uint32
}

func newTier(width int64, slots int) tier {
	r := tier{width: width, min: make([]float32, slots), avg: make([]float32, slots),
		max: make([]float32, slots), cnt: make([]uint16, slots)}
	r.reset()
	return r
}

func (r *tier) reset() {
	clear(r.cnt)
	r.last = 0
	r.advance(0)
}

func (r *tier) slot(k int64) int {
	s := k % int64(len(r.cnt))
	if s < 0 {
		s += int64(len(r.cnt))
	}
	return int(s)
}

// start is the time of the oldest bucket the tier can hold (empty or not).
func (r *tier) start() int64 { return (r.last - int64(len(r.cnt)) + 1) * r.width }

// advance makes k the newest bucket, emptying the slots it skips.
func (r *tier) advance(k int64) {
	if d := k - r.last; d < 0 || d >= int64(len(r.cnt)) {
		clear(r.cnt)
	} else {
		for j := r.last + 1; j <= k; j++ {
			r.cnt[r.slot(j)] = 0
		}
	}
	r.last, r.end, r.cur, r.n, r.sum = k, (k+1)*r.width, r.slot(k), 0, 0
}

// add counts a sample at ms in its bucket; samples in buckets older than
// the newest one are ignored.
func (r *tier) add(ms int64, v float64) {
	if ms >= r.end {
		r.advance(floorDiv(ms, r.width))
	} else if ms < r.end-r.width {
		return
	}
	if r.n == 0 {
		r.lo, r.hi = v, v
	}
	r.lo, r.hi, r.sum = min(r.lo, v), max(r.hi, v), r.sum+v
	r.n++
	s := r.cur
	r.min[s], r.max[s], r.avg[s] = float32(r.lo), float32(r.hi), float32(r.sum/float64(r.n))
	r.cnt[s] = uint16(min(r.n, math.MaxUint16))
}

// set fills bucket k, at or before last, from stored values (Load).
func (r *tier) set(k int64, lo, avg, hi float32, n uint16) {
	if k <= r.last-int64(len(r.cnt)) || k > r.last {
		return
	}
	s := r.slot(k)
	r.min[s], r.avg[s], r.max[s], r.cnt[s] = lo, avg, hi, n
	if k == r.last {
		r.lo, r.hi, r.sum, r.n = float64(lo), float64(hi), float64(avg)*float64(n), uint32(n)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// alignUp rounds ms up to a multiple of w.
func alignUp(ms, w int64) int64 { return -floorDiv(-ms, w) * w }
