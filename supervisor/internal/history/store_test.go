package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is on a 15-minute boundary, so every tier's buckets start at it.
var t0 = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

func ms(d time.Duration) int64 { return t0.Add(d).UnixMilli() }

// MustStore returns a store recording sensor every interval.
func MustStore(tb testing.TB, sensor string, interval time.Duration) *Store {
	tb.Helper()
	s := New(0)
	if err := s.Add(sensor, interval); err != nil {
		tb.Fatal(err)
	}
	return s
}

func mustQuery(tb testing.TB, s *Store, sensor string, from, to time.Time, points int) []Point {
	tb.Helper()
	p, err := s.Query(sensor, from, to, points)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// totals returns the samples the points stand for and their sum.
func totals(s *Store, sensor string, pts []Point) (n, sum float64) {
	se := (*s.sensors.Load())[sensor]
	w := map[int64]float64{}
	se.scan(math.MinInt64/4, math.MaxInt64/4, func(ms int64, _, _, _ float32, c uint16) { w[ms] = float64(c) })
	for _, p := range pts {
		n += w[p.T]
		sum += p.Avg * w[p.T]
	}
	return n, sum
}

func TestTierRollover(t *testing.T) {
	s := MustStore(t, "temp", 10*time.Second)
	// Sample i at t0+10i s is worth i: minute m holds 6m … 6m+5.
	for i := range 720 { // two hours
		s.Record("temp", t0.Add(time.Duration(i)*10*time.Second), float64(i))
	}
	se := (*s.sensors.Load())["temp"]
	if se.raw.n != 360 || len(se.raw.off) != 360 {
		t.Fatalf("raw ring holds %d of %d, want 360 of 360", se.raw.n, len(se.raw.off))
	}
	if first, v := se.raw.at(0); first != ms(3600*time.Second) || v != 360 {
		t.Fatalf("oldest raw sample %d=%v, want sample 360", first, v)
	}
	m := &se.tiers[0]
	if m.last != ms(119*time.Minute)/60000 {
		t.Fatalf("newest minute %d", m.last)
	}
	for _, k := range []int64{0, 1, 59, 119} {
		sl := m.slot(ms(time.Duration(k)*time.Minute) / 60000)
		lo, avg, hi := float32(6*k), float32(6*k)+2.5, float32(6*k+5)
		if m.min[sl] != lo || m.avg[sl] != avg || m.max[sl] != hi || m.cnt[sl] != 6 {
			t.Errorf("minute %d = %v/%v/%v n=%d, want %v/%v/%v n=6", k, m.min[sl], m.avg[sl], m.max[sl], m.cnt[sl], lo, avg, hi)
		}
	}
	q := &se.tiers[1] // quarter q holds 90q … 90q+89
	if sl := q.slot(ms(0) / q.width); q.min[sl] != 0 || q.avg[sl] != 44.5 || q.max[sl] != 89 || q.cnt[sl] != 90 {
		t.Errorf("first quarter = %v/%v/%v n=%d", q.min[sl], q.avg[sl], q.max[sl], q.cnt[sl])
	}
	// A day later the raw ring and the minute tier have rolled over
	// every sample; the quarters are still there.
	s.Record("temp", t0.Add(26*time.Hour), 1000)
	if pts := mustQuery(t, s, "temp", t0, t0.Add(2*time.Hour), 0); len(pts) != 8 || pts[0].Avg != 44.5 {
		t.Fatalf("after a day, the first two hours: %v, want 8 quarters", pts)
	}
	if pts := mustQuery(t, s, "temp", t0.Add(25*time.Hour), t0.Add(27*time.Hour), 0); len(pts) != 1 || pts[0] != (Point{T: ms(26 * time.Hour), Min: 1000, Avg: 1000, Max: 1000}) {
		t.Fatalf("after a day, the last sample: %v", pts)
	}
	// 31 days after t0 the first two hours are gone, the quarter of 26 h
	// (29.9 days before) is still there.
	s.Record("temp", t0.Add(31*24*time.Hour), 1)
	if pts := mustQuery(t, s, "temp", t0, t0.Add(27*time.Hour), 0); len(pts) != 1 || pts[0] != (Point{T: ms(26 * time.Hour), Min: 1000, Avg: 1000, Max: 1000}) {
		t.Fatalf("after 30 days: %v", pts)
	}
}

func TestRecordIgnores(t *testing.T) {
	s := MustStore(t, "temp", time.Second)
	s.Record("temp", t0.Add(time.Second), 1)
	s.Record("temp", t0, 2)                             // older than the newest
	s.Record("temp", t0.Add(2*time.Second), math.NaN()) // not a number
	s.Record("temp", t0.Add(2*time.Second), 1e39)       // beyond float32
	s.Record("other", t0.Add(2*time.Second), 3)         // not recorded
	s.Record("temp", t0.Add(time.Second), 4)            // same time: kept
	got := mustQuery(t, s, "temp", t0, t0.Add(time.Hour), 0)
	want := []Point{{T: ms(time.Second), Min: 1, Avg: 1, Max: 1}, {T: ms(time.Second), Min: 4, Avg: 4, Max: 4}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := s.Query("other", t0, t0, 0); !errors.Is(err, ErrNotRecorded) {
		t.Fatalf("query of a sensor not recorded: %v", err)
	}
	if _, err := s.Query("temp", t0.Add(time.Second), t0, 0); err == nil {
		t.Fatal("query with from after to: no error")
	}
}

func TestRawRebase(t *testing.T) {
	// Recording for 60 days, past the 49.7 days of a uint32 ms offset.
	s := MustStore(t, "slow", 20*time.Minute)
	end := 60 * 24 * time.Hour
	for d := time.Duration(0); d <= end; d += 20 * time.Minute {
		s.Record("slow", t0.Add(d), float64(d/time.Minute))
	}
	if se := (*s.sensors.Load())["slow"]; se.raw.base == ms(0) {
		t.Fatal("never rebased")
	}
	got := mustQuery(t, s, "slow", t0.Add(end-time.Hour), t0.Add(end), 0)
	var want []Point
	// The first from the minute tier (the raw ring holds three samples).
	for d := end - 60*time.Minute; d <= end; d += 20 * time.Minute {
		v := float64(d / time.Minute)
		want = append(want, Point{T: ms(d), Min: v, Avg: v, Max: v})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestQueryFinestTier(t *testing.T) {
	s := MustStore(t, "temp", 10*time.Second)
	// Samples at t0+5s+10i s: the oldest raw one (i=360) is mid-minute,
	// so the minute it is in comes from the minute tier and raw samples
	// start at the next minute.
	const n = 720
	sum := 0.0
	for i := range n {
		s.Record("temp", t0.Add(5*time.Second+time.Duration(i)*10*time.Second), float64(i))
		sum += float64(i)
	}
	end := t0.Add(2 * time.Hour)
	t.Run("last hour: raw", func(t *testing.T) {
		pts := mustQuery(t, s, "temp", end.Add(-50*time.Minute), end, 0)
		if len(pts) != 300 || pts[0] != (Point{T: ms(70*time.Minute + 5*time.Second), Min: 420, Avg: 420, Max: 420}) {
			t.Fatalf("%d points from %v", len(pts), pts[0])
		}
	})
	t.Run("two hours: minutes then raw", func(t *testing.T) {
		pts := mustQuery(t, s, "temp", t0, end, 0)
		// 61 minutes (0…60) and raw samples 366…719.
		if len(pts) != 61+354 {
			t.Fatalf("%d points", len(pts))
		}
		if p := pts[60]; p != (Point{T: ms(60 * time.Minute), Min: 360, Avg: 362.5, Max: 365}) {
			t.Fatalf("minute 60 = %v", p)
		}
		if p := pts[61]; p != (Point{T: ms(61*time.Minute + 5*time.Second), Min: 366, Avg: 366, Max: 366}) {
			t.Fatalf("first raw = %v", p)
		}
		if gn, gs := totals(s, "temp", pts); gn != n || gs != sum {
			t.Fatalf("points stand for %v samples summing %v, want %v and %v", gn, gs, n, sum)
		}
	})
	t.Run("a range inside the minute tier", func(t *testing.T) {
		pts := mustQuery(t, s, "temp", t0.Add(10*time.Minute+30*time.Second), t0.Add(12*time.Minute), 0)
		want := []Point{{T: ms(10 * time.Minute), Min: 60, Avg: 62.5, Max: 65}, {T: ms(11 * time.Minute), Min: 66, Avg: 68.5, Max: 71}, {T: ms(12 * time.Minute), Min: 72, Avg: 74.5, Max: 77}}
		if fmt.Sprint(pts) != fmt.Sprint(want) {
			t.Fatalf("got %v, want %v", pts, want)
		}
	})
}

func TestQueryMonth(t *testing.T) {
	s := MustStore(t, "load", time.Minute)
	// Two days at one a minute: quarters for the first day, minutes for
	// the last one but an hour, raw for the last hour.
	const n = 2 * 24 * 60
	sum := 0.0
	for i := range n {
		v := float64(i % 97)
		s.Record("load", t0.Add(time.Duration(i)*time.Minute), v)
		sum += v
	}
	end := t0.Add(n * time.Minute)
	pts := mustQuery(t, s, "load", end.Add(-30*24*time.Hour), end, 0)
	// The minute tier starts at end-24h, a quarter boundary.
	if want := 96 + (24*60 - 60) + 60; len(pts) != want {
		t.Fatalf("%d points, want %d", len(pts), want)
	}
	if gn, gs := totals(s, "load", pts); gn != n || math.Abs(gs-sum) > 1e-3*sum {
		t.Fatalf("points stand for %v samples summing %v, want %v and %v", gn, gs, n, sum)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].T <= pts[i-1].T {
			t.Fatalf("points out of order at %d: %v %v", i, pts[i-1], pts[i])
		}
	}
	// Downsampled: the stored points merged by hand into intervals of
	// the round width.
	se := (*s.sensors.Load())["load"]
	for _, c := range []struct {
		span   time.Duration
		points int
		width  int64
	}{{time.Hour, 50, 2 * 60e3}, {24 * time.Hour, 300, 5 * 60e3}, {30 * 24 * time.Hour, 100, 8 * 3600e3}} {
		from := end.Add(-c.span)
		got := mustQuery(t, s, "load", from, end, c.points)
		var want []Point
		var weight []float64
		se.scan(from.UnixMilli(), end.UnixMilli(), func(ms int64, lo, avg, hi float32, n uint16) {
			start := max(ms, from.UnixMilli()) / c.width * c.width
			if i := len(want) - 1; i >= 0 && want[i].T == start {
				want[i].Min, want[i].Max = min(want[i].Min, float64(lo)), max(want[i].Max, float64(hi))
				want[i].Avg += float64(avg) * float64(n)
				weight[i] += float64(n)
				return
			}
			want = append(want, Point{T: start, Min: float64(lo), Avg: float64(avg) * float64(n), Max: float64(hi)})
			weight = append(weight, float64(n))
		})
		for i := range want {
			want[i].Avg /= weight[i]
		}
		if len(got) > c.points || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%v in %d points: got %d %v…, want %d %v…", c.span, c.points, len(got), got[:2], len(want), want[:2])
		}
	}
}

func TestDownsample(t *testing.T) {
	// Raw samples a second apart, t0 on a multiple of 3 s.
	s := MustStore(t, "x", time.Second)
	for i, v := range []float64{1, 5, 3, 8, 2, 7, 4, 6, 9, 0} {
		s.Record("x", t0.Add(time.Duration(i)*time.Second), v)
	}
	got := mustQuery(t, s, "x", t0, t0.Add(9*time.Second), 4) // 3 s each
	want := []Point{{T: ms(0), Min: 1, Avg: 3, Max: 5}, {T: ms(3 * time.Second), Min: 2, Avg: 17.0 / 3, Max: 8}, {T: ms(6 * time.Second), Min: 4, Avg: 19.0 / 3, Max: 9}, {T: ms(9 * time.Second), Min: 0, Avg: 0, Max: 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := mustQuery(t, s, "x", t0, t0.Add(9*time.Second), 1); fmt.Sprint(got) != fmt.Sprint([]Point{{T: ms(0), Min: 0, Avg: 4.5, Max: 9}}) {
		t.Fatalf("one point: %v", got)
	}
	if got := mustQuery(t, s, "x", t0, t0.Add(9*time.Second), 10); len(got) != 10 || got[9].T != ms(9*time.Second) {
		t.Fatalf("as many points as samples: %v", got)
	}

	// The average is weighted by the samples behind each bucket: an hourly
	// raw ring keeps one sample, the rest comes from the minute tier.
	s = MustStore(t, "y", time.Hour)
	for _, r := range []struct {
		d time.Duration
		v float64
	}{{0, 10}, {30 * time.Second, 20}, {time.Minute, 30}, {2 * time.Minute, 40}} {
		s.Record("y", t0.Add(r.d), r.v)
	}
	all := mustQuery(t, s, "y", t0, t0.Add(2*time.Minute), 0)
	if want := []Point{{T: ms(0), Min: 10, Avg: 15, Max: 20}, {T: ms(time.Minute), Min: 30, Avg: 30, Max: 30}, {T: ms(2 * time.Minute), Min: 40, Avg: 40, Max: 40}}; fmt.Sprint(all) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", all, want)
	}
	if one := mustQuery(t, s, "y", t0, t0.Add(time.Minute+59*time.Second), 1); fmt.Sprint(one) != fmt.Sprint([]Point{{T: ms(0), Min: 10, Avg: 20, Max: 30}}) {
		t.Fatalf("weighted: %v, want avg (15×2+30)/3 = 20", one)
	}
}

func TestPointJSON(t *testing.T) {
	pts := []Point{{T: 1748736000000, Min: 0.1, Avg: 21.5, Max: float64(float32(45.1))}, {T: 1748736060000, Min: -3, Avg: 0, Max: 1e9}}
	b, err := json.Marshal(pts)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[[1748736000000,0.1,21.5,45.1],[1748736060000,-3,0,1e+09]]`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
	var back []Point
	if err := json.Unmarshal(b, &back); err != nil || back[1] != pts[1] {
		t.Fatalf("round trip: %v %v", back, err)
	}
}

func TestWriteCSV(t *testing.T) {
	s := MustStore(t, "temp", time.Second)
	s.Record("temp", t0.Add(10*time.Second), 21.5)
	s.Record("temp", t0.Add(90*time.Second+250*time.Millisecond), 0.1)
	// An hourly raw ring keeps its newest sample: the minute before it
	// comes from the minute tier.
	s.Add("agg", time.Hour)
	s.Record("agg", t0, 1)
	s.Record("agg", t0.Add(30*time.Second), 2)
	s.Record("agg", t0.Add(time.Minute), 4)
	for _, c := range []struct{ sensor, want string }{
		{"temp", "time,min,avg,max\n" +
			"2025-06-01T00:00:10Z,21.5,21.5,21.5\n" +
			"2025-06-01T00:01:30.25Z,0.1,0.1,0.1\n"},
		{"agg", "time,min,avg,max\n" +
			"2025-06-01T00:00:00Z,1,1.5,2\n" +
			"2025-06-01T00:01:00Z,4,4,4\n"},
	} {
		var b strings.Builder
		if err := s.WriteCSV(&b, c.sensor, t0, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if b.String() != c.want {
			t.Errorf("%s: got\n%s\nwant\n%s", c.sensor, b.String(), c.want)
		}
	}
	var b strings.Builder
	if err := s.WriteCSV(&b, "none", t0, t0); !errors.Is(err, ErrNotRecorded) {
		t.Fatalf("csv of a sensor not recorded: %v", err)
	}
}

func TestSensorBytes(t *testing.T) {
	if got := seriesBytes; got != 432 && runtime.GOARCH == "amd64" {
		t.Errorf("series header %d bytes, doc.go says 432", got)
	}
	for _, c := range []struct {
		d    time.Duration
		want int
	}{{10 * time.Second, 360*8 + 60480 + seriesBytes + 4}, {time.Second, 3600*8 + 60480 + seriesBytes + 4},
		{time.Millisecond, 3600*8 + 60480 + seriesBytes + 4}, {7 * time.Second, 515*8 + 60480 + seriesBytes + 4}} {
		if got := SensorBytes("temp", c.d); got != c.want {
			t.Errorf("SensorBytes(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

func TestMemoryBound(t *testing.T) {
	s := New(0)
	per := SensorBytes("s000", 10*time.Second)
	var err error
	i := 0
	for ; err == nil; i++ {
		err = s.Add(fmt.Sprintf("s%03d", i), 10*time.Second)
	}
	used, limit := s.Memory()
	if limit != DefaultMemoryKB<<10 || used > limit || i-1 != limit/per {
		t.Fatalf("%d sensors in %d of %d bytes, want %d", i-1, used, limit, limit/per)
	}
	if !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), fmt.Sprintf("needs %d bytes", per)) ||
		!strings.Contains(err.Error(), "history_memory_kb=1024") {
		t.Fatalf("error %q: want ErrMemory naming the bound and the need", err)
	}
	// A shorter interval for a recorded sensor takes the headroom left
	// (28,480 bytes), once; the second is refused and leaves it as it was.
	grow := SensorBytes("s000", time.Second) - per
	if err := s.Add("s000", time.Second); err != nil || limit-used < grow {
		t.Fatalf("growing within the bound: %v", err)
	}
	if err := s.Add("s001", time.Second); !errors.Is(err, ErrMemory) {
		t.Fatalf("growing past the bound: %v", err)
	}
	if se := (*s.sensors.Load())["s001"]; len(se.raw.off) != 360 {
		t.Fatalf("refused, yet %d raw slots", len(se.raw.off))
	}
	if u, _ := s.Memory(); u != used+grow {
		t.Fatalf("%d bytes, want %d", u, used+grow)
	}
	if err := s.Add(strings.Repeat("x", maxName+1), time.Minute); err == nil {
		t.Fatal("an id longer than a file holds: no error")
	}
	s.Remove("s001")
	s.Remove("never")
	if err := s.Add("s999", 10*time.Second); err != nil {
		t.Fatalf("after a removal: %v", err)
	}
	if err := s.Add("s998", 10*time.Second); !errors.Is(err, ErrMemory) {
		t.Fatalf("full again: %v", err)
	}
}

// TestMemoryBoundHeap checks the accounting against the heap with many
// sensors at several intervals, filled for two days.
func TestMemoryBoundHeap(t *testing.T) {
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	s := New(8 << 10)
	intervals := []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, time.Minute}
	var names []string
	for i := 0; ; i++ {
		name := fmt.Sprintf("sensor_%03d", i)
		if err := s.Add(name, intervals[i%len(intervals)]); err != nil {
			break
		}
		names = append(names, name)
	}
	added := heap()
	for i := range 2 * 24 * 60 {
		for _, name := range names {
			s.Record(name, t0.Add(time.Duration(i)*time.Minute), float64(i))
		}
	}
	filled := heap()
	used, limit := s.Memory()
	t.Logf("%d sensors: accounted %d of %d bytes, heap +%d after Add, +%d after two days", len(names), used, limit, added-before, filled-before)
	if len(names) < 100 || used > limit {
		t.Fatalf("%d sensors, %d of %d bytes", len(names), used, limit)
	}
	for _, grown := range []uint64{added - before, filled - before} {
		if r := float64(grown) / float64(used); r < 0.9 || r > 1.25 {
			t.Errorf("heap grew %d bytes for %d accounted (×%.2f)", grown, used, r)
		}
	}
	runtime.KeepAlive(s)
}

func TestRecordAllocs(t *testing.T) {
	s := MustStore(t, "temp", time.Second)
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		i++
		s.Record("temp", t0.Add(time.Duration(i)*time.Second), float64(i))
	}); a != 0 {
		t.Fatalf("Record allocates %v times", a)
	}
}

func TestResize(t *testing.T) {
	s := MustStore(t, "temp", time.Second)
	for i := range 600 {
		s.Record("temp", t0.Add(time.Duration(i)*time.Second), float64(i))
	}
	before := mustQuery(t, s, "temp", t0, t0.Add(time.Hour), 0)
	if err := s.Add("temp", 10*time.Second); err != nil { // 360 raw slots
		t.Fatal(err)
	}
	after := mustQuery(t, s, "temp", t0, t0.Add(time.Hour), 0)
	// Samples 240…599 stay raw; minutes 0…3 answer before.
	if len(after) != 4+360 || after[4] != before[240] || after[0] != (Point{T: ms(0), Min: 0, Avg: 29.5, Max: 59}) {
		t.Fatalf("after resizing: %d points, %v, %v", len(after), after[0], after[4])
	}
	if err := s.Add("temp", 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrent runs every method at once, for the race detector.
func TestConcurrent(t *testing.T) {
	s := New(0)
	dir := t.TempDir()
	names := []string{"a", "b", "c"}
	for _, n := range names {
		s.Add(n, time.Second)
	}
	var wg, other sync.WaitGroup
	stop := make(chan struct{})
	for _, n := range names {
		wg.Go(func() {
			for i := 0; i < 5000; i++ {
				s.Record(n, t0.Add(time.Duration(i)*time.Second), float64(i))
			}
		})
	}
	other.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, n := range names {
				s.Query(n, t0, t0.Add(2*time.Hour), 50)
			}
			s.Add("d", time.Second)
			s.Remove("d")
			s.Add("a", 2*time.Second) // resized while recorded
			s.Add("a", time.Second)
			if err := s.Save(dir); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	close(stop)
	other.Wait()
	// No reading was lost to a resize: the minutes count them all.
	for _, n := range names {
		se := s.lock(n)
		total := 0
		for _, c := range se.tiers[0].cnt {
			total += int(c)
		}
		se.mu.Unlock()
		if total != 5000 {
			t.Errorf("%s: %d readings in the minutes, want 5000", n, total)
		}
	}
	if pts := mustQuery(t, s, "a", t0, t0.Add(2*time.Hour), 0); len(pts) < 1800 {
		t.Errorf("a: %d points", len(pts))
	}
}

// TestResizeWhileRecording changes a sensor's interval over and over while
// it is recorded and queried: no reading is lost nor written to the series
// replaced (whose tiers the new one shares: the race detector would see it).
func TestResizeWhileRecording(t *testing.T) {
	s := MustStore(t, "a", time.Second)
	const n = 100000
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range n {
			s.Record("a", t0.Add(time.Duration(i)*time.Second), float64(i))
		}
	})
	for _, d := range []time.Duration{2 * time.Second, time.Second} {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				s.Add("a", d)
				s.Query("a", t0, t0.Add(n*time.Second), 10)
			}
		})
	}
	wg.Wait()
	se := s.lock("a")
	defer se.mu.Unlock()
	total := 0
	for _, c := range se.tiers[1].cnt {
		total += int(c)
	}
	if total != n {
		t.Errorf("%d readings in the quarters, want %d", total, n)
	}
	for i := range se.raw.n {
		if got, _ := se.raw.at(se.raw.n - 1 - i); got != ms(time.Duration(n-1-i)*time.Second) {
			t.Fatalf("raw sample %d from the newest is at %d, want %d", i, got, ms(time.Duration(n-1-i)*time.Second))
		}
	}
}
