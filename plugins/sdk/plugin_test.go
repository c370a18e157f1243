package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto"
)

var (
	buildOnce sync.Once
	tinyBin   string
	buildErr  error
)

// MustBuildTiny builds testdata/tinyplugin once per test binary and
// returns its path.
func MustBuildTiny(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sdk-tinyplugin-")
		if err != nil {
			buildErr = err
			return
		}
		tinyBin = filepath.Join(dir, "tinyplugin")
		cmd := exec.Command("go", "build", "-trimpath", "-o", tinyBin, "./testdata/tinyplugin")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return tinyBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tinyBin != "" {
		os.RemoveAll(filepath.Dir(tinyBin))
	}
	os.Exit(code)
}

// TestRunByHand runs the plugin without the handshake cookie, as someone
// at a shell would: one line on stderr, nothing on stdout, status 1.
func TestRunByHand(t *testing.T) {
	cmd := exec.Command(MustBuildTiny(t))
	cmd.Env = withoutCookie(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", stdout.String())
	}
	want := "tinyplugin is a livecgi plugin: put it in livecgid's plugins directory; it is not run by hand.\n"
	if stderr.String() != want {
		t.Errorf("stderr:\n got %q\nwant %q", stderr.String(), want)
	}
}

// TestInvalidPlugin starts a plugin with a bad sensor id under the cookie:
// it logs why at error level and exits 1 before the handshake.
func TestInvalidPlugin(t *testing.T) {
	cmd := exec.Command(MustBuildTiny(t))
	cmd.Env = append(withoutCookie(os.Environ()), "TINYPLUGIN_INVALID=1",
		proto.Handshake.MagicCookieKey+"="+proto.Handshake.MagicCookieValue)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing before a handshake", stdout.String())
	}
	var line map[string]any
	if err := json.Unmarshal(stderr.Bytes(), &line); err != nil {
		t.Fatalf("stderr is not one JSON line: %v\n%s", err, stderr.String())
	}
	if line["@level"] != "error" || line["@message"] != "invalid plugin definition" ||
		!strings.Contains(line["err"].(string), `sensor id "Answer-Count"`) {
		t.Errorf("stderr: %s", stderr.String())
	}
}

// TestUnavailable: a plugin with nothing to serve writes its reason as
// its last stderr line and exits with proto.ExitUnavailable before the
// handshake.
func TestUnavailable(t *testing.T) {
	cmd := exec.Command(MustBuildTiny(t))
	cmd.Env = append(withoutCookie(os.Environ()), "TINYPLUGIN_UNAVAILABLE=no tiny things here",
		proto.Handshake.MagicCookieKey+"="+proto.Handshake.MagicCookieValue)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != proto.ExitUnavailable {
		t.Errorf("exit: %v, want status %d", err, proto.ExitUnavailable)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", stdout.String())
	}
	var line map[string]any
	if err := json.Unmarshal(stderr.Bytes(), &line); err != nil {
		t.Fatalf("stderr is not one JSON line: %v\n%s", err, stderr.String())
	}
	if line["@message"] != "nothing to serve" || line["reason"] != "no tiny things here" {
		t.Errorf("stderr: %s", stderr.String())
	}
}

// TestServe runs the tiny plugin as a real go-plugin process.
func TestServe(t *testing.T) {
	c, logs := MustStart(t, MustBuildTiny(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	d, err := c.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "tiny" || d.Version != "1.0.0" || len(d.Sensors) != 5 || len(d.Commands) != 3 {
		t.Errorf("Describe = %v", d)
	}

	t.Run("stream all", func(t *testing.T) {
		got := MustCollect(t, ctx, c, nil, 5)
		want := map[string]string{
			"answer_count":  "number:42",
			"greeting_text": `text:"hello"`,
			"door_open":     "flag:true",
			"broken_count":  `error:"sensor unplugged"`,
			"panic_count":   `error:"read panicked: boom"`,
		}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("%s: got %s, want %s", id, got[id], w)
			}
		}
	})

	t.Run("stream some", func(t *testing.T) {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := c.Stream(sctx, &proto.StreamRequest{Sensors: []string{"greeting_text"}})
		if err != nil {
			t.Fatal(err)
		}
		// Several intervals of readings, all of the one sensor.
		for range 5 {
			r, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.Sensor != "greeting_text" {
				t.Fatalf("got a reading of %s", r.Sensor)
			}
		}
	})

	t.Run("stream unknown", func(t *testing.T) {
		st, err := c.Stream(ctx, &proto.StreamRequest{Sensors: []string{"answer_count", "nope"}})
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `unknown sensor "nope"`) {
			t.Errorf("got %v, want InvalidArgument naming the sensor", err)
		}
	})

	t.Run("do", func(t *testing.T) {
		tests := []struct{ cmd, args, value, errText string }{
			{"echo", `{"text":"hi"}`, `{"text":"hi"}`, ""},
			{"fail", ``, ``, "no can do"},
			{"explode", `{}`, ``, "command panicked: kaboom"},
		}
		for _, tt := range tests {
			resp, err := c.Do(ctx, &proto.CommandRequest{Id: "1", Command: tt.cmd, ArgsJson: []byte(tt.args)})
			if err != nil {
				t.Fatalf("%s: %v", tt.cmd, err)
			}
			if string(resp.ValueJson) != tt.value || resp.Error != tt.errText {
				t.Errorf("%s: got %s, %q; want %s, %q", tt.cmd, resp.ValueJson, resp.Error, tt.value, tt.errText)
			}
		}
	})

	// The plugin is still serving after its panics.
	if _, err := c.Describe(ctx, &proto.DescribeRequest{}); err != nil {
		t.Errorf("Describe after panics: %v\n%s", err, logs)
	}
}

// MustCollect streams sensors until it has the first reading of n of them,
// and returns each as text.
func MustCollect(tb testing.TB, ctx context.Context, c proto.PluginClient, sensors []string, n int) map[string]string {
	tb.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.Stream(ctx, &proto.StreamRequest{Sensors: sensors})
	if err != nil {
		tb.Fatal(err)
	}
	got := map[string]string{}
	for len(got) < n {
		r, err := st.Recv()
		if err != nil {
			tb.Fatalf("Recv after %d sensors: %v", len(got), err)
		}
		if _, ok := got[r.Sensor]; !ok {
			got[r.Sensor] = readingText(r)
		}
	}
	return got
}

func readingText(r *proto.Reading) string {
	if r.Error != "" {
		b, _ := json.Marshal(r.Error)
		return "error:" + string(b)
	}
	var v any
	var kind string
	switch x := r.Value.(type) {
	case *proto.Reading_Number:
		kind, v = "number", x.Number
	case *proto.Reading_Text:
		kind, v = "text", x.Text
	case *proto.Reading_Flag:
		kind, v = "flag", x.Flag
	default:
		return "no value"
	}
	b, _ := json.Marshal(v)
	return kind + ":" + string(b)
}

// MustStart starts bin as a go-plugin process the way livecgid does.
func MustStart(tb testing.TB, bin string) (proto.PluginClient, *sdktest.Log) {
	tb.Helper()
	return sdktest.Start(tb, bin)
}

func withoutCookie(env []string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, proto.Handshake.MagicCookieKey+"=") {
			out = append(out, e)
		}
	}
	return out
}

// TestExitsWhenSupervisorGone: a plugin whose supervisor's connection
// closes (the supervisor is gone) exits on its own, with no timer to
// notice it.
func TestExitsWhenSupervisorGone(t *testing.T) {
	cmd := exec.Command(MustBuildTiny(t))
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  proto.Handshake,
		Plugins:          proto.PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
		StartTimeout:     30 * time.Second,
	})
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		t.Fatal(err)
	}
	rpc.(*plugin.GRPCClient).Conn.Close()
	for end := time.Now().Add(15 * time.Second); !client.Exited(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("plugin still running 15 s after its supervisor's connection closed")
		}
	}
}
