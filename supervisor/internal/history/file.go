package history

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// FileName is the file Save writes in history_dir.
const FileName = "history.gz"

// The file is gzip (whose CRC-32 and length catch a corrupt or truncated
// file; empty buckets compress to almost nothing, sparing flash), holding:
//
//	"LCGH" version:u8 sensors
//	per sensor: name-length name first newest
//	  raw:   base n n×(offset:u32 value:f32), oldest first
//	  tiers: 2×(width last n n×(min,avg,max:f32 count:u16)), buckets last-n+1 … last
//
// Integers without a type are varints (encoding/binary's zig-zag), the
// others little-endian. A new layout gets a new version.
const (
	magic      = "LCGH"
	version    = 1
	maxName    = 1 << 10
	maxSensors = 1 << 16
)

// Save writes the history to dir/FileName (dir must exist) atomically: a
// temporary file in dir, synced, renamed over the old one, then dir
// synced. If anything fails the old file is left as it was, the temporary
// one removed, and the store stays Dirty. The caller owns the timer: save at most every
// history_sync (default 15 minutes; flash wears) when Dirty, and on a clean
// stop. Each sensor's lock is held only while its rings are copied.
func (s *Store) Save(dir string) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty.Store(false)
	f, err := os.CreateTemp(dir, ".history-*")
	if err != nil {
		s.dirty.Store(true)
		return fmt.Errorf("save history: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			s.dirty.Store(true)
			err = fmt.Errorf("save history: %w", err)
		}
	}()
	bw := bufio.NewWriterSize(f, 32<<10)
	zw, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	m := *s.sensors.Load()
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	b := binary.AppendVarint(append([]byte(magic), version), int64(len(names)))
	for _, name := range names {
		se := m[name]
		se.mu.Lock()
		b = se.appendTo(b, name)
		se.mu.Unlock()
		if _, err := zw.Write(b); err != nil {
			return err
		}
		b = b[:0]
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, FileName)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// appendTo encodes the series. Called with se.mu held.
func (se *series) appendTo(b []byte, name string) []byte {
	b = append(binary.AppendVarint(b, int64(len(name))), name...)
	r := &se.raw
	for _, v := range [...]int64{se.first, se.newest, r.base, int64(r.n)} {
		b = binary.AppendVarint(b, v)
	}
	for i := range r.n {
		j := r.slot(i)
		b = binary.LittleEndian.AppendUint32(b, r.off[j])
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(r.val[j]))
	}
	for i := range se.tiers {
		t := &se.tiers[i]
		k0 := t.last - int64(len(t.cnt)) + 1 // from the oldest bucket held
		for k0 <= t.last && t.cnt[t.slot(k0)] == 0 {
			k0++
		}
		for _, v := range [...]int64{t.width, t.last, t.last - k0 + 1} {
			b = binary.AppendVarint(b, v)
		}
		for k := k0; k <= t.last; k++ {
			s := t.slot(k)
			for _, v := range [3]float32{t.min[s], t.avg[s], t.max[s]} {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
			}
			b = binary.LittleEndian.AppendUint16(b, t.cnt[s])
		}
	}
	return b
}

// Load replaces the history of the recorded sensors with what Save wrote
// in dir, as of now: sensors not recorded any more are skipped, samples and
// buckets older than their tier's span before now are dropped. Call it
// after adding the sensors and before recording. No file is not an error.
// A corrupt or truncated file is: the store is then left empty (every
// sensor still recorded) for the caller to log and go on.
func (s *Store) Load(dir string, now time.Time) (err error) {
	f, err := os.Open(filepath.Join(dir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("load history: %w", err)
	}
	defer f.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := *s.sensors.Load()
	reset := func() {
		for _, se := range m {
			se.mu.Lock()
			se.reset()
			se.mu.Unlock()
		}
	}
	reset()
	if err := s.decode(f, m, now.UnixMilli()); err != nil {
		reset()
		return fmt.Errorf("load history %s: %w", f.Name(), err)
	}
	s.dirty.Store(false)
	return nil
}

var errCorrupt = errors.New("corrupt")

// decode reads the file into the series of m (emptied by the caller).
func (s *Store) decode(f io.Reader, m map[string]*series, now int64) error {
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return err
	}
	// Twice the bound covers a file saved with a larger one; a gzip bomb
	// stops there. gzip checks its CRC-32 and length at the end.
	limit := int64(2*s.limit + 1<<20)
	b, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return err
	} else if int64(len(b)) > limit {
		return fmt.Errorf("over %d bytes: %w", limit, errCorrupt)
	}
	d := &decoder{b: b}
	if string(d.take(len(magic))) != magic || d.take(1)[0] != version {
		return fmt.Errorf("not a version %d history file: %w", version, errCorrupt)
	}
	var skip *series // reads the sensors not recorded any more
	done := map[string]bool{}
	for range d.int(0, maxSensors) {
		name := string(d.take(int(d.int(0, maxName))))
		se := m[name]
		if se == nil {
			if skip == nil {
				skip = newSeries("", time.Hour, nil)
			}
			se = skip
		} else if done[name] {
			return fmt.Errorf("sensor %q twice: %w", name, errCorrupt)
		} else {
			done[name] = true
		}
		se.mu.Lock()
		d.series(se, now)
		se.mu.Unlock()
		if d.err != nil {
			break
		}
	}
	if d.err == nil && len(d.b) > 0 {
		return fmt.Errorf("%d bytes after the last sensor: %w", len(d.b), errCorrupt)
	}
	return d.err
}

// series reads one sensor into se, dropping what is older than its span
// at now.
func (d *decoder) series(se *series, now int64) {
	first, newest := d.int(math.MinInt64, math.MaxInt64), d.int(math.MinInt64, math.MaxInt64)
	base, n := d.int(math.MinInt64, math.MaxInt64), d.int(0, int64(rawSlots(MinInterval)))
	prev := int64(math.MinInt64)
	for range n {
		ms, v := base+int64(d.u32()), math.Float32frombits(d.u32())
		if d.err != nil || ms < prev || ms > newest || !finite(v) {
			d.fail("bad raw sample")
			return
		}
		if prev = ms; ms >= now-spanMs {
			se.raw.push(ms, v)
		}
	}
	for i := range se.tiers {
		t := &se.tiers[i]
		d.int(t.width, t.width)
		last, n := d.int(math.MinInt64/2, math.MaxInt64/2), d.int(0, int64(len(t.cnt)))
		t.advance(last)
		for k := last - n + 1; k <= last && d.err == nil; k++ {
			lo, avg, hi := math.Float32frombits(d.u32()), math.Float32frombits(d.u32()), math.Float32frombits(d.u32())
			c := d.u16()
			if !finite(lo) || !finite(avg) || !finite(hi) {
				d.fail("bad bucket")
			}
			t.set(k, lo, avg, hi, c)
		}
		if k := floorDiv(now, t.width); k > t.last {
			t.advance(k)
		}
	}
	se.first, se.newest = first, newest
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// decoder parses the payload, keeping the first error: after one, every
// field reads as zero.
type decoder struct {
	b   []byte
	err error
}

var zeros [maxName]byte

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s at %d bytes from the end: %w", what, len(d.b), errCorrupt)
	}
}

// take returns the next n bytes (n ≤ maxName).
func (d *decoder) take(n int) []byte {
	if d.err == nil && n > len(d.b) {
		d.fail("truncated")
	}
	if d.err != nil {
		return zeros[:n]
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) u16() uint16 { return binary.LittleEndian.Uint16(d.take(2)) }
func (d *decoder) u32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }

// int reads a varint, which must be in [lo, hi].
func (d *decoder) int(lo, hi int64) int64 {
	v, n := binary.Varint(d.b)
	if d.err == nil && (n <= 0 || v < lo || v > hi) {
		d.fail("bad number")
	}
	if d.err != nil {
		return 0
	}
	d.b = d.b[n:]
	return v
}
