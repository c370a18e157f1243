package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/brokertest"
)

// BenchmarkFanout measures the hub's fan-out: one op is one reading
// published to an in-process supervisor and received by each of N real
// WebSocket clients on loopback. Rounds do not overlap (the next reading
// is published once every client has the last one), so nothing coalesces
// and msgs/s is what the supervisor delivers with no backlog. allocs/op
// counts the whole process: the clients' reads are in it.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	ts := startSup(b, nil)
	const sensor = "bench.tick_us"
	ts.hub.SetPlugin("bench", &wire.PluginInfo{ID: "bench", State: wire.StateOnline},
		[]wire.Sensor{{ID: sensor, Plugin: "bench", Title: "tick", Unit: "µs", ValueType: wire.ValueNumber, IntervalMS: 10}}, nil, nil)

	var (
		got    atomic.Int64 // readings of the sensor received, all clients
		target atomic.Int64 // got at the end of the current round
		round  = make(chan struct{}, 1)
		wg     sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		wg.Wait()
	}()
	origin := ts.origin()
	for range n {
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		conn, _, err := websocket.Dial(dctx, ts.url(origin), &websocket.DialOptions{
			Subprotocols: []string{wire.Subprotocol},
			HTTPHeader:   http.Header{"Origin": {origin}},
		})
		dcancel()
		if err != nil {
			b.Fatalf("dial: %v", err)
		}
		wg.Go(func() {
			defer conn.CloseNow()
			mark := []byte(`"sensor":"` + sensor + `"`)
			buf := make([]byte, 0, 4096)
			for {
				_, r, err := conn.Reader(ctx)
				if err != nil {
					return
				}
				buf = buf[:0]
				for {
					if len(buf) == cap(buf) {
						buf = append(buf, 0)[:len(buf)]
					}
					k, err := r.Read(buf[len(buf):cap(buf)])
					buf = buf[:len(buf)+k]
					if err == io.EOF {
						break
					}
					if err != nil {
						return
					}
				}
				// Readings only: the snapshot right after hello holds
				// the sensor too.
				if bytes.HasPrefix(buf, []byte(`{"type":"reading"`)) && bytes.Contains(buf, mark) {
					if got.Add(1) == target.Load() {
						round <- struct{}{}
					}
				}
			}
		})
	}
	waitFor(b, "every client attached", func() bool { return ts.hub.ClientCount() == n })

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		target.Store(int64(n) * int64(i+1))
		if !ts.hub.Publish(wire.Reading{Sensor: sensor, Value: float64(time.Now().UnixMicro()), T: time.Now().UnixMilli()}) {
			b.Fatal("sensor unknown to the hub")
		}
		select {
		case <-round:
		case <-time.After(30 * time.Second):
			b.Fatalf("round %d: %d of %d readings after 30s", i, got.Load(), target.Load())
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(got.Load())/time.Since(start).Seconds(), "msgs/s")
	if dir := os.Getenv("LIVECGI_HEAP_PROFILE_DIR"); dir != "" {
		writeHeapProfile(b, filepath.Join(dir, fmt.Sprintf("heap-%d.pprof", n)))
	}
}

// writeHeapProfile writes the live heap (after a GC) while the clients
// are still connected: where each client's memory goes. The clients share
// the process; pprof -focus separates the supervisor's side, e.g.
//
//	LIVECGI_HEAP_PROFILE_DIR=/tmp go test -run '^$' -bench 'Fanout/N=1000' ./supervisor/
//	go tool pprof -sample_index=inuse_space -top /tmp/heap-1000.pprof
func writeHeapProfile(b *testing.B, path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.Logf("heap profile in %s; heap in use %d KB, stacks %d KB, %d goroutines", path, ms.HeapInuse>>10, ms.StackInuse>>10, runtime.NumGoroutine())
}

// BenchmarkBridge measures the broker bridge: one op is one reading
// published to an in-process supervisor and seen by a subscriber
// (mosquitto_sub) through a real Mosquitto, rounds not overlapping. ns/op
// is that round trip; cpu-µs/op is this process's CPU per reading (the
// hub, the bridge and paho, and the decoding of mosquitto_sub's lines);
// allocs/op counts the same.
func BenchmarkBridge(b *testing.B) {
	br := brokertest.Start(b, brokertest.Options{})
	ts := startSup(b, withBridge(br, "bench", nil))
	const sensor = "bench.tick_us"
	ts.hub.SetPlugin("bench", &wire.PluginInfo{ID: "bench", State: wire.StateOnline},
		[]wire.Sensor{{ID: sensor, Plugin: "bench", Title: "tick", Unit: "µs", ValueType: wire.ValueNumber, IntervalMS: 10}}, nil, nil)
	sub := br.Subscribe(b, []string{"livecgi/bench/" + sensor})
	waitFor(b, "the bridge attached", func() bool { return ts.hub.ClientCount() == 1 })
	at := 0
	b.ReportAllocs()
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	for i := 0; b.Loop(); i++ {
		v := strconv.Itoa(i)
		if !ts.hub.Publish(wire.Reading{Sensor: sensor, Value: float64(i), T: time.Now().UnixMilli()}) {
			b.Fatal("sensor unknown to the hub")
		}
		_, at = sub.WaitFor(30*time.Second, at, "reading "+v, func(m brokertest.Message) bool { return m.Payload == v })
		at++
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}
