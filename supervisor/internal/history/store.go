package history

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The tiers. Their spans are what a chart of the last hour, day and month
// needs; a sensor recorded at 10 s keeps 360 raw samples and 1440 + 2880
// buckets (SensorBytes: 63,792 bytes and the id's length, on 64-bit).
const (
	RawSpan      = time.Hour         // every sample, for an hour
	MinuteWidth  = time.Minute       // then min/avg/max per minute…
	MinuteSlots  = 24 * 60           // …for a day
	QuarterWidth = 15 * time.Minute  // then per 15 minutes…
	QuarterSlots = 30 * 24 * 60 / 15 // …for 30 days
	MinInterval  = time.Second       // intervals below count as this when sizing the raw ring
	rawBytes     = 4 + 4             // uint32 ms offset + float32 value
	bucketBytes  = 4 + 4 + 4 + 2     // float32 min, avg, max + uint16 count
	tierBytes    = (MinuteSlots + QuarterSlots) * bucketBytes
	seriesBytes  = int(unsafe.Sizeof(series{}))
	spanMs       = int64(RawSpan / time.Millisecond)
)

// DefaultMemoryKB is the history_memory_kb used when none is set: 1 MiB,
// about 16 sensors recorded at 10 s (11 at 1 s).
const DefaultMemoryKB = 1024

// ErrMemory is wrapped by Add when recording the sensor would take the store
// past its memory bound.
var ErrMemory = errors.New("over history_memory_kb")

// ErrNotRecorded is returned by Query and WriteCSV for a sensor that is not
// recorded.
var ErrNotRecorded = errors.New("sensor not recorded")

// rawSlots is the raw ring's length for a record interval.
func rawSlots(interval time.Duration) int {
	interval = max(interval, MinInterval)
	return int((RawSpan + interval - 1) / interval)
}

// SensorBytes is what recording one sensor at interval costs, as the store
// accounts it: the raw ring (8 bytes a sample for an hour, interval floored
// at MinInterval), both aggregate tiers (14 bytes a bucket, 60,480 bytes)
// and the series header, plus the sensor id's length. Go's allocator rounds
// each ring up to its size class, a few percent more.
func SensorBytes(sensor string, interval time.Duration) int {
	return rawSlots(interval)*rawBytes + tierBytes + seriesBytes + len(sensor)
}

// series is the history of one sensor.
type series struct {
	bytes int // SensorBytes, immutable

	// mu guards everything below. It is held for one sample by Record and
	// for one range by Query, WriteCSV and Save's copy.
	mu     sync.Mutex
	gone   bool  // removed, or replaced by a resized series sharing its tiers
	first  int64 // ms of the first sample accepted (MaxInt64: none)
	newest int64 // ms of the newest sample accepted (MinInt64: none)
	raw    rawRing
	tiers  [2]tier // minute, quarter
}

// newSeries returns an empty series; from, if set, lends it its tiers and
// newest raw samples (a new interval).
func newSeries(sensor string, interval time.Duration, from *series) *series {
	se := &series{bytes: SensorBytes(sensor, interval), raw: newRawRing(rawSlots(interval))}
	if from != nil {
		se.first, se.newest, se.tiers = from.first, from.newest, from.tiers
		from.raw.copyTo(&se.raw)
		return se
	}
	se.tiers = [2]tier{newTier(MinuteWidth.Milliseconds(), MinuteSlots),
		newTier(QuarterWidth.Milliseconds(), QuarterSlots)}
	se.reset()
	return se
}

// reset empties the series.
func (se *series) reset() {
	se.first, se.newest = math.MaxInt64, math.MinInt64
	se.raw.n, se.raw.head = 0, 0
	se.tiers[0].reset()
	se.tiers[1].reset()
}

// record adds a sample unless it is older than the newest one.
func (se *series) record(ms int64, v float64) bool {
	if ms < se.newest {
		return false
	}
	se.first, se.newest = min(se.first, ms), ms
	se.raw.push(ms, float32(v))
	se.tiers[0].add(ms, v)
	se.tiers[1].add(ms, v)
	return true
}

// Store keeps the history of the recorded sensors. Every method may be
// called concurrently.
//
// Concurrency contract:
//   - sensors is a copy-on-write map: Record, Query and WriteCSV read it
//     without a lock; Add and Remove replace it under mu, marking the
//     series they drop gone (under its mu) first, so that whoever finds a
//     gone series looks it up again (lock).
//   - Each series has its own mutex (series.mu), so a query of one sensor
//     never delays the readings of another.
//   - mu serialises Add, Remove, Save and Load and guards used.
//   - Lock order: Store.mu, then one series.mu at a time.
type Store struct {
	limit   int                                // bytes: history_memory_kb × 1024
	sensors atomic.Pointer[map[string]*series] // never nil
	dirty   atomic.Bool                        // a sample or a removal since the last Save or Load

	mu   sync.Mutex
	used int // sum of the series' bytes
}

// New returns an empty store bounded to memoryKB KiB (DefaultMemoryKB if
// memoryKB ≤ 0).
func New(memoryKB int) *Store {
	if memoryKB <= 0 {
		memoryKB = DefaultMemoryKB
	}
	s := &Store{limit: memoryKB << 10}
	s.sensors.Store(&map[string]*series{})
	return s
}

// Add starts recording sensor, sampled every interval (its record.<id>
// setting), with empty history. For a sensor already recorded at another
// interval, the raw ring is resized keeping its newest samples. If the
// store would go past its bound, Add changes nothing and returns an error
// wrapping ErrMemory that names the bound and what the sensor needs: the
// sensors added first are the ones recorded, so add them in a stable order.
func (s *Store) Add(sensor string, interval time.Duration) error {
	if len(sensor) > maxName {
		return fmt.Errorf("record %.40s…: an id of %d bytes, over %d", sensor, len(sensor), maxName)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := (*s.sensors.Load())[sensor]
	if old != nil && len(old.raw.off) == rawSlots(interval) {
		return nil
	}
	need := SensorBytes(sensor, interval)
	used := s.used + need
	if old != nil {
		used -= old.bytes
		old.mu.Lock()
		defer old.mu.Unlock()
	}
	if used > s.limit {
		return fmt.Errorf("record %s every %v: needs %d bytes, %d of %d in use (history_memory_kb=%d): %w",
			sensor, interval, need, s.used, s.limit, s.limit>>10, ErrMemory)
	}
	s.used = used
	se := newSeries(sensor, interval, old)
	if old != nil {
		old.gone = true
	}
	s.replace(sensor, se)
	return nil
}

// Remove stops recording sensor and frees its history.
func (s *Store) Remove(sensor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se := (*s.sensors.Load())[sensor]; se != nil {
		se.mu.Lock()
		se.gone = true
		s.used -= se.bytes
		s.replace(sensor, nil)
		se.mu.Unlock()
		s.dirty.Store(true)
	}
}

// replace publishes a copy of the map with sensor set to se (nil: deleted).
// Called with mu held.
func (s *Store) replace(sensor string, se *series) {
	old := *s.sensors.Load()
	m := make(map[string]*series, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if se == nil {
		delete(m, sensor)
	} else {
		m[sensor] = se
	}
	s.sensors.Store(&m)
}

// lock returns the series of sensor, locked, or nil if not recorded.
func (s *Store) lock(sensor string) *series {
	for {
		se := (*s.sensors.Load())[sensor]
		if se == nil {
			return nil
		}
		se.mu.Lock()
		if !se.gone {
			return se
		}
		se.mu.Unlock()
	}
}

// Memory returns the bytes the store accounts for its sensors and its bound.
func (s *Store) Memory() (used, limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used, s.limit
}

// Dirty reports whether the store changed since the last Save or Load:
// the caller saves when its history_sync timer fires and Dirty is true, and
// on a clean stop (see the example).
func (s *Store) Dirty() bool { return s.dirty.Load() }

// Record adds one reading of sensor at t. It is for the hot path: it takes
// the sensor's lock for a few stores and never allocates. Readings of
// sensors not recorded, values that are NaN or beyond float32's range, and
// readings older than the sensor's newest one (a clock stepped back) are
// ignored. Booleans are recorded as 0 and 1 by the caller.
func (s *Store) Record(sensor string, t time.Time, v float64) {
	if math.IsNaN(v) || math.IsInf(float64(float32(v)), 0) {
		return
	}
	se := s.lock(sensor)
	if se == nil {
		return
	}
	ok := se.record(t.UnixMilli(), v)
	se.mu.Unlock()
	if ok && !s.dirty.Load() {
		s.dirty.Store(true)
	}
}
