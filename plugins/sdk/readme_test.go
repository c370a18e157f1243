package sdk_test

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEIsExample: the plugin plugins/README.md shows is
// example_test.go, so the compiler checks it against the SDK: the same
// text, as package main with ExampleServe as main.
func TestREADMEIsExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```go\n")
	readme, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("plugins/README.md has no ```go block")
	}
	ex, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(ex), "\npackage sdk_test\n", "\npackage main\n", 1)
	want = strings.Replace(want, "\nfunc ExampleServe() {\n", "\nfunc main() {\n", 1)
	if readme != want {
		t.Errorf("the program in plugins/README.md is not example_test.go (as package main, ExampleServe as main): copy it over\nREADME:\n%s\nexample_test.go as main:\n%s", readme, want)
	}
}
