package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/livecgi/livecgi/proto"
)

// The test binary doubles as every test plugin: linked into a plugins
// directory under a helper's name, it serves that plugin instead of
// running tests (see TestMain). Helpers talk raw proto, not the SDK, so
// they can misbehave in ways the SDK would not allow.

const helperPrefix = "helper_"

func TestMain(m *testing.M) {
	name := filepath.Base(os.Args[0])
	tm, tv := readTrailer()
	if mode, ok := strings.CutPrefix(name, helperPrefix); ok || tm != "" {
		mode = strings.TrimRight(mode, "0123456789")
		if tm != "" || tv != "" {
			if tm != "" {
				mode = tm
			}
			os.Setenv("HELPER_VERSION", tv)
		}
		serveHelper(mode)
		os.Exit(0)
	}
	// Race-enabled helpers sleep a second at exit by default: a stopped
	// plugin would linger and slow every test that waits for it.
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
	os.Exit(m.Run())
}

// installHelper links the test binary into dir as plugin helper_<mode>.
func installHelper(t testing.TB, dir, mode string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, helperPrefix+mode)
	if err := os.Symlink(exe, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// A helper copy may carry a trailer appended to the binary (the ELF file
// still runs): "\n#helper mode=<mode> version=<v>\n". It overrides the
// mode taken from the file name and the version, so that one plugin name
// can be given binaries that differ and misbehave (see writeHelper).
const trailerTag = "\n#helper "

// readTrailer returns the mode and version in this executable's trailer.
func readTrailer() (mode, version string) {
	f, err := os.Open("/proc/self/exe") // works for a replaced (deleted) file too
	if err != nil {
		return "", ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() < 256 {
		return "", ""
	}
	buf := make([]byte, 256)
	if _, err := f.ReadAt(buf, fi.Size()-256); err != nil {
		return "", ""
	}
	i := strings.LastIndex(string(buf), trailerTag)
	if i < 0 {
		return "", ""
	}
	for _, kv := range strings.Fields(string(buf[i+len(trailerTag):])) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "mode":
			mode = v
		case "version":
			version = v
		case "extra": // one more sensor: descriptors that differ
			os.Setenv("HELPER_EXTRA", v)
		}
	}
	return mode, version
}

func serveHelper(mode string) {
	switch mode {
	case "crash": // dies during the handshake
		os.Exit(3)
	case "crashmsg": // says why on stderr, then dies during the handshake
		fmt.Fprintln(os.Stderr, "helper: cannot open /dev/widget0: no such device")
		os.Exit(3)
	case "panic": // a Go panic: its first line says more than the stack after it
		panic("widget exploded")
	case "nothing": // nothing to serve here, said the way any plugin may say it
		fmt.Fprintln(os.Stderr, `{"@level":"info","@message":"nothing to serve","reason":"no widget on this board"}`)
		os.Exit(proto.ExitUnavailable)
	case "garbage": // stdout belongs to go-plugin: this breaks the handshake
		fmt.Println("hello from a plugin that prints to stdout")
		time.Sleep(10 * time.Second)
		os.Exit(0)
	}
	go func() { // like the SDK: never outlive the supervisor
		ppid := os.Getppid()
		for range time.Tick(200 * time.Millisecond) {
			if os.Getppid() != ppid {
				os.Exit(0)
			}
		}
	}()
	var impl proto.PluginServer = &helper{mode: mode}
	switch mode {
	case "olddyn":
		impl = newOldDyn()
	case "demand", "quiet", "hush":
		impl = newDemandHelper(mode)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: proto.Handshake,
		Plugins:         proto.PluginSet(impl),
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

type helper struct {
	proto.UnimplementedPluginServer
	mode string
}

func (h *helper) Describe(ctx context.Context, _ *proto.DescribeRequest) (*proto.Description, error) {
	switch h.mode {
	case "nodescribe":
		<-ctx.Done()
		return nil, ctx.Err()
	case "baddesc":
		return &proto.Description{Name: "bad", Sensors: []*proto.SensorDesc{{Id: "Bad-Id", Type: proto.ValueType_NUMBER, IntervalMs: 100}}}, nil
	}
	every := int64(20)
	if h.mode == "big" {
		every = 10
	}
	min0, max100 := 0.0, 100.0
	var extra []*proto.SensorDesc
	if id := os.Getenv("HELPER_EXTRA"); id != "" {
		extra = append(extra, &proto.SensorDesc{Id: id, Title: "Extra", Type: proto.ValueType_TEXT, IntervalMs: 1000})
	}
	return &proto.Description{
		Name:    h.mode,
		Version: h.version(),
		Sensors: append([]*proto.SensorDesc{
			{Id: "count", Title: "Counter", Unit: "n", Type: proto.ValueType_NUMBER, IntervalMs: every},
			{Id: "label", Title: "Label", Type: proto.ValueType_TEXT, IntervalMs: 100},
		}, extra...),
		Commands: []*proto.CommandDesc{
			{Id: "add", Title: "Add", Args: []*proto.Arg{
				{Name: "a", Type: proto.ValueType_NUMBER, Required: true, Min: &min0, Max: &max100},
				{Name: "b", Type: proto.ValueType_NUMBER},
				{Name: "mode", Type: proto.ValueType_TEXT, Enum: []string{"plain", "double"}},
				{Name: "neg", Type: proto.ValueType_BOOL},
			}},
			{Id: "block", Title: "Blocks until cancelled"},
			{Id: "sleep", Title: "Answers after ms milliseconds with its pid and version", Args: []*proto.Arg{
				{Name: "ms", Type: proto.ValueType_NUMBER, Required: true},
			}},
			{Id: "fail", Title: "Always fails"},
			{Id: "streams", Title: "Stream RPCs opened, open now, and readings sent"},
		},
	}, nil
}

// version is the helper's version as Describe gives it.
func (h *helper) version() string { return "v-" + h.mode + "-" + os.Getenv("HELPER_VERSION") }

// The helper's own count of its streams, for the streams command.
var streamsOpened, streamsOpen, readingsSent atomic.Int64

func (h *helper) Stream(req *proto.StreamRequest, st proto.Plugin_StreamServer) error {
	streamsOpened.Add(1)
	streamsOpen.Add(1)
	defer streamsOpen.Add(-1)
	every := 20 * time.Millisecond
	if h.mode == "big" {
		every = 10 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 1; ; n++ {
		now := time.Now().UnixMilli()
		r := &proto.Reading{Sensor: "count", TMs: now, Value: &proto.Reading_Number{Number: float64(n)}}
		switch h.mode {
		case "wrongtype":
			r.Value = &proto.Reading_Text{Text: "not a number"}
		case "undeclared":
			r.Sensor = "nope"
		case "flaky": // every fourth read fails
			if n%4 == 0 {
				r.Value, r.Error = nil, "sensor busy"
			}
		case "big":
			r = &proto.Reading{Sensor: "label", TMs: now, Value: &proto.Reading_Text{Text: strings.Repeat("x", 32<<10)}}
		case "hang":
			if n > 3 {
				<-st.Context().Done()
				return nil
			}
		case "die":
			if n > 10 {
				os.Exit(4)
			}
		}
		if err := st.Send(r); err != nil {
			return err
		}
		readingsSent.Add(1)
		if n%5 == 0 && h.mode != "big" {
			st.Send(&proto.Reading{Sensor: "label", TMs: now, Value: &proto.Reading_Text{Text: fmt.Sprintf("n=%d %s", n, h.version())}})
		}
		select {
		case <-st.Context().Done():
			return nil
		case <-t.C:
		}
	}
}

func (h *helper) Do(ctx context.Context, req *proto.CommandRequest) (*proto.CommandResponse, error) {
	switch req.Command {
	case "block":
		<-ctx.Done()
		return nil, ctx.Err()
	case "fail":
		return &proto.CommandResponse{Error: "it failed, as asked"}, nil
	case "streams":
		b, _ := json.Marshal(map[string]any{"opened": streamsOpened.Load(), "open": streamsOpen.Load(), "sent": readingsSent.Load(), "pid": os.Getpid(),
			"exec_dir": os.Getenv(proto.EnvExecDir)})
		return &proto.CommandResponse{ValueJson: b}, nil
	case "sleep":
		var a struct{ MS float64 }
		if err := json.Unmarshal(req.ArgsJson, &a); err != nil {
			return nil, err
		}
		select {
		case <-time.After(time.Duration(a.MS) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		b, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "version": os.Getenv("HELPER_VERSION")})
		return &proto.CommandResponse{ValueJson: b}, nil
	case "add":
		var a struct {
			A, B float64
			Mode string
		}
		if err := json.Unmarshal(req.ArgsJson, &a); err != nil {
			return nil, err
		}
		v := a.A + a.B
		if a.Mode == "double" {
			v *= 2
		}
		b, _ := json.Marshal(map[string]any{"sum": v, "plugin": h.mode})
		return &proto.CommandResponse{ValueJson: b}, nil
	}
	return &proto.CommandResponse{Error: "unknown command " + req.Command}, nil
}
