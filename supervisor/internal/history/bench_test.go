package history

import (
	"fmt"
	"io"
	"testing"
	"time"
)

func BenchmarkRecord(b *testing.B) {
	s := MustStore(b, "temp", time.Second)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		s.Record("temp", t0.Add(time.Duration(i)*time.Second), float64(i))
	}
}

// BenchmarkRecordParallel records one sensor per goroutine, as plugins do.
func BenchmarkRecordParallel(b *testing.B) {
	s := New(0)
	names := make(chan string, 64)
	for i := range 8 {
		name := fmt.Sprintf("s%d", i)
		s.Add(name, time.Second)
		names <- name
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		name := <-names
		i := 0
		for pb.Next() {
			i++
			s.Record(name, t0.Add(time.Duration(i)*time.Second), float64(i))
		}
	})
}

func BenchmarkQuery(b *testing.B) {
	s, last := filled(b)
	for _, c := range []struct {
		name   string
		span   time.Duration
		points int
	}{{"hour_raw", time.Hour, 0}, {"hour_300", time.Hour, 300}, {"day_300", 24 * time.Hour, 300}, {"month_300", 30 * 24 * time.Hour, 300}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				pts, _ := s.Query("board_celsius", last.Add(-c.span), last, c.points)
				n = len(pts)
			}
			b.ReportMetric(float64(n), "points")
		})
	}
}

func BenchmarkWriteCSV(b *testing.B) {
	s, last := filled(b)
	b.ReportAllocs()
	for b.Loop() {
		s.WriteCSV(io.Discard, "board_celsius", last.Add(-24*time.Hour), last)
	}
}

func BenchmarkSave(b *testing.B) {
	s, _ := filled(b)
	dir := b.TempDir()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Save(dir); err != nil {
			b.Fatal(err)
		}
	}
}
