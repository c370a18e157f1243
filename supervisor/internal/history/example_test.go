package history_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/livecgi/livecgi/supervisor/internal/history"
)

func Example() {
	st := history.New(history.DefaultMemoryKB)
	if err := st.Add("board_celsius", 10*time.Second); err != nil {
		fmt.Println(err) // over history_memory_kb: log it, the sensor is not recorded
	}
	start := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range 12 { // two minutes of readings
		st.Record("board_celsius", start.Add(time.Duration(i)*10*time.Second), 40+float64(i)/4)
	}
	// A history request for those two minutes in at most 3 points: a
	// point a minute (12:00, 12:01; none for 12:02).
	pts, _ := st.Query("board_celsius", start, start.Add(2*time.Minute), 3)
	b, _ := json.Marshal(pts)
	fmt.Println(string(b))
	st.WriteCSV(os.Stdout, "board_celsius", start, start.Add(20*time.Second))
	// Output:
	// [[1748779200000,40,40.625,41.25],[1748779260000,41.5,42.125,42.75]]
	// time,min,avg,max
	// 2025-06-01T12:00:00Z,40,40,40
	// 2025-06-01T12:00:10Z,40.25,40.25,40.25
	// 2025-06-01T12:00:20Z,40.5,40.5,40.5
}

// The caller owns persistence: load at start (after adding the sensors),
// save at most every history_sync while something changed, and once more
// on a clean stop.
func ExampleStore_Save() {
	run := func(ctx context.Context, st *history.Store, dir string, every time.Duration, log *slog.Logger) {
		if err := st.Load(dir, time.Now()); err != nil {
			log.Error("history not loaded, starting empty", "err", err)
		}
		tick := time.NewTicker(every) // history_sync, 15 min by default
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-ctx.Done():
				if err := st.Save(dir); err != nil {
					log.Error("history not saved", "err", err)
				}
				return
			}
			if st.Dirty() {
				if err := st.Save(dir); err != nil {
					log.Error("history not saved", "err", err)
				}
			}
		}
	}
	_ = run
}
