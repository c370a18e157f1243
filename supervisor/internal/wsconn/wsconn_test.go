package wsconn_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/livecgi/livecgi/supervisor/brokertest"
	"github.com/livecgi/livecgi/supervisor/internal/wsconn"
)

// TestMosquitto publishes a message to a real Mosquitto over WebSockets,
// plain and over TLS, and receives it back through a subscription.
func TestMosquitto(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    brokertest.Options
	}{{"ws", brokertest.Options{WebSockets: true}}, {"wss", brokertest.Options{WebSockets: true, TLS: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			b := brokertest.Start(t, tc.o)
			u, err := url.Parse(b.URL)
			if err != nil {
				t.Fatal(err)
			}
			var tc *tls.Config
			if b.CA != "" {
				pem, err := os.ReadFile(b.CA)
				if err != nil {
					t.Fatal(err)
				}
				tc = &tls.Config{RootCAs: x509.NewCertPool()}
				tc.RootCAs.AppendCertsFromPEM(pem)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := wsconn.Dial(ctx, u, wsconn.Options{TLS: tc, Subprotocol: "mqtt"})
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan *paho.Publish, 1)
			cli := paho.NewClient(paho.ClientConfig{
				ClientID: "wsconn-test", Conn: packets.NewThreadSafeConn(conn),
				OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
					got <- r.Packet
					return true, nil
				}},
			})
			if _, err := cli.Connect(ctx, &paho.Connect{ClientID: "wsconn-test", KeepAlive: 30, CleanStart: true}); err != nil {
				t.Fatal(err)
			}
			defer cli.Disconnect(&paho.Disconnect{})
			if _, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "wsconn/#", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			payload := bytes.Repeat([]byte("reading "), 20000) // 160 kB: a 64-bit frame length both ways
			if _, err := cli.Publish(ctx, &paho.Publish{Topic: "wsconn/x", QoS: 1, Payload: payload}); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-got:
				if p.Topic != "wsconn/x" || !bytes.Equal(p.Payload, payload) {
					t.Fatalf("got %s with %d bytes, want wsconn/x with %d", p.Topic, len(p.Payload), len(payload))
				}
			case <-ctx.Done():
				t.Fatal("no message back")
			}
		})
	}
}

// server is a coder/websocket server; handle runs for each connection
// while, with read, a reader sends what the client sends to got (a
// []byte per message, then the error that ended reading).
type server struct {
	*httptest.Server
	got chan any
}

func newServer(t *testing.T, read bool, handle func(ctx context.Context, c *websocket.Conn)) *server {
	s := &server{got: make(chan any, 1000)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"mqtt"}})
		if err != nil {
			t.Error(err)
			return
		}
		c.SetReadLimit(1 << 20)
		go func() {
			if !read {
				return
			}
			for {
				_, p, err := c.Read(context.Background())
				if err != nil {
					s.got <- err
					return
				}
				s.got <- p
			}
		}()
		handle(r.Context(), c)
	}))
	t.Cleanup(s.Close)
	return s
}

// dial connects to s; max is Options.MaxPayload.
func (s *server) dial(t *testing.T, max int64) net.Conn {
	t.Helper()
	u, _ := url.Parse(strings.Replace(s.URL, "http", "ws", 1))
	c, err := wsconn.Dial(context.Background(), u, wsconn.Options{Subprotocol: "mqtt", MaxPayload: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closed waits for the server's reader to end and checks the close code.
func (s *server) closed(t *testing.T, want websocket.StatusCode) {
	t.Helper()
	for v := range s.got {
		if err, ok := v.(error); ok {
			if websocket.CloseStatus(err) != want {
				t.Fatalf("server read: %v, want close %d", err, want)
			}
			return
		}
	}
}

// TestFragments reads a message in fragments, with a ping among them,
// then a message over 64 KiB, and sends one of that size.
func TestFragments(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	s := newServer(t, true, func(ctx context.Context, c *websocket.Conn) {
		w, err := c.Writer(ctx, websocket.MessageBinary)
		if err == nil {
			w.Write([]byte("ab"))
			err = c.Ping(ctx) // returns when the client has answered
			w.Write([]byte("cd"))
			w.Write(nil)
			w.Close()
		}
		if err == nil {
			err = c.Write(ctx, websocket.MessageBinary, big)
		}
		if err != nil {
			t.Error(err)
		}
	})
	c := s.dial(t, 0)
	buf := make([]byte, 4+len(big))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf[:4]) != "abcd" || !bytes.Equal(buf[4:], big) {
		t.Fatalf("read %q…, want abcd and %d bytes", buf[:8], len(big))
	}
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	if p := <-s.got; !bytes.Equal(p.([]byte), big) {
		t.Fatalf("server got %d bytes, want %d", len(p.([]byte)), len(big))
	}
	c.Close()
	s.closed(t, websocket.StatusNormalClosure)
}

// TestClose: the server's close frame ends Read with io.EOF, and the
// client answers it with the same code (without a reader of its own, the
// server's Close fails otherwise).
func TestClose(t *testing.T) {
	done := make(chan error, 1)
	s := newServer(t, false, func(ctx context.Context, c *websocket.Conn) {
		c.Write(ctx, websocket.MessageBinary, []byte("bye"))
		done <- c.Close(websocket.StatusNormalClosure, "")
	})
	c := s.dial(t, 0)
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "bye" {
		t.Fatalf("read %q, %v; want bye and io.EOF", b, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
}

// TestRefuse: a text frame is closed with 1003, a frame over the limit
// with 1009, and Read fails.
func TestRefuse(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		size int
		code websocket.StatusCode
		err  string
	}{
		{"text", websocket.MessageText, 10, websocket.StatusUnsupportedData, "text frame"},
		{"big", websocket.MessageBinary, 1001, websocket.StatusMessageTooBig, "frame of 1001 bytes, over 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, true, func(ctx context.Context, c *websocket.Conn) {
				c.Write(ctx, tc.typ, make([]byte, tc.size))
				<-ctx.Done()
			})
			c := s.dial(t, 1000)
			if _, err := c.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("read: %v, want %s", err, tc.err)
			}
			s.closed(t, tc.code)
		})
	}
}

// TestConcurrent writes while the server pings; every ping is answered
// and every message arrives.
func TestConcurrent(t *testing.T) {
	const n = 200
	pinged := make(chan error, 1)
	s := newServer(t, true, func(ctx context.Context, c *websocket.Conn) {
		var err error
		for i := 0; i < n && err == nil; i++ {
			err = c.Ping(ctx)
		}
		pinged <- err
	})
	c := s.dial(t, 0)
	go io.Copy(io.Discard, c) // answers the pings
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range n {
				if _, err := c.Write([]byte{byte(w), byte(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := <-pinged; err != nil {
		t.Fatal(err)
	}
	for range 2 * n {
		if p, ok := (<-s.got).([]byte); !ok || len(p) != 2 {
			t.Fatalf("server got %v, want a message of 2 bytes", p)
		}
	}
}

// TestNoSubprotocol: a server that does not choose the subprotocol asked
// for is refused.
func TestNoSubprotocol(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := websocket.Accept(w, r, nil); err == nil {
			c.CloseNow()
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(strings.Replace(srv.URL, "http", "ws", 1))
	_, err := wsconn.Dial(context.Background(), u, wsconn.Options{Subprotocol: "mqtt"})
	if err == nil || !strings.Contains(err.Error(), `subprotocol "", want "mqtt"`) {
		t.Fatalf("dial: %v, want a subprotocol error", err)
	}
}

// raw serves one connection: it reads the upgrade request and writes
// what answer returns for its key.
func raw(t *testing.T, answer func(key string) string) *url.URL {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			t.Error(err)
			return
		}
		if a := answer(r.Header.Get("Sec-WebSocket-Key")); a != "" {
			io.WriteString(c, a)
		}
		io.Copy(io.Discard, c)
	}()
	return &url.URL{Scheme: "ws", Host: ln.Addr().String(), Path: "/mqtt"}
}

func accept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestHandshake: answers other than a proper 101 are refused; bytes
// that come with the 101 are read; ctx ends a handshake.
func TestHandshake(t *testing.T) {
	const upgrade = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
	for _, tc := range []struct {
		name   string
		answer func(key string) string
		err    string
	}{
		{"200", func(string) string { return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" }, `status "HTTP/1.1 200 OK", want 101`},
		{"accept", func(key string) string { return upgrade + accept(key+"x") + "\r\n\r\n" }, "Sec-WebSocket-Accept"},
		{"good", func(key string) string { return upgrade + accept(key) + "\r\n\r\n\x82\x05hello" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := wsconn.Dial(context.Background(), raw(t, tc.answer), wsconn.Options{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("dial: %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			b := make([]byte, 5)
			if _, err := io.ReadFull(c, b); err != nil || string(b) != "hello" {
				t.Fatalf("read %q, %v; want hello", b, err)
			}
		})
	}
	t.Run("ctx", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		u := raw(t, func(string) string { cancel(); return "" })
		if _, err := wsconn.Dial(ctx, u, wsconn.Options{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("dial: %v, want context.Canceled", err)
		}
	})
}
