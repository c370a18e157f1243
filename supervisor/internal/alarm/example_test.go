package alarm_test

import (
	"fmt"
	"time"

	"github.com/livecgi/livecgi/supervisor/internal/alarm"
)

// An alarm with a `for` window and a clear value, fed readings on a clock
// the example moves by hand; livecgid uses time.Now, and a timer set to
// Next that calls Tick.
func Example() {
	rule, err := alarm.Parse("hot", "system.board_temp above 70 for 1m clear 65 critical")
	if err != nil {
		panic(err)
	}
	now := time.Date(2025, 1, 2, 3, 4, 0, 0, time.UTC)
	e, _ := alarm.New([]alarm.Rule{rule}, func() time.Time { return now })
	e.SetSensor("system.board_temp", "celsius", 30*time.Second)

	show := func(trs []alarm.Transition) {
		for _, tr := range trs {
			fmt.Printf("%s %s: %s -> %s: %s\n", tr.Since.Format("15:04:05"), tr.Name, tr.Previous, tr.State.State, tr.Message)
		}
	}
	for _, v := range []float64{72, 75, 69, 66, 64} { // one reading every 30 s
		show(e.Observe("system.board_temp", v, true))
		now = now.Add(30 * time.Second)
		for t := e.Next(); !t.IsZero() && !t.After(now); t = e.Next() {
			now0 := now
			now = t
			show(e.Tick())
			now = now0
		}
	}
	// Output:
	// 03:05:00 hot: ok -> critical: system.board_temp 75 celsius above 70 for 1m0s
	// 03:06:00 hot: critical -> ok: system.board_temp 64 celsius not above 65
}
