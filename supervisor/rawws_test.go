package supervisor

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/wire"
)

// rawFrame is one frame a rawClient read, with when it came.
type rawFrame struct {
	op   byte
	data []byte
	at   time.Time
}

// rawClient is a WebSocket client written out by hand, for what
// coder/websocket hides: it reports control frames (pings) as frames,
// and answers each ping with a pong itself.
type rawClient struct {
	t      testing.TB
	nc     net.Conn
	frames chan rawFrame // closed when the connection ends
}

// dialRaw upgrades a connection to url's path and query on ts with a
// fresh key.
func (ts *testSup) dialRaw(t testing.TB, url, origin string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	key := make([]byte, 16)
	rand.Read(key)
	path := url[strings.Index(url[len("ws://"):], "/")+len("ws://"):]
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\nOrigin: %s\r\n\r\n",
		path, ts.addr, base64.StdEncoding.EncodeToString(key), wire.Subprotocol, origin)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	c := &rawClient{t: t, nc: nc, frames: make(chan rawFrame, 1024)}
	go c.read(br)
	return c
}

func (c *rawClient) read(br *bufio.Reader) {
	defer close(c.frames)
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		at := time.Now()
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(br, data); err != nil {
			return
		}
		op := h[0] & 0x0f
		if op == 9 {
			c.write(10, data)
		}
		select {
		case c.frames <- rawFrame{op: op, data: data, at: at}:
		default:
		}
	}
}

// write sends one masked frame.
func (c *rawClient) write(op byte, data []byte) {
	b := []byte{0x80 | op}
	switch {
	case len(data) < 126:
		b = append(b, 0x80|byte(len(data)))
	case len(data) < 1<<16:
		b = append(b, 0x80|126, byte(len(data)>>8), byte(len(data)))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(len(data)))
	}
	var mask [4]byte
	rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, x := range data {
		b = append(b, x^mask[i%4])
	}
	c.nc.Write(b)
}

// next returns the next frame, failing the test after limit.
func (c *rawClient) next(limit time.Duration) (rawFrame, bool) {
	select {
	case f, ok := <-c.frames:
		return f, ok
	case <-time.After(limit):
		c.t.Fatalf("no frame within %v", limit)
		return rawFrame{}, false
	}
}
