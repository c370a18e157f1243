package exec

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livecgi/livecgi/plugins/sdk"
)

// readmeConf returns the indented conf block of README.md that starts
// with the comment line first.
func readmeConf(t *testing.T, first string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n    "+first+"\n")
	if !ok {
		t.Fatalf("README.md has no block starting with %q", first)
	}
	conf := first + "\n"
	for line := range strings.Lines(rest) {
		body, ok := strings.CutPrefix(line, "    ")
		if !ok {
			break
		}
		conf += body
	}
	return conf
}

// TestREADMEPositional: the README's conf for a script that takes
// positional arguments parses as written, and run with a stand-in script
// it passes each argument as one word, the value as sent (shell syntax in
// a value stays text), and an optional argument only when given.
func TestREADMEPositional(t *testing.T) {
	conf := readmeConf(t, "# /etc/livecgi/exec.d/water.conf: command exec.water, for a script")
	s, err := parseConf("/etc/livecgi/exec.d", "water", []byte(conf))
	if err != nil {
		t.Fatalf("README's water.conf: %v\n%s", err, conf)
	}
	script := `exec /usr/local/bin/water.sh "$LIVECGI_ARG_ZONE" "$LIVECGI_ARG_MINUTES" ${LIVECGI_ARG_NOTE:+"$LIVECGI_ARG_NOTE"}`
	if got := fmt.Sprintf("%q", s.argv); got != fmt.Sprintf("%q", []string{"/bin/sh", "-c", script, "water.sh"}) {
		t.Errorf("argv %s", got)
	}
	if got := summary(s); !strings.Contains(got, "command water zone:TEXT:true:[front back] minutes:NUMBER:true:1:60 note:TEXT:false") {
		t.Errorf("spec %s", got)
	}

	// The same conf over a stand-in water.sh that prints its arguments.
	p, dir, _ := startIn(t, map[string]string{
		"water.sh":   "#!/bin/sh\nout=\"$#\"\nfor a in \"$@\"; do out=\"$out [$a]\"; done\necho \"$out\"\n",
		"water.conf": strings.ReplaceAll(conf, "/usr/local/bin/water.sh", "./water.sh"),
	})
	var c sdk.Command
	waitFor(t, "the command", func() bool {
		for _, x := range p.definition().Commands {
			if x.ID == "water" {
				c = x
				return true
			}
		}
		return false
	})
	for _, tt := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"zone": "front", "minutes": 5.0}, "2 [front] [5]"},
		{map[string]any{"zone": "back", "minutes": 1.5, "note": "it's dry; $(touch pwned) `touch pwned` * \"x\""},
			"3 [back] [1.5] [it's dry; $(touch pwned) `touch pwned` * \"x\"]"},
	} {
		v, err := c.Do(context.Background(), tt.args)
		if err != nil || v != tt.want {
			t.Errorf("Do(%v) = %#v, %v; want %q", tt.args, v, err, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("a value ran as shell code")
	}
}
