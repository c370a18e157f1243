package cgi

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/livecgi/livecgi/proto/testkit"
)

// TestShell runs the built stub from a shell (no GATEWAY_INTERFACE, a
// query string's words as arguments): it says what it is and what it
// would use, creates nothing and starts nothing.
func TestShell(t *testing.T) {
	e := mustEnv(t)
	stub := mustBuildStub(t, e.conf)
	tests := []struct {
		args   []string
		env    []string
		code   int
		stdout string // output on stdout, else on stderr
	}{
		{[]string{"-help"}, nil, 0, "describe"},
		{[]string{"--help"}, nil, 0, "describe"},
		{[]string{"-version"}, nil, 0, "live.cgi dev\n"},
		{nil, nil, 2, ""},
		{[]string{"connect"}, []string{"QUERY_STRING=connect", "REQUEST_METHOD=GET", "HTTP_HOST=127.0.0.1"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{"args"}, tt.args...), " "), func(t *testing.T) {
			cwd := t.TempDir()
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(stub, tt.args...)
			cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = cwd, append([]string{"PATH=/usr/bin:/bin"}, tt.env...), &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			code := 0
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			out, quiet := stdout.String(), stderr.String()
			if tt.stdout == "" {
				out, quiet = quiet, out
			}
			if quiet != "" {
				t.Errorf("output on the other stream: %q", quiet)
			}
			if tt.stdout == "live.cgi dev\n" {
				if out != tt.stdout {
					t.Errorf("output %q, want %q", out, tt.stdout)
				}
			} else {
				for _, want := range []string{"live.cgi dev: the CGI stub of livecgi", e.conf, e.state + " (created on the first request", e.supervisor, "livecgid -check"} {
					if !strings.Contains(out, want) {
						t.Errorf("output lacks %q:\n%s", want, out)
					}
				}
			}
			if _, err := os.Stat(e.state); !os.IsNotExist(err) {
				t.Errorf("state dir %s: %v, want none", e.state, err)
			}
			if ents, _ := os.ReadDir(cwd); len(ents) > 0 {
				t.Errorf("files created in the working dir: %v", ents)
			}
			if pids := testkit.Supervisors(e.state); len(pids) > 0 {
				t.Errorf("supervisor started: pids %v", pids)
			}
		})
	}
}
