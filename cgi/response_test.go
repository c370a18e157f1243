package cgi

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// TestWriteCGI compares whole CGI answers with testdata/*.golden.
func TestWriteCGI(t *testing.T) {
	tests := []struct {
		name string
		resp Response
		head bool
	}{
		{"error", errorResponse(400, ErrBadRequest, `unknown query parameter "x<y>": want none, client.js or connect`), false},
		{"error_head", errorResponse(403, ErrCrossSite, "cross-site request"), true},
		{"error_long_reason", errorResponse(503, ErrSupervisor, strings.Repeat("é", 400)), false},
		{"not_modified", Response{Status: 304, Header: []Field{{"ETag", `"abc"`}}, Body: []byte("dropped")}, false},
		{"page", (&Stub{Assets: testAssets}).asset(Request{}, testAssets.Page, "text/html; charset=utf-8", "no-cache"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.resp.WriteCGI(&b, tt.head); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "cgi_"+tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("got\n%s\nwant\n%s", b.Bytes(), want)
			}
			if !bytes.HasPrefix(b.Bytes(), []byte("Status: ")) {
				t.Error("Status: is not the first line (busybox httpd needs it first)")
			}
		})
	}
}
