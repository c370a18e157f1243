// Package sdktest runs a plugin binary the way livecgid does, as a real
// go-plugin process over gRPC, so that a plugin's tests call Describe,
// Stream and Do on the real thing:
//
//	c, _ := sdktest.Start(t, sdktest.Build(t, ".", ""), "LIVECGI_SYS_ROOT=testdata/sys")
//	d, err := c.Describe(ctx, &proto.DescribeRequest{})
package sdktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/livecgi/livecgi/proto"
)

// Build compiles the plugin package pkg (a directory, e.g. ".") with the
// extra ldflags into a temporary directory and returns the binary's path.
func Build(tb testing.TB, pkg, ldflags string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "plugin")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w "+ldflags, "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// BuildBuiltin builds livecgid with the extra ldflags into a temporary
// directory and returns the path of a link named name to it there: the
// built-in plugin name, run the way livecgid runs it.
func BuildBuiltin(tb testing.TB, name, ldflags string) string {
	tb.Helper()
	bin := Build(tb, "github.com/livecgi/livecgi/cmd/livecgid", ldflags)
	link := filepath.Join(filepath.Dir(bin), name)
	if err := os.Symlink(bin, link); err != nil {
		tb.Fatal(err)
	}
	return link
}

// Start runs bin as a go-plugin process with env added to the test's
// environment and returns its client and its log (stderr, through go-plugin's
// logger). The process is killed when the test ends; the log is printed if
// the test failed.
func Start(tb testing.TB, bin string, env ...string) (proto.PluginClient, *Log) {
	tb.Helper()
	cmd := exec.Command(bin)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, proto.Handshake.MagicCookieKey+"=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logs := &Log{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  proto.Handshake,
		Plugins:          proto.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  proto.DialOptions(), // as livecgid dials
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: logs, Level: hclog.Debug}),
		StartTimeout:     30 * time.Second,
	})
	tb.Cleanup(func() {
		client.Kill()
		if tb.Failed() {
			tb.Logf("plugin log:\n%s", logs)
		}
	})
	rpc, err := client.Client()
	if err != nil {
		tb.Fatalf("start plugin: %v\n%s", err, logs)
	}
	raw, err := rpc.Dispense(proto.PluginName)
	if err != nil {
		tb.Fatalf("dispense: %v", err)
	}
	return raw.(proto.PluginClient), logs
}

// Log collects a plugin's log lines; safe for go-plugin's goroutines.
type Log struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
