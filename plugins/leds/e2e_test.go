package leds

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/livecgi/livecgi/plugins/sdk/sdktest"
	"github.com/livecgi/livecgi/proto"
)

// TestEndToEnd builds the plugin, runs it as a real go-plugin process on a
// copy of the fixture, and checks Describe, Stream and Do.
func TestEndToEnd(t *testing.T) {
	sysRoot := MustCopyFixture(t)
	c := mustStart(t, "-X main.version=v0.0.7-test", proto.EnvSysRoot+"="+sysRoot)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	d, err := c.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if d.Name != "leds" || d.Version != "v0.0.7-test" {
		t.Errorf("name, version = %q, %q", d.Name, d.Version)
	}
	var sensors []string
	for _, s := range d.Sensors {
		sensors = append(sensors, s.Id+":"+s.Type.String())
		if s.Deadband != 0 || s.HeartbeatMs != 60000 {
			t.Errorf("%s: deadband %v, heartbeat %d ms; want every change, and a heartbeat of 60000 ms", s.Id, s.Deadband, s.HeartbeatMs)
		}
	}
	wantSensors := "input0_capslock_brightness:NUMBER input0_capslock_trigger:TEXT led0_brightness:NUMBER led0_trigger:TEXT " +
		"mt7621_green_wlan_brightness:NUMBER mt7621_green_wlan_trigger:TEXT"
	if got := strings.Join(sensors, " "); got != wantSensors {
		t.Errorf("sensors:\n got %s\nwant %s", got, wantSensors)
	}
	if len(d.Commands) != 2 || d.Commands[0].Id != "set_brightness" || d.Commands[1].Id != "set_trigger" {
		t.Fatalf("commands = %v", d.Commands)
	}
	led, value := d.Commands[0].Args[0], d.Commands[0].Args[1]
	if strings.Join(led.Enum, ",") != "input0::capslock,led0,mt7621:green:wlan" || !led.Required || led.Type != proto.ValueType_TEXT {
		t.Errorf("led arg = %v", led)
	}
	if value.GetMin() != 0 || value.GetMax() != 255 || value.Min == nil || value.Type != proto.ValueType_NUMBER {
		t.Errorf("value arg = %v, want a number from 0 to 255", value)
	}
	if trig := d.Commands[1].Args[1]; trig.Name != "trigger" || len(trig.Enum) != 0 {
		t.Errorf("trigger arg = %v, want text with no enum", trig)
	}

	stream, err := c.Stream(ctx, &proto.StreamRequest{})
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	want := map[string]string{
		"input0_capslock_brightness": "number:1", "input0_capslock_trigger": `text:"kbd-capslock"`,
		"led0_brightness": "number:255", "led0_trigger": `text:"mmc0"`,
		"mt7621_green_wlan_brightness": "number:0", "mt7621_green_wlan_trigger": `text:"none"`,
	}
	got := map[string]string{}
	for len(got) < len(want) {
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if _, ok := got[r.Sensor]; !ok {
			got[r.Sensor] = readingString(r)
		}
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: got %s, want %s", id, got[id], w)
		}
	}

	brightness := filepath.Join(sysRoot, "class/leds/led0/brightness")
	trigger := filepath.Join(sysRoot, "class/leds/led0/trigger")
	capslock := filepath.Join(sysRoot, "class/leds/input0::capslock/brightness")
	tests := []struct {
		name, cmd, args string
		value, err      string // want
		file, content   string // and then file holds content
	}{
		{name: "set", cmd: "set_brightness", args: `{"led":"led0","value":17}`, value: "17", file: brightness, content: "17"},
		{name: "over the LED's max", cmd: "set_brightness", args: `{"led":"input0::capslock","value":2}`,
			err: "brightness of input0::capslock must be a whole number from 0 to 1, not 2", file: capslock, content: "1\n"},
		{name: "unknown trigger", cmd: "set_trigger", args: `{"led":"led0","trigger":"disco"}`,
			err: `led0 has no trigger "disco"; it has: none rc-feedback`, file: trigger, content: "none rc-feedback"},
		{name: "trigger", cmd: "set_trigger", args: `{"led":"led0","trigger":"heartbeat"}`, value: `"heartbeat"`, file: trigger, content: "heartbeat"},
		{name: "unknown LED", cmd: "set_trigger", args: `{"led":"led7","trigger":"none"}`, err: `no LED "led7"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Do(ctx, &proto.CommandRequest{Id: tt.name, Command: tt.cmd, ArgsJson: []byte(tt.args)})
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if string(resp.ValueJson) != tt.value || !strings.HasPrefix(resp.Error, tt.err) || (tt.err == "") != (resp.Error == "") {
				t.Errorf("got value %s, error %q; want value %s, error %q", resp.ValueJson, resp.Error, tt.value, tt.err)
			}
			if tt.file == "" {
				return
			}
			if b, _ := os.ReadFile(tt.file); !strings.HasPrefix(string(b), tt.content) {
				t.Errorf("%s holds %q, want %q", tt.file, b, tt.content)
			}
		})
	}

	_, err = c.Do(ctx, &proto.CommandRequest{Command: "self_destruct"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown command: got %v, want NotFound", err)
	}
}

func readingString(r *proto.Reading) string {
	switch v := r.Value.(type) {
	case *proto.Reading_Number:
		return "number:" + strconv.FormatFloat(v.Number, 'g', -1, 64)
	case *proto.Reading_Text:
		return `text:"` + v.Text + `"`
	}
	return "error:" + r.Error
}

// mustStart builds livecgid with the extra ldflags and starts this plugin
// as livecgid does (a link named leds to it), with env.
func mustStart(tb testing.TB, ldflags string, env ...string) proto.PluginClient {
	tb.Helper()
	c, _ := sdktest.Start(tb, sdktest.BuildBuiltin(tb, "leds", ldflags), env...)
	return c
}
