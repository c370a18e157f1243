package ctlserver

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

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
	go Serve(ctx, ln, func() control.Status { return control.Status{PID: 42, Port: 8081, Version: "v"} })
	st, err := control.Probe(context.Background(), dir)
	if err != nil || st.PID != 42 || st.Port != 8081 {
		t.Fatalf("probe = %+v, %v", st, err)
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
