package cgi

import (
	"context"
	"io"
	"os/exec"
	"testing"
)

// BenchmarkServeConnectWarm is one ?connect with the supervisor running:
// probe, secret, token, JSON, in process.
func BenchmarkServeConnectWarm(b *testing.B) {
	e := mustEnvB(b)
	s := New(e.conf, testAssets)
	r := Request{Host: "127.0.0.1:8080", Query: "connect"}
	if resp := s.Serve(context.Background(), r); resp.Status != 200 {
		b.Fatalf("%d %s", resp.Status, resp.Body)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Serve(context.Background(), r)
	}
}

// BenchmarkExecConnectWarm is what a web server pays per ?connect: exec
// of the built stub, with the supervisor running.
func BenchmarkExecConnectWarm(b *testing.B) {
	e := mustEnvB(b)
	bin := mustBuildStub(b, e.conf)
	run := func() {
		cmd := exec.Command(bin)
		cmd.Env = cgiEnv("connect")
		cmd.Stdout = io.Discard
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
	run()
	for b.Loop() {
		run()
	}
}

func BenchmarkParse(b *testing.B) {
	r := Request{Host: "[fe80::1]:8080", Origin: "http://[fe80::1]:8080", Query: "connect&_=1700000000"}
	b.ReportAllocs()
	for b.Loop() {
		ParseQuery(r.Query)
		TokenOrigin(r)
	}
}
