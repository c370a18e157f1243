package sdk_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto"
)

// BenchmarkStreamCPU runs the bench plugin as a real go-plugin process at
// several rates and receives its stream as livecgid does: one op is one
// reading received; plugin-µs/reading is the plugin process's CPU time
// (all its threads, from /proc schedstat) per reading, the runtime's idle
// wakeups included.
//
//	go test -run '^$' -bench StreamCPU -benchtime 3s ./plugins/sdk/
func BenchmarkStreamCPU(b *testing.B) {
	bin := sdktest.Build(b, "../bench", "")
	for _, hz := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("hz=%d", hz), func(b *testing.B) {
			before := childPIDs(b)
			c, _ := sdktest.Start(b, bin, "LIVECGI_BENCH_HZ="+strconv.Itoa(hz))
			pid := newChild(b, before)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := c.Stream(ctx, &proto.StreamRequest{})
			if err != nil {
				b.Fatal(err)
			}
			for range hz / 10 { // the first tenth of a second: the stream is up
				if _, err := st.Recv(); err != nil {
					b.Fatal(err)
				}
			}
			start := cpuNanos(b, pid)
			b.ResetTimer()
			for b.Loop() {
				if _, err := st.Recv(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuNanos(b, pid)-start)/1e3/float64(b.N), "plugin-µs/reading")
		})
	}
}

// childPIDs returns the processes this one started.
func childPIDs(tb testing.TB) map[int]bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	out := map[int]bool{}
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// newChild returns the one child process not in before.
func newChild(tb testing.TB, before map[int]bool) int {
	var pid int
	for p := range childPIDs(tb) {
		if !before[p] {
			if pid != 0 {
				tb.Fatal("more than one new child process")
			}
			pid = p
		}
	}
	if pid == 0 {
		tb.Fatal("no new child process")
	}
	return pid
}

// cpuNanos returns the CPU time of every thread of pid so far.
func cpuNanos(tb testing.TB, pid int) int64 {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(stats) == 0 {
		tb.Fatalf("no schedstat for %d", pid)
	}
	var sum int64
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue // a thread that ended
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return sum
}
