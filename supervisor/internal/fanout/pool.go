package fanout

import (
	"runtime"
	"time"
)

// Start runs the hub's writers: each takes clients from the work queue
// and chunks of woken idle clients, and flushes them one at a time.
//
// A writer yields after each client. Writes to sockets do not block, so
// under overload the writers would otherwise keep every core from the
// scheduler for a whole time slice (10 ms), and the goroutines that take
// readings in from the plugins would wait behind them: readings would
// back up upstream and arrive late (seconds at 1,000 clients × 1,000
// readings a second), instead of coalescing here.
func (h *Hub) Start() {
	for range h.writers {
		h.wg.Go(h.writer)
	}
}

// Stop closes every client, ends the writers once they have drained
// their queues and returns. Every Publish must have returned before it
// is called: one still waking idle clients would send on a closed channel.
func (h *Hub) Stop() {
	for _, c := range h.Shutdown() {
		c.Shut()
	}
	close(h.work)
	close(h.chunks)
	h.wg.Wait()
}

func (h *Hub) writer() {
	var scratch []*frame
	var batch []byte
	work, chunks := h.work, h.chunks
	for work != nil || chunks != nil {
		select {
		case c, ok := <-work:
			if !ok {
				work = nil
				continue
			}
			c.flush(time.Duration(h.writeTimeout.Load()), &scratch, &batch)
			runtime.Gosched()
		case cs, ok := <-chunks:
			if !ok {
				chunks = nil
				continue
			}
			for _, c := range cs {
				if c.claim() {
					c.flush(time.Duration(h.writeTimeout.Load()), &scratch, &batch)
					runtime.Gosched()
				}
			}
		}
	}
}
