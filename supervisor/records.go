package supervisor

import "github.com/livecgi/livecgi/proto/wire"

// records keeps the record.<id> sensors' history (internal/history).
type records struct{}

// observe records one reading.
func (h *records) observe(r wire.Reading) {}
