package history

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/livecgi/livecgi/proto/wire"
)

// Point summarises the samples of one interval: the wire protocol's
// [t, min, avg, max], values with float32's shortest form (the precision
// they are stored with).
type Point = wire.Point

// msRange bounds query times so that to+1 and widths cannot overflow.
const msRange = 1 << 60

func clampMs(t time.Time) int64 { return min(max(t.UnixMilli(), -msRange), msRange) }

// Query returns the history of sensor over [from, to] as at most points
// points (every stored one if points ≤ 0), oldest first.
//
// Each part of the range comes from the finest tier that still holds it:
// raw samples for the last hour, minute buckets before that, 15-minute
// buckets for the rest of the month, with each cut on a boundary of the
// coarser tier so that no sample is counted twice nor lost. A raw sample
// is a point with min = avg = max. With points > 0 and more stored points
// than that, they are merged into equal intervals aligned on multiples of
// their width (so a sliding window keeps its buckets): min of the mins,
// max of the maxes, average weighted by sample count. The width is the
// smallest round one (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 s or min, 1, 2,
// 3, 4, 6, 8, 12 h, days) that gives no more than points intervals. A
// point's T is the start of its interval, which for the first one may
// precede from. Empty intervals give no point.
//
// The sensor's lock is held for the scan (about 8,000 stored points at
// most), delaying its readings, not other sensors'.
func (s *Store) Query(sensor string, from, to time.Time, points int) ([]Point, error) {
	f, t := clampMs(from), clampMs(to)
	if f > t {
		return nil, fmt.Errorf("history of %q: from %v is after to %v", sensor, from, to)
	}
	se := s.lock(sensor)
	if se == nil {
		return nil, fmt.Errorf("history of %q: %w", sensor, ErrNotRecorded)
	}
	defer se.mu.Unlock()
	n := 0
	se.scan(f, t, func(int64, float32, float32, float32, uint16) { n++ })
	if points <= 0 || n <= points {
		out := make([]Point, 0, n)
		se.scan(f, t, func(ms int64, lo, avg, hi float32, _ uint16) {
			out = append(out, Point{T: ms, Min: float64(lo), Avg: float64(avg), Max: float64(hi)})
		})
		return out, nil
	}
	// Intervals of width w ≥ (t-f)/(points-1) aligned on multiples of w
	// touch at most ceil((t-f)/w)+1 ≤ points of them; a single one starts
	// at f.
	origin, w := f, t-f+1
	if points > 1 {
		origin, w = 0, roundWidth((t-f+int64(points)-2)/int64(points-1))
	}
	out := make([]Point, 0, points)
	weight := make([]float64, 0, points)
	se.scan(f, t, func(ms int64, lo, avg, hi float32, c uint16) {
		start := origin + floorDiv(max(ms, f)-origin, w)*w
		if i := len(out) - 1; i >= 0 && out[i].T == start {
			p := &out[i]
			p.Min, p.Max = min(p.Min, float64(lo)), max(p.Max, float64(hi))
			p.Avg += float64(avg) * float64(c)
			weight[i] += float64(c)
			return
		}
		out = append(out, Point{T: start, Min: float64(lo), Avg: float64(avg) * float64(c), Max: float64(hi)})
		weight = append(weight, float64(c))
	})
	for i := range out {
		out[i].Avg /= weight[i]
	}
	return out, nil
}

// widths are the interval widths downsampling rounds up to (ms), so that
// points fall on round times and hold whole buckets of the tiers.
var widths = [...]int64{1, 2, 5, 10, 20, 50, 100, 200, 250, 500,
	1e3, 2e3, 3e3, 4e3, 5e3, 6e3, 10e3, 12e3, 15e3, 20e3, 30e3,
	60e3, 120e3, 180e3, 240e3, 300e3, 360e3, 600e3, 720e3, 900e3, 1200e3, 1800e3,
	3600e3, 7200e3, 10800e3, 14400e3, 21600e3, 28800e3, 43200e3, 86400e3}

// roundWidth returns the first of widths at least w, or w rounded up to days.
func roundWidth(w int64) int64 {
	for _, r := range widths {
		if r >= w {
			return r
		}
	}
	return alignUp(w, 86400e3)
}

// scan calls emit for every stored point in [from, to], oldest first: raw
// samples (count 1) and buckets (at their start), each part of the range
// from the finest tier holding it. Called with se.mu held.
func (se *series) scan(from, to int64, emit func(ms int64, lo, avg, hi float32, n uint16)) {
	// Level 0 is the raw ring, 1 and 2 the tiers. start[l] is the oldest
	// time level l holds.
	start := [3]int64{math.MaxInt64, max(se.tiers[0].start(), se.first), max(se.tiers[1].start(), se.first)}
	if se.raw.n > 0 {
		start[0], _ = se.raw.at(0)
	}
	width := [3]int64{1, se.tiers[0].width, se.tiers[1].width}
	// Choose parts finest first: level l answers [cut, hi) where cut is
	// where its data starts, rounded up to a bucket boundary of the next
	// level holding older data, which answers what lies before.
	type part struct{ level, lo, hi int64 }
	var parts [3]part
	np, hi := 0, to+1
	for l := 0; ; {
		c := l + 1
		for c < 3 && start[c] >= start[l] {
			c++
		}
		if from >= start[l] || c == 3 {
			parts[np], np = part{int64(l), from, hi}, np+1
			break
		}
		if start[l] < hi {
			if cut := alignUp(start[l], width[c]); cut < hi {
				parts[np], np, hi = part{int64(l), cut, hi}, np+1, cut
			}
		}
		l = c
	}
	for i := np - 1; i >= 0; i-- {
		p := parts[i]
		if p.level == 0 {
			for j := se.raw.search(p.lo); j < se.raw.n; j++ {
				ms, v := se.raw.at(j)
				if ms >= p.hi {
					break
				}
				emit(ms, v, v, v, 1)
			}
			continue
		}
		r := &se.tiers[p.level-1]
		k0 := max(floorDiv(p.lo, r.width), r.last-int64(len(r.cnt))+1)
		k1 := min(floorDiv(p.hi-1, r.width), r.last)
		for k := k0; k <= k1; k++ {
			if s := r.slot(k); r.cnt[s] > 0 {
				emit(k*r.width, r.min[s], r.avg[s], r.max[s], r.cnt[s])
			}
		}
	}
}

// WriteCSV writes every stored point of sensor in [from, to] as CSV for a
// person: a header "time,min,avg,max", then one line per point, the time in
// RFC 3339 UTC (with milliseconds when not zero).
func (s *Store) WriteCSV(w io.Writer, sensor string, from, to time.Time) error {
	pts, err := s.Query(sensor, from, to, 0)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.WriteString("time,min,avg,max\n")
	var b []byte
	for _, p := range pts {
		b = time.UnixMilli(p.T).UTC().AppendFormat(b[:0], "2006-01-02T15:04:05.999Z07:00")
		for _, v := range [3]float64{p.Min, p.Avg, p.Max} {
			b = strconv.AppendFloat(append(b, ','), v, 'g', -1, 32)
		}
		bw.Write(append(b, '\n'))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("history csv of %q: %w", sensor, err)
	}
	return nil
}
