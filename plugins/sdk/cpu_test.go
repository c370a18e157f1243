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
// wakeups included; plugin-runs/reading counts the times its threads were
// put on a CPU; recv-µs/reading is this process's CPU, the receiving side.
//
//	go test -run '^$' -bench StreamCPU -benchtime 3s ./plugins/sdk/
func BenchmarkStreamCPU(b *testing.B) {
	bin := sdktest.Build(b, "../bench", "")
	for _, hz := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("hz=%d", hz), func(b *testing.B) {
			streamCPU(b, bin, hz/10, "LIVECGI_BENCH_HZ="+strconv.Itoa(hz))
		})
	}
}

// BenchmarkStreamCPUSensors is BenchmarkStreamCPU for plugins whose
// sensors share an interval: the bench plugin with 8 sensors every 100 ms,
// and the system plugin on its fixtures (9 sensors every second, 10 every
// 5 s).
//
//	go test -run '^$' -bench StreamCPUSensors -benchtime 10s ./plugins/sdk/
func BenchmarkStreamCPUSensors(b *testing.B) {
	b.Run("bench/sensors=8/every=100ms", func(b *testing.B) {
		streamCPU(b, sdktest.Build(b, "../bench", ""), 8, "LIVECGI_BENCH_HZ=80", "LIVECGI_BENCH_SENSORS=8")
	})
	b.Run("system", func(b *testing.B) {
		procRoot, _ := filepath.Abs("../system/testdata/proc")
		sysRoot, _ := filepath.Abs("../system/testdata/sys")
		streamCPU(b, sdktest.BuildBuiltin(b, "system", ""), 19, proto.EnvProcRoot+"="+procRoot, proto.EnvSysRoot+"="+sysRoot)
	})
}

// streamCPU starts bin with env, streams all its sensors, skips the first
// warm readings (those read at once) and reports the CPU per reading of
// the plugin and of this process.
func streamCPU(b *testing.B, bin string, warm int, env ...string) {
	before := childPIDs(b)
	c, _ := sdktest.Start(b, bin, env...)
	pid := newChild(b, before)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.Stream(ctx, &proto.StreamRequest{})
	if err != nil {
		b.Fatal(err)
	}
	for range warm {
		if _, err := st.Recv(); err != nil {
			b.Fatal(err)
		}
	}
	start, runs := cpuNanos(b, pid)
	recv, _ := cpuNanos(b, os.Getpid())
	b.ResetTimer()
	for b.Loop() {
		if _, err := st.Recv(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	end, runsEnd := cpuNanos(b, pid)
	recvEnd, _ := cpuNanos(b, os.Getpid())
	b.ReportMetric(float64(end-start)/1e3/float64(b.N), "plugin-µs/reading")
	b.ReportMetric(float64(runsEnd-runs)/float64(b.N), "plugin-runs/reading")
	b.ReportMetric(float64(recvEnd-recv)/1e3/float64(b.N), "recv-µs/reading")
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

// cpuNanos returns the CPU time of every thread of pid so far, and how
// many times they were put on a CPU.
func cpuNanos(tb testing.TB, pid int) (nanos, runs int64) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(stats) == 0 {
		tb.Fatalf("no schedstat for %d", pid)
	}
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue // a thread that ended
		}
		f := strings.Fields(string(b))
		if len(f) == 3 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			r, _ := strconv.ParseInt(f[2], 10, 64)
			nanos, runs = nanos+n, runs+r
		}
	}
	return nanos, runs
}
