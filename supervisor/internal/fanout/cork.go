package fanout

import (
	"net"
	"sync"
)

// Cork sits under a client's WebSocket writer. While corked, the frames
// the WebSocket flushes collect in a writer's batch buffer and go out in
// one write at uncork: one system call per client per flush, not one per
// frame. Uncorked (pings, closes), it writes through. mu guards buf; the
// batch buffer belongs to the writer that corked.
type Cork struct {
	nc  net.Conn
	mu  sync.Mutex
	buf *[]byte // non-nil while corked
}

// NewCork returns an uncorked writer on nc.
func NewCork(nc net.Conn) *Cork { return &Cork{nc: nc} }

func (w *Cork) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf != nil {
		*w.buf = append(*w.buf, p...)
		return len(p), nil
	}
	return w.nc.Write(p)
}

// cork starts collecting into buf (emptied first).
func (w *Cork) cork(buf *[]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	*buf = (*buf)[:0]
	w.buf = buf
}

// uncork writes what was collected and stops collecting.
func (w *Cork) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.buf
	w.buf = nil
	if len(*b) == 0 {
		return nil
	}
	_, err := w.nc.Write(*b)
	return err
}
