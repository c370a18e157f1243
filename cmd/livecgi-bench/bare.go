package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/cmd/livecgi-bench/tick"
)

// Bare is the reference broadcast server: coder/websocket with no plugin
// hop, no tokens and no coalescing, one writer goroutine per client (the
// library's chat example's pattern). One producer ticks at Hz and encodes
// each reading once; every client has a small buffered queue, and a
// reading that finds a client's queue full is dropped for that client
// (counted) so a slow client never slows the others.
type Bare struct {
	Hz    float64
	Queue int // per client; default 16

	mu      sync.Mutex
	clients map[chan []byte]struct{}
	dropped atomic.Uint64
}

// Serve accepts WebSocket clients on ln (any path) and broadcasts until
// ctx ends.
func (b *Bare) Serve(ctx context.Context, ln net.Listener) error {
	period, err := tick.Period(b.Hz)
	if err != nil {
		return err
	}
	if b.Queue <= 0 {
		b.Queue = 16
	}
	b.clients = map[chan []byte]struct{}{}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go b.produce(ctx, period)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (b *Bare) produce(ctx context.Context, period time.Duration) {
	k, at := tick.Next(time.Now(), period)
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		frame := tick.Frame(nil, k, time.Now())
		b.mu.Lock()
		for q := range b.clients {
			select {
			case q <- frame:
			default:
				b.dropped.Add(1)
			}
		}
		b.mu.Unlock()
		// Catch up on the grid rather than drift; skipped ticks are lost
		// like a late ticker's.
		k, at = tick.Next(time.Now(), period)
		t.Reset(time.Until(at))
	}
}

// ServeHTTP upgrades and writes the client's queue until it fails.
func (b *Bare) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx := conn.CloseRead(r.Context())
	q := make(chan []byte, b.Queue)
	b.mu.Lock()
	b.clients[q] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.clients, q)
		b.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-q:
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := conn.Write(wctx, websocket.MessageText, f)
			cancel()
			if err != nil {
				return
			}
		}
	}
}

// String describes the server for its log line.
func (b *Bare) String() string {
	return fmt.Sprintf("bare broadcast at %g Hz, queue %d", b.Hz, b.Queue)
}
