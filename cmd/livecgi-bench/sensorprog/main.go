// Command sensorprog is the per-connection sensor program of the websocketd
// rig: websocketd starts one per WebSocket client and sends each line it
// prints as a message. It prints a bench reading (see package tick) on
// every tick of the wall-clock grid until stdout fails, which is how it
// learns its client left.
//
//	websocketd --port=8080 sensorprog -hz 10
//
// With -value it prints only the value (the send time in Unix µs), one a
// line: the same program as a stream of the exec plugin.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/livecgi/livecgi/cmd/livecgi-bench/tick"
)

func main() {
	hz := flag.Float64("hz", 10, "readings per second")
	value := flag.Bool("value", false, "print only the value (Unix µs), for the exec plugin")
	flag.Parse()
	period, err := tick.Period(*hz)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sensorprog:", err)
		os.Exit(2)
	}
	var b []byte
	for {
		k := tick.Wait(period)
		if *value {
			b = append(strconv.AppendInt(b[:0], time.Now().UnixMicro(), 10), '\n')
		} else {
			b = append(tick.Frame(b[:0], k, time.Now()), '\n')
		}
		if _, err := os.Stdout.Write(b); err != nil {
			os.Exit(0)
		}
	}
}
