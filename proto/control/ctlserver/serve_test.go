package ctlserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// TestProbe: control.Probe, the stub's client, reads every field of the
// status that Serve writes.
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	if _, err := control.Probe(context.Background(), dir); err == nil {
		t.Fatal("probe with nobody listening succeeded")
	}
	ln, err := net.Listen("unix", filepath.Join(dir, control.ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	want := control.Status{PID: 42, Port: 8081, Version: `v1.2 "x" é`, Epoch: "0a1b", Clients: 3, TLS: true,
		ConfigSum: "0123abcd", ConfigError: "livecgi.conf:2: nope: unknown key", Restart: "listen"}
	go Serve(ctx, ln, func() control.Status { return want })
	st, err := control.Probe(context.Background(), dir)
	if err != nil || st != want {
		t.Fatalf("probe = %+v, %v; want %+v", st, err, want)
	}
}

// TestRequests: control.Poll and control.Command, the stub's client,
// against Serve's handlers: the requests decode strictly (DecodeRequest),
// a command's frame follows its line, and answers come back whole.
func TestRequests(t *testing.T) {
	dir := t.TempDir()
	since := uint64(7)
	poll := control.PollRequest{Session: "s1", Since: &since, Origin: "http://h", Remote: "10.0.0.1"}
	cmd := control.CommandRequest{Session: "s1", Origin: "http://h", Len: 5}
	if _, _, err := control.Poll(dir, poll, time.Second); !errors.Is(err, control.ErrNotRunning) {
		t.Fatalf("poll with nobody listening: %v, want ErrNotRunning", err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, control.ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	big := bytes.Repeat([]byte("x"), 1<<20)
	go Serve(ctx, ln, func() control.Status { return control.Status{} },
		Handler{Kind: control.KindPoll, Timeout: func() time.Duration { return 5 * time.Second }, Serve: func(_ context.Context, arg []byte, _ io.Reader) Answer {
			var got control.PollRequest
			if err := DecodeRequest(arg, &got); err != nil {
				return ErrorAnswer(400, control.ErrCodeBad, err.Error())
			}
			if got.Session != poll.Session || got.Since == nil || *got.Since != since || got.Origin != poll.Origin || got.Remote != poll.Remote {
				return ErrorAnswer(400, control.ErrCodeBad, fmt.Sprintf("got %+v", got))
			}
			return Answer{Status: 200, Body: big}
		}},
		Handler{Kind: control.KindCommand, Timeout: func() time.Duration { return 5 * time.Second }, Serve: func(_ context.Context, arg []byte, rest io.Reader) Answer {
			var got control.CommandRequest
			if err := DecodeRequest(arg, &got); err != nil {
				return ErrorAnswer(400, control.ErrCodeBad, err.Error())
			}
			frame := make([]byte, got.Len)
			if _, err := io.ReadFull(rest, frame); err != nil || got != cmd {
				return ErrorAnswer(400, control.ErrCodeBad, fmt.Sprintf("got %+v %v", got, err))
			}
			return ErrorAnswer(410, control.ErrCodeSession, string(frame))
		}},
	)
	status, body, err := control.Poll(dir, poll, 5*time.Second)
	if err != nil || status != 200 || !bytes.Equal(body, big) {
		t.Errorf("poll: %d, %d bytes %.80q, %v", status, len(body), body, err)
	}
	status, body, err = control.Command(dir, cmd, []byte("hello"), 5*time.Second)
	if err != nil || status != 410 || string(body) != `{"error":"session_expired","reason":"hello"}`+"\n" {
		t.Errorf("command: %d %q %v", status, body, err)
	}
}

// failingListener fails its first accepts with errs, then accepts from
// the listener under it.
type failingListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", errno)}
}

// TestServeShortage: a shortage of descriptors, buffers or memory
// is waited out; any other accept error ends Serve.
func TestServeShortage(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, control.ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln, errs: []error{
		acceptErr(syscall.EMFILE), acceptErr(syscall.ENFILE), acceptErr(syscall.ENOBUFS),
		acceptErr(syscall.ENOMEM), acceptErr(syscall.ECONNABORTED),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, fl, func() control.Status { return control.Status{PID: 42, Port: 8081} })
	}()
	if st, err := control.Probe(context.Background(), dir); err != nil || st.PID != 42 {
		t.Fatalf("probe after a shortage = %+v, %v", st, err)
	}

	fl.mu.Lock()
	fl.errs = []error{acceptErr(syscall.EINVAL)}
	fl.mu.Unlock()
	control.Probe(context.Background(), dir) // wakes the accept, which fails
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Serve = %v, want the listener's error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve still running after its listener failed for good")
	}
}
