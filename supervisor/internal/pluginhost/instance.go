package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/livecgi/livecgi/proto"
	"github.com/livecgi/livecgi/proto/trust"
)

// instance is one running plugin process.
type instance struct {
	id      string
	client  *plugin.Client
	rpc     proto.PluginClient
	conn    *grpc.ClientConn   // its connection: leaves Ready when the process is gone
	desc    *proto.Description // as first described: its Version stands for the process's life
	known   atomic.Pointer[described]
	started time.Time
	socket  string // its unix socket in the host's socket dir, if any

	// A dynamic plugin is described again (redescribe) by its Stream's
	// reader and by the follower of its Changes; descMu makes one wait
	// for the other, so the last description read is the one published.
	descMu  sync.Mutex
	follows atomic.Bool // its Changes is open: no need to stream to hear of a change

	reshapeMu sync.Mutex
	reshaped  chan struct{} // closed and replaced when known or follows changes

	cancel    context.CancelFunc // ends run (and the stream, if open)
	done      chan struct{}      // closed when run ended: stopped, or the plugin is gone
	err       error              // why, once done is closed
	lastRead  atomic.Int64       // unix nanos of the last reading, or of the stream's opening
	streaming atomic.Bool        // a Stream is open
	// watchLimit is how long the open Stream may bring nothing before
	// the plugin is taken for hung (a time.Duration; see watchLimit); 0
	// while none is open, or while it may be silent for ever.
	watchLimit atomic.Int64

	mu       sync.Mutex
	inflight int
	draining bool
	idle     chan struct{} // closed when draining and inflight is 0
}

// described is what a plugin said it provides, indexed; replaced whole
// when it describes itself again, never changed in place.
type described struct {
	desc     *proto.Description
	types    map[string]proto.ValueType
	minEvery time.Duration // shortest sensor interval; 0 without sensors
}

// reshape tells the instance's run that known or follows changed.
func (in *instance) reshape() {
	in.reshapeMu.Lock()
	close(in.reshaped)
	in.reshaped = make(chan struct{})
	in.reshapeMu.Unlock()
}

// reshapes returns a channel closed at the next reshape.
func (in *instance) reshapes() <-chan struct{} {
	in.reshapeMu.Lock()
	defer in.reshapeMu.Unlock()
	return in.reshaped
}

// stop lets commands in flight finish (up to grace), then ends the
// stream, kills the process and waits for its run to return, so nothing
// of it touches the hub afterwards. Only an activated instance is stopped.
func (in *instance) stop(grace time.Duration) {
	in.mu.Lock()
	if !in.draining {
		in.draining = true
		if in.inflight == 0 {
			close(in.idle)
		}
	}
	in.mu.Unlock()
	select {
	case <-in.idle:
	case <-time.After(grace):
	}
	in.cancel()
	in.client.Kill()
	// A plugin that crashed or was killed leaves its socket behind.
	if in.socket != "" {
		os.Remove(in.socket)
	}
	<-in.done
}

// start runs the plugin binary and returns it ready: handshake done,
// descriptors read and checked.
func (sl *slot) start(ctx context.Context) (*instance, error) {
	m := sl.m
	if err := checkTrust(sl.path); err != nil {
		return nil, err
	}
	env, sums := m.settings()
	sum, pinned := sums[sl.id]
	if len(sums) > 0 && !pinned {
		return nil, fmt.Errorf("%w: %s is not in the plugin_sha256 allowlist", ErrRefused, sl.path)
	}
	cmd := exec.Command(sl.path)
	// go-plugin honours UnixSocketConfig.TempDir only with a RunnerFunc; the
	// plugin side reads this variable: sockets go in the private state dir.
	cmd.Env = append(env[:len(env):len(env)], plugin.EnvUnixSocketDir+"="+m.socketDir)
	cmd.Dir = m.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	tail := &stderrTail{}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  proto.Handshake,
		GRPCDialOptions:  proto.DialOptions(),
		Plugins:          proto.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           newHCLog(sl.log),
		StartTimeout:     m.timing.Handshake,
		Stderr:           tail,
	}
	if pinned {
		b, _ := hex.DecodeString(sum)
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: b, Hash: sha256.New()} // a fresh hash per start: it keeps state
	}
	c := plugin.NewClient(cfg)
	fail := func(err error) (*instance, error) {
		c.Kill()
		return nil, err
	}
	rpc, err := c.Client()
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		return fail(fmt.Errorf("%w: SHA-256 of %s does not match plugin_sha256 in the config", ErrRefused, sl.path))
	}
	if err != nil {
		// Kill waits for the process and for the rest of its stderr:
		// the plugin's own last word beats go-plugin's generic text.
		c.Kill()
		if why := exitedOnItsOwn(cmd, tail, "the handshake"); why != nil {
			return nil, why
		}
		err = fmt.Errorf("handshake: %s", firstLine(err))
		if line := tail.line(false); line != "" {
			err = fmt.Errorf("%w; its last stderr line: %s", err, line)
		}
		return nil, err
	}
	raw, err := rpc.Dispense(proto.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispense: %w", err))
	}
	pc, ok := raw.(proto.PluginClient)
	if !ok {
		return fail(fmt.Errorf("dispense: unexpected %T", raw))
	}
	dctx, cancel := context.WithTimeout(ctx, m.timing.Describe)
	desc, err := pc.Describe(dctx, &proto.DescribeRequest{})
	cancel()
	if err != nil {
		if c.Exited() {
			c.Kill()
			if why := exitedOnItsOwn(cmd, tail, "describe"); why != nil {
				return nil, why
			}
		}
		if dctx.Err() != nil {
			return fail(fmt.Errorf("describe: no answer within %v", m.timing.Describe))
		}
		return fail(fmt.Errorf("describe: %w", err))
	}
	gc, ok := rpc.(*plugin.GRPCClient)
	if !ok {
		return fail(fmt.Errorf("dispense: unexpected %T", rpc))
	}
	in := &instance{
		id: sl.id, client: c, rpc: pc, conn: gc.Conn, desc: desc, started: time.Now(),
		done: make(chan struct{}), idle: make(chan struct{}), cancel: func() {}, reshaped: make(chan struct{}),
	}
	if err := in.check(); err != nil {
		return fail(fmt.Errorf("describe: %w", err))
	}
	if rc := c.ReattachConfig(); rc != nil && rc.Addr != nil && rc.Addr.Network() == "unix" &&
		filepath.Dir(rc.Addr.String()) == filepath.Clean(m.socketDir) {
		in.socket = rc.Addr.String()
	}
	return in, nil
}

// checkTrust refuses a plugin binary that others could have replaced
// (trust.Check).
func checkTrust(path string) error {
	err := trust.Check(path, trust.Options{})
	var te *trust.Error
	if errors.As(err, &te) {
		err = fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return err
}
