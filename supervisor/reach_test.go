package supervisor

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/control/ctlserver"
	"github.com/livecgi/livecgi/proto/wire"
)

// mustCert writes a self-signed certificate for 127.0.0.1 and its key
// into dir and returns their paths and the certificate.
func mustCert(t *testing.T, dir string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile, cert
}

// TestTLS: with tls_cert and tls_key the WebSocket port speaks wss://
// only, the status says so, and a client over TLS still has its send
// buffer measured (the TCP socket under the TLS connection).
func TestTLS(t *testing.T) {
	certFile, keyFile, cert := mustCert(t, t.TempDir())
	ts := startSup(t, func(c *config.Config) { c.TLSCert, c.TLSKey = certFile, keyFile }, "counter")
	if !ts.Status().TLS {
		t.Error("status does not say tls")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tok, _ := control.MintToken(ts.secret, ts.origin(), ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "wss://"+ts.addr+"/live?token="+tok, &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol},
		HTTPHeader:   http.Header{"Origin": {ts.origin()}},
		HTTPClient:   &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
	})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer conn.CloseNow()
	if _, b, err := conn.Read(ctx); err != nil || !bytes.Contains(b, []byte(`"type":"hello"`)) {
		t.Fatalf("first frame %s, %v", b, err)
	}
	// That its send buffer is the TCP socket's: fanout's TestTLSSendBuffer.
	// Plain ws:// on the TLS port fails.
	if _, err := ts.tryDial(ts.url(ts.origin()), ts.origin()); err == nil {
		t.Error("ws:// dial of the TLS port succeeded")
	}
}

// TestTLSBadCert: a missing certificate fails New with the keys' names.
func TestTLSBadCert(t *testing.T) {
	cfg := config.Default()
	cfg.TLSCert, cfg.TLSKey = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	_, err := New(Options{Config: cfg, Secret: []byte("0123456789abcdef")})
	if err == nil || !strings.Contains(err.Error(), "tls_cert, tls_key") {
		t.Errorf("New with a missing cert: %v", err)
	}
}

// TestHandOverServed: a browser's connection that a web server accepted
// and read the request of, passed over the control socket, becomes a
// client like any other (hello, a command); the checks are those of a
// direct upgrade: the token's second use, or from another origin, is
// answered 403 on the passed connection itself.
func TestHandOverServed(t *testing.T) {
	ts := startSup(t, nil, "counter")
	state := filepath.Join(filepath.Dir(ts.dir), "state")
	cln, err := net.Listen("unix", filepath.Join(state, control.ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ctlserver.Control{Status: ts.Status, HandOver: ts.HandOver}.Serve(ctx, cln)

	// The web server: reads each request's head and hands the socket over.
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	handErr := make(chan error, 8)
	go func() {
		for {
			c, err := web.Accept()
			if err != nil {
				return
			}
			var head []byte
			b := make([]byte, 1)
			for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
				if _, err := c.Read(b); err != nil {
					break
				}
				head = append(head, b[0])
			}
			f, _ := c.(*net.TCPConn).File()
			handErr <- control.SendHandOver(state, int(f.Fd()), head, 5*time.Second)
			f.Close()
			c.Close()
		}
	}()
	origin := "http://" + web.Addr().String()
	tok, _ := control.MintToken(ts.secret, origin, ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{User: "u", Role: auth.RoleOperator})
	// The stub rewrites nph-live.cgi?ws&token=T to /live?token=T; this
	// web server passes the request as it came.
	u := "ws://" + web.Addr().String() + "/live?token=" + tok
	c, err := ts.tryDial(u, origin)
	if err != nil {
		t.Fatalf("dial through the hand-over: %v", err)
	}
	if err := <-handErr; err != nil {
		t.Fatalf("hand-over: %v", err)
	}
	c.next("hello", is("hello"))
	online(c, "helper_counter")
	c.send(wire.CommandMsg{Type: "command", ID: "h1", Name: "helper_counter.add", Args: map[string]any{"a": 1}})
	if m := c.next("answer to h1", func(m map[string]any) bool { return m["id"] == "h1" }); m["type"] != "result" || m["ok"] != true {
		t.Errorf("command over a handed-over socket: %v", m)
	}
	if _, err := ts.tryDial(u, origin); err == nil || !strings.Contains(err.Error(), "status 403") {
		t.Errorf("token replayed through the hand-over: %v, want 403", err)
	}
	<-handErr
	tok2, _ := control.MintToken(ts.secret, origin, ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{})
	if _, err := ts.tryDial("ws://"+web.Addr().String()+"/live?token="+tok2, "http://evil.example"); err == nil || !strings.Contains(err.Error(), "status 403") {
		t.Errorf("another origin through the hand-over: %v, want 403", err)
	}
	<-handErr
	// A socket passed with a request that asks for no upgrade.
	tok3, _ := control.MintToken(ts.secret, origin, ts.Status().Epoch, time.Now(), time.Minute, auth.Identity{})
	plain, err := net.Dial("tcp", web.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	fmt.Fprintf(plain, "GET /live?token=%s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\n\r\n", tok3, web.Addr(), origin)
	if err := <-handErr; err != nil {
		t.Fatalf("hand-over of a plain request: %v", err)
	}
	plain.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(plain); !bytes.HasPrefix(b, []byte("HTTP/1.1 426 ")) {
		t.Errorf("a handed-over request without upgrade headers: %q, want 426", b)
	}
	if err := ts.HandOver(nil, []byte("not http\r\n\r\n")); err == nil {
		t.Error("HandOver took a request that is not HTTP")
	}
}
