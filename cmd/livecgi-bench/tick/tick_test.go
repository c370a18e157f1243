package tick

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/wire"
)

func TestNext(t *testing.T) {
	p, err := Period(10)
	if err != nil || p != 100*time.Millisecond {
		t.Fatalf("Period(10) = %v, %v", p, err)
	}
	for _, tc := range []struct {
		now   time.Time
		wantK int64
	}{
		{time.Unix(100, 0), 1001},                          // on a tick: the next one
		{time.Unix(100, 1), 1001},                          // just after
		{time.Unix(100, int64(99*time.Millisecond)), 1001}, // just before
	} {
		k, at := Next(tc.now, p)
		if k != tc.wantK || !at.Equal(time.Unix(0, k*int64(p))) || !at.After(tc.now) {
			t.Errorf("Next(%v) = %d, %v; want %d", tc.now, k, at, tc.wantK)
		}
	}
	for _, hz := range []float64{0, -1, 1e6} {
		if _, err := Period(hz); err == nil {
			t.Errorf("Period(%g): no error", hz)
		}
	}
}

func TestFrameIsAWireReading(t *testing.T) {
	now := time.UnixMicro(1_700_000_000_123_456)
	b := Frame(nil, 42, now)
	var r wire.Reading
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if r.Type != wire.TypeReading || r.Sensor != Sensor || r.Seq != 42 || r.T != now.UnixMilli() || r.Value.(float64) != float64(now.UnixMicro()) || r.Unit != "µs" {
		t.Errorf("got %+v from %s", r, b)
	}
}
