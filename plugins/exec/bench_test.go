package exec

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPeriodic compares one periodic run of a small C program by the
// exec plugin (fork, exec, first line, parse, kill of its group, the
// sensor's update) with a bare fork+exec+read of the same program
// (os/exec's Output and a parse). Budget: exec ≤ 2× bare. cpu-ns/op is
// the CPU time of this process and its children per run.
func BenchmarkPeriodic(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "temp")
	mustCC(b, bin, `#include <stdio.h>
int main(void) { printf("21.5\n"); return 0; }`)
	b.Run("bare", func(b *testing.B) {
		cpu := cpuTime()
		for b.Loop() {
			out, err := exec.Command(bin).Output()
			if err != nil {
				b.Fatal(err)
			}
			line, _, _ := strings.Cut(string(out), "\n")
			if v, err := strconv.ParseFloat(line, 64); err != nil || v != 21.5 {
				b.Fatalf("read %q", out)
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("exec", func(b *testing.B) {
		s, err := parseConf(dir, "temp", []byte("run = ./temp\ninterval = 1s\n"))
		if err != nil {
			b.Fatal(err)
		}
		p := newProgram(s, newRunner(dir), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
		sl := p.slots[""]
		ctx := context.Background()
		cpu := cpuTime()
		for b.Loop() {
			p.runOnce(ctx)
			if sl.err != "" || sl.val.Value() != 21.5 {
				b.Fatalf("run: %q %v", sl.err, sl.val.Value())
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	})
}

// cpuTime is the user and system CPU time of this process and its
// waited-for children.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	ns := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return ns(self.Utime) + ns(self.Stime) + ns(kids.Utime) + ns(kids.Stime)
}
