package history

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// filled returns a store recording three sensors for two days, the last
// sample at the returned time.
func filled(tb testing.TB) (*Store, time.Time) {
	tb.Helper()
	s := New(0)
	for _, c := range []struct {
		name string
		d    time.Duration
	}{{"cpu_load", 10 * time.Second}, {"board_celsius", time.Second}, {"door_open", time.Minute}} {
		if err := s.Add(c.name, c.d); err != nil {
			tb.Fatal(err)
		}
	}
	var last time.Time
	for i := range 2 * 24 * 3600 / 5 {
		last = t0.Add(time.Duration(i) * 5 * time.Second)
		s.Record("cpu_load", last, float64(i%300)/100)
		s.Record("board_celsius", last, 40+float64(i%1000)/1000)
		s.Record("door_open", last, float64(i/50%2))
	}
	return s, last
}

func dump(tb testing.TB, s *Store, sensor string, from, to time.Time) string {
	tb.Helper()
	pts, err := s.Query(sensor, from, to, 0)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(pts)
	return string(b)
}

func TestSaveLoad(t *testing.T) {
	s, last := filled(t)
	dir := t.TempDir()
	if !s.Dirty() {
		t.Fatal("not dirty after recording")
	}
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	if s.Dirty() {
		t.Fatal("dirty after saving")
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	used, _ := s.Memory()
	t.Logf("file %d bytes for %d bytes of rings", fi.Size(), used)
	ranges := [][2]time.Time{{t0, last}, {last.Add(-time.Hour), last}, {last.Add(-26 * time.Hour), last.Add(-time.Hour)}}

	t.Run("round trip", func(t *testing.T) {
		n := New(0)
		n.Add("cpu_load", 10*time.Second)
		n.Add("board_celsius", time.Second)
		n.Add("door_open", time.Minute)
		if err := n.Load(dir, last); err != nil {
			t.Fatal(err)
		}
		for _, sensor := range []string{"cpu_load", "board_celsius", "door_open"} {
			for _, r := range ranges {
				if got, want := dump(t, n, sensor, r[0], r[1]), dump(t, s, sensor, r[0], r[1]); got != want {
					t.Fatalf("%s %v: got %.200s…, want %.200s…", sensor, r, got, want)
				}
			}
		}
		if n.Dirty() {
			t.Fatal("dirty after loading")
		}
		// Recording goes on where it stopped: the open minute keeps its
		// samples.
		s.Record("door_open", last.Add(time.Second), 1)
		n.Record("door_open", last.Add(time.Second), 1)
		if got, want := dump(t, n, "door_open", t0, last.Add(time.Hour)), dump(t, s, "door_open", t0, last.Add(time.Hour)); got != want {
			t.Fatal("after one more sample the histories differ")
		}
	})
	t.Run("sensors dropped and resized", func(t *testing.T) {
		n := New(0)
		n.Add("cpu_load", time.Minute) // 60 raw slots instead of 360
		n.Add("new_sensor", time.Second)
		if err := n.Load(dir, last); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Query("board_celsius", t0, last, 0); !errors.Is(err, ErrNotRecorded) {
			t.Fatalf("a sensor not recorded any more: %v", err)
		}
		from := last.Add(-295 * time.Second) // 60 samples 5 s apart
		raw := mustQuery(t, n, "cpu_load", from, last, 0)
		if want := dump(t, s, "cpu_load", from, last); len(raw) != 60 || dump(t, n, "cpu_load", from, last) != want {
			t.Fatalf("%d raw points, want the newest 60", len(raw))
		}
		if pts := mustQuery(t, n, "new_sensor", t0, last, 0); len(pts) != 0 {
			t.Fatalf("a new sensor has %d points", len(pts))
		}
	})
	t.Run("aged", func(t *testing.T) {
		// door_open is sampled every 5 s, its raw ring holds 60 (5 min).
		for _, c := range []struct {
			after    time.Duration
			from     time.Time
			n        int
			width    time.Duration
			whatLeft string
		}{
			{2 * time.Hour, last.Add(-time.Hour), 61, time.Minute, "no raw sample: minutes"},
			{25 * time.Hour, t0, 192, 15 * time.Minute, "no minute: two days of quarters"},
			{31 * 24 * time.Hour, t0, 0, 0, "nothing"},
		} {
			n := New(0)
			n.Add("door_open", time.Minute)
			if err := n.Load(dir, last.Add(c.after)); err != nil {
				t.Fatal(err)
			}
			pts := mustQuery(t, n, "door_open", c.from, last, 0)
			if len(pts) != c.n {
				t.Errorf("loaded %v later: %d points, want %d (%s)", c.after, len(pts), c.n, c.whatLeft)
			}
			for _, p := range pts {
				if p.T%c.width.Milliseconds() != 0 {
					t.Errorf("loaded %v later: a point at %d, want %s", c.after, p.T, c.whatLeft)
					break
				}
			}
		}
	})
}

func TestLoadNoFile(t *testing.T) {
	s := MustStore(t, "x", time.Second)
	if err := s.Load(t.TempDir(), t0); err != nil {
		t.Fatalf("no file: %v", err)
	}
}

// loadBytes writes b as the history file and loads it into a store that
// records x and y.
func loadBytes(tb testing.TB, b []byte) (*Store, error) {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
		tb.Fatal(err)
	}
	s := New(0)
	s.Add("x", time.Second)
	s.Add("y", 10*time.Second)
	s.Record("x", t0.Add(-time.Hour), 1) // to be replaced
	return s, s.Load(dir, t0)
}

// savedXY returns a saved history of x and y.
func savedXY(tb testing.TB) []byte {
	tb.Helper()
	s := New(0)
	s.Add("x", time.Second)
	s.Add("y", 10*time.Second)
	for i := range 300 {
		s.Record("x", t0.Add(time.Duration(i-300)*time.Second), float64(i))
		s.Record("y", t0.Add(time.Duration(i-300)*time.Second), -float64(i))
	}
	dir := tb.TempDir()
	if err := s.Save(dir); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func gunzip(tb testing.TB, b []byte) []byte {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

func TestLoadCorrupt(t *testing.T) {
	good := savedXY(t)
	if s, err := loadBytes(t, good); err != nil || len(mustQuery(t, s, "x", t0.Add(-time.Hour), t0, 0)) != 300 {
		t.Fatalf("good file: %v", err)
	}
	payload := gunzip(t, good)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	cases := map[string][]byte{
		"empty":          {},
		"not gzip":       []byte("history"),
		"flipped byte":   flipped,
		"other magic":    gz(append([]byte("LCGX"), payload[4:]...)),
		"newer version":  gz(append([]byte("LCGH\x02"), payload[5:]...)),
		"trailing bytes": gz(append(bytes.Clone(payload), 0)),
		"bad payload":    gz(payload[:len(payload)/2]),
	}
	for i := 1; i < len(good); i += len(good)/50 + 1 {
		cases[fmt.Sprintf("truncated at %d", i)] = good[:i]
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := loadBytes(t, b)
			if err == nil {
				t.Fatal("no error")
			}
			for _, sensor := range []string{"x", "y"} {
				if pts := mustQuery(t, s, sensor, t0.Add(-2*time.Hour), t0, 0); len(pts) != 0 {
					t.Fatalf("%v, yet %s has %d points", err, sensor, len(pts))
				}
			}
			// And the store works on.
			s.Record("x", t0, 5)
			if pts := mustQuery(t, s, "x", t0, t0, 0); len(pts) != 1 {
				t.Fatalf("after a failed load: %v", pts)
			}
		})
	}
}

// FuzzLoad loads arbitrary bytes, as the file and as its gzip'd payload:
// never a panic, and a store that loaded works.
func FuzzLoad(f *testing.F) {
	good := savedXY(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(gunzip(f, good))
	f.Add([]byte("LCGH\x01\x01\x01x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, file := range [][]byte{b, gz(b)} {
			s, err := loadBytes(t, file)
			if err != nil {
				continue
			}
			for _, sensor := range []string{"x", "y"} {
				if _, err := s.Query(sensor, t0.Add(-40*24*time.Hour), t0.Add(time.Hour), 100); err != nil {
					t.Fatal(err)
				}
				s.Record(sensor, t0.Add(time.Hour), 1)
			}
		}
	})
}

// TestSaveAtomic fills up the file size a process may write (RLIMIT_FSIZE,
// as a full flash would) in a child process saving over a good file: the
// save fails, the old file stays whole, no temporary file is left.
func TestSaveAtomic(t *testing.T) {
	if dir := os.Getenv("HISTORY_SAVE_LIMITED"); dir != "" {
		s, _ := filled(t)
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 4096, Max: 4096}); err != nil {
			t.Fatal(err)
		}
		err := s.Save(dir)
		fmt.Printf("save: %v dirty=%v\n", err, s.Dirty())
		return
	}
	dir := t.TempDir()
	good := savedXY(t)
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSaveAtomic$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HISTORY_SAVE_LIMITED="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "file too large") || !strings.Contains(string(out), "dirty=true") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, good) {
		t.Fatal("the old file changed")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
	if _, err := loadBytes(t, good); err != nil {
		t.Fatal(err)
	}
	// A directory that is not there: an error, still dirty.
	s := MustStore(t, "x", time.Second)
	s.Record("x", t0, 1)
	if err := s.Save(filepath.Join(dir, "missing")); err == nil || !s.Dirty() {
		t.Fatalf("save to a missing directory: %v, dirty %v", err, s.Dirty())
	}
}
