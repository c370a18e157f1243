// Command pollcgi is the CGI of the long-polling rig: each request waits
// for the next reading of the bench sensor (the next tick of the
// wall-clock grid, see package tick) and answers it as JSON, the way
// devices that only have CGI deliver "live" values today. The rate is the
// query string's hz (default 10): poll?hz=100.
package main

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/livecgi/livecgi/cmd/livecgi-bench/tick"
)

func main() {
	hz := 10.0
	if q, err := url.ParseQuery(os.Getenv("QUERY_STRING")); err == nil && q.Get("hz") != "" {
		hz, _ = strconv.ParseFloat(q.Get("hz"), 64)
	}
	period, err := tick.Period(hz)
	if err != nil {
		fmt.Printf("Status: 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n%v\n", err)
		return
	}
	k := tick.Wait(period)
	b := []byte("Content-Type: application/json\r\nCache-Control: no-store\r\n\r\n")
	os.Stdout.Write(tick.Frame(b, k, time.Now()))
}
