// Package sdk makes a livecgi plugin a few lines: describe sensors (a Read
// func and an interval) and commands (a Do func and an argument schema) and
// call Serve. The SDK does the go-plugin handshake, the gRPC service, the
// per-sensor tickers (running only while a Stream is open: while someone
// watches, and only for the sensors it asks for, at the interval it asks
// for), report by exception (a reading that did not change by more than
// the sensor's deadband stays in the plugin until its heartbeat), JSON
// logging that keeps its levels in the supervisor's log, and exits when
// the supervisor goes away.
//
// Start with ServeSensor for a one-sensor plugin, or Serve with a Plugin.
package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/livecgi/livecgi/proto"
)

// Value types of sensors and arguments.
const (
	Number = proto.ValueType_NUMBER
	Text   = proto.ValueType_TEXT
	Bool   = proto.ValueType_BOOL
)

// MinInterval is the shortest sensor interval livecgid accepts.
const MinInterval = proto.MinInterval

// Reading is one value read by a sensor. Make one with Gauge, String or
// Flag.
type Reading struct {
	typ    proto.ValueType
	number float64
	text   string
	flag   bool
	last   bool // sent with Read's error (see Last)
}

// Gauge returns a numeric reading.
func Gauge(v float64) Reading { return Reading{typ: Number, number: v} }

// String returns a text reading.
func String(s string) Reading { return Reading{typ: Text, text: s} }

// Flag returns a boolean reading.
func Flag(b bool) Reading { return Reading{typ: Bool, flag: b} }

// Value returns the reading's value: a float64, string or bool (nil for
// the zero Reading).
func (r Reading) Value() any {
	switch r.typ {
	case Number:
		return r.number
	case Text:
		return r.text
	case Bool:
		return r.flag
	}
	return nil
}

// Last marks r as the last good value, to return with an error: the
// reading then carries both, and the page keeps showing the value beside
// the error. Without Last, a reading with an error has no value.
func Last(r Reading) Reading {
	r.last = r.typ != proto.ValueType_VALUE_TYPE_UNSPECIFIED
	return r
}

// Sensor is one value a plugin reads every Interval. ID is lower_snake and
// should end in its unit (board_temp_celsius), in _total for a count that
// only grows. Unit is the symbol livecgi spells it with (°C, %, B, B/s,
// s; none for a count: proto/README.md, "Units"). Type defaults to Number.
// Read is called from one goroutine per sensor and open Stream (livecgid
// keeps one open while readings are wanted), with a deadline of one
// Interval.
//
// Interval is the sensor's fastest: livecgid may ask for a sensor less
// often (a record kept every minute), never more often.
//
// Deadband and Heartbeat report by exception (package proto/rbe): when
// livecgid asks so, a reading crosses to it only when it differs from the
// last one sent by more than Deadband (absolute, in Unit; 0: any change;
// text and bools: any change), when its error appears, changes or clears,
// or when Heartbeat has passed since the last one sent (0: never). Both 0,
// the default, sends every reading. livecgid's config may override both
// per sensor. Heartbeat counts in whole milliseconds.
//
// Watch, instead of Read, suits a value that comes when it comes (a line
// a program prints): it runs from one goroutine per open Stream, calls
// send for each reading and returns when ctx ends. Interval then only
// tells the page when a silent sensor is stale; Deadband and Heartbeat
// apply to what it sends (it is sent again for the heartbeat only when it
// sends again).
type Sensor struct {
	ID        string
	Title     string
	Unit      string
	Type      proto.ValueType
	Interval  time.Duration
	Deadband  float64
	Heartbeat time.Duration
	Read      func(ctx context.Context) (Reading, error)
	Watch     func(ctx context.Context, send func(Reading, error))
}

// Arg is one command argument. Min and Max bound a Number; Enum lists the
// accepted Text values.
type Arg struct {
	Name     string
	Title    string
	Type     proto.ValueType
	Required bool
	Min, Max *float64
	Enum     []string
}

// Command is one action a plugin performs. Do gets the arguments already
// checked against Args (numbers as float64, text as string, bools as bool)
// and returns a JSON-encodable result or an error shown to the user. Do may
// be called concurrently.
type Command struct {
	ID    string
	Title string
	Args  []Arg
	Do    func(ctx context.Context, args map[string]any) (any, error)
}

// Plugin is everything one plugin binary provides.
//
// Changes, when set, makes the plugin dynamic: its sensors and commands
// may change while it runs (the exec plugin follows its directory). Each
// Plugin received from Changes replaces Sensors and Commands (its Name,
// Version, Title, Changes and Close are ignored); the SDK restarts the sensors'
// readers and livecgid describes the plugin again, so sensors appear and
// disappear on the pages as with a plugin swap. A dynamic plugin may
// have no sensor and no command.
//
// Close, when set, runs once when the plugin stops: livecgid stopped it
// or went away.
//
// Title, optional, is a short line about the plugin as a whole that pages
// show beside its name (the exec plugin says where its confs go).
type Plugin struct {
	Name     string
	Version  string
	Title    string
	Sensors  []Sensor
	Commands []Command
	Changes  <-chan Plugin
	Close    func()
}

// Range returns a pointer to v, for Arg.Min and Arg.Max.
func Range(v float64) *float64 { return &v }

// ServeSensor serves a plugin with the one sensor s.
func ServeSensor(s Sensor) {
	Serve(Plugin{Name: s.ID, Sensors: []Sensor{s}})
}

// ServeCommand serves a plugin with the one command c.
func ServeCommand(c Command) {
	Serve(Plugin{Name: c.ID, Commands: []Command{c}})
}

// Serve runs p as a livecgi plugin and returns only when the supervisor
// stops it. Run by hand, it explains itself and exits with status 1.
func Serve(p Plugin) {
	if os.Getenv(proto.Handshake.MagicCookieKey) != proto.Handshake.MagicCookieValue {
		fmt.Fprintf(os.Stderr, "%s is a livecgi plugin: put it in livecgid's plugins directory; it is not run by hand.\n", filepath.Base(os.Args[0]))
		os.Exit(1)
	}
	if err := p.validate(); err != nil {
		Logger().Error("invalid plugin definition", "err", err)
		os.Exit(1)
	}
	var once sync.Once
	closePlugin := func() {
		if p.Close != nil {
			once.Do(p.Close)
		}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: proto.Handshake,
		Plugins:         proto.PluginSet(newServer(p)),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, grpc.StatsHandler(&exitAlone{close: closePlugin})))
		},
	})
	closePlugin()
}

// Unavailable ends the plugin, before Serve, saying it has nothing to
// serve on this machine and why (reason, e.g. "no LEDs in
// /sys/class/leds"): it writes reason to stderr as its last line and exits
// with proto.ExitUnavailable. livecgid then shows the plugin as
// "unavailable" with reason, and starts it again only when its binary
// changes (or every 10 minutes), not in a restart loop. Use it for a
// machine that lacks the hardware; a fault worth retrying soon is an
// ordinary error exit.
func Unavailable(reason string) {
	Logger().Info("nothing to serve", "reason", reason)
	os.Exit(proto.ExitUnavailable)
}

// exitAlone ends the plugin when the supervisor's connection closes: it
// keeps one for the plugin's life, so a closed one means the supervisor is
// gone (killed, it also sends SIGKILL: Pdeathsig). No timer: an idle
// plugin sleeps.
type exitAlone struct {
	conns atomic.Int64
	close func() // the plugin's Close, before it exits
}

func (e *exitAlone) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (e *exitAlone) HandleRPC(context.Context, stats.RPCStats)                         {}
func (e *exitAlone) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (e *exitAlone) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnBegin:
		e.conns.Add(1)
	case *stats.ConnEnd:
		if e.conns.Add(-1) == 0 {
			e.close()
			os.Exit(0)
		}
	}
}

// validate checks what only the SDK knows (a Read, an Interval, a Do),
// then the description livecgid will check (proto.CheckDescription).
func (p Plugin) validate() error {
	for _, s := range p.Sensors {
		if (s.Read == nil) == (s.Watch == nil) || s.Interval < MinInterval {
			return fmt.Errorf("sensor %s: needs Read or Watch and an Interval of at least %v", s.ID, MinInterval)
		}
	}
	for _, c := range p.Commands {
		if c.Do == nil {
			return fmt.Errorf("command %s: needs Do", c.ID)
		}
	}
	return proto.CheckDescription(p.describe())
}

// Logger returns a logger whose JSON lines on stderr keep their level in
// the supervisor's log (hclog's "@level" and "@message"; no time, which
// the supervisor adds). Stdout belongs to go-plugin: never print there.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.Attr{}
			case slog.LevelKey:
				a.Key = "@level"
				a.Value = slog.StringValue(levelName(a.Value.Any()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	}))
}

func levelName(v any) string {
	l, _ := v.(slog.Level)
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

// ProcPath joins elem under the procfs root the supervisor configured
// (default /proc).
func ProcPath(elem ...string) string { return rootPath(proto.EnvProcRoot, "/proc", elem) }

// SysPath joins elem under the sysfs root the supervisor configured
// (default /sys).
func SysPath(elem ...string) string { return rootPath(proto.EnvSysRoot, "/sys", elem) }

func rootPath(env, def string, elem []string) string {
	root := os.Getenv(env)
	if root == "" {
		root = def
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// marshalResult encodes a command result; nil stays empty.
func marshalResult(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	return json.Marshal(v)
}
