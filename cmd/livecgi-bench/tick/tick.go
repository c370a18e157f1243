// Package tick is the benchmark sensor that the comparison rigs without a
// livecgi plugin share: the bare broadcast server, the websocketd sensor
// program and the long-poll CGI. Readings fall on a wall-clock grid (tick
// k at k/hz seconds after the Unix epoch), so independent processes agree
// on when "the next reading" is, and each frame has the shape of a livecgi
// wire.Reading whose value is its send time in Unix microseconds.
package tick

import (
	"fmt"
	"strconv"
	"time"
)

// Sensor is the id the rigs give their one sensor, as livecgi would name
// the bench plugin's first sensor.
const Sensor = "bench.tick_us"

// Period returns the time between readings at hz, an error for a rate
// outside (0, 100000].
func Period(hz float64) (time.Duration, error) {
	if !(hz > 0 && hz <= 100000) {
		return 0, fmt.Errorf("rate %g Hz: want (0, 100000]", hz)
	}
	return time.Duration(float64(time.Second) / hz), nil
}

// Next returns the index and time of the first tick strictly after now.
func Next(now time.Time, period time.Duration) (k int64, at time.Time) {
	k = now.UnixNano()/int64(period) + 1
	return k, time.Unix(0, k*int64(period))
}

// Wait sleeps until the first tick after now and returns its index.
func Wait(period time.Duration) int64 {
	k, at := Next(time.Now(), period)
	time.Sleep(time.Until(at))
	return k
}

// Frame appends the reading with sequence seq, sent now, to b: JSON as
// livecgi encodes a wire.Reading.
func Frame(b []byte, seq int64, now time.Time) []byte {
	b = append(b, `{"type":"reading","sensor":"`+Sensor+`","value":`...)
	b = strconv.AppendInt(b, now.UnixMicro(), 10)
	b = append(b, `,"unit":"µs","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, now.UnixMilli(), 10)
	return append(b, '}')
}
