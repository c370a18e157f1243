package supervisor

import "github.com/livecgi/livecgi/proto/wire"

// alarms evaluates the alarm.<name> rules on every reading
// (internal/alarm).
type alarms struct{}

// observe feeds one reading to the alarms.
func (a *alarms) observe(r wire.Reading) {}
