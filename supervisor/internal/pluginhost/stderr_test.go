package pluginhost

import (
	"strings"
	"testing"
)

// TestStderrTail feeds stderr the way go-plugin copies it (a line, then
// its newline, in separate writes) and checks the plugin's last word.
func TestStderrTail(t *testing.T) {
	long := strings.Repeat("é", maxReason)
	tests := []struct {
		name        string
		lines       []string
		last, unavl string
	}{
		{"nothing", nil, "", ""},
		{"plain", []string{"starting", "cannot open /dev/widget0", ""}, "cannot open /dev/widget0", "cannot open /dev/widget0"},
		{"hclog JSON", []string{`{"@level":"error","@message":"invalid plugin definition","err":"sensor id \"X\"","@module":"p"}`},
			`invalid plugin definition err=sensor id "X"`, `invalid plugin definition err=sensor id "X"`},
		{"unavailable", []string{`{"@level":"info","@message":"nothing to serve","reason":"no LEDs in /sys/class/leds"}`},
			"nothing to serve reason=no LEDs in /sys/class/leds", "no LEDs in /sys/class/leds"},
		{"panic", []string{"panic: widget exploded", "", "goroutine 1 [running]:", "main.main()", "\t/src/main.go:9 +0x1d"},
			"panic: widget exploded", "\t/src/main.go:9 +0x1d"},
		{"long", []string{long}, long[:maxReason] + "…", long[:maxReason] + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tail stderrTail
			for _, l := range tt.lines {
				tail.Write([]byte(l))
				tail.Write([]byte{'\n'})
			}
			if got := tail.line(false); got != tt.last {
				t.Errorf("line(false) = %q, want %q", got, tt.last)
			}
			if got := tail.line(true); got != strings.TrimSpace(tt.unavl) {
				t.Errorf("line(true) = %q, want %q", got, tt.unavl)
			}
		})
	}
	var tail stderrTail
	tail.Write([]byte("first\nsecond without newline"))
	if got := tail.line(false); got != "second without newline" {
		t.Errorf("unfinished last line: %q", got)
	}
}
