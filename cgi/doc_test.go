package cgi

import (
	"os"
	"strings"
	"testing"
)

// TestDocListsQueries: doc.go lists every query the stub answers, as
// ParseQuery names them when it refuses another.
func TestDocListsQueries(t *testing.T) {
	_, err := ParseQuery("no_such_query")
	if err == nil {
		t.Fatal("ParseQuery accepted an unknown query")
	}
	_, list, ok := strings.Cut(err.Error(), "want none, ")
	if !ok {
		t.Fatalf("ParseQuery's error %q does not list the queries", err)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	queries := strings.Fields(strings.NewReplacer(",", " ", " or ", " ").Replace(list))
	if len(queries) < 5 {
		t.Fatalf("queries %q from %q", queries, list)
	}
	for _, q := range queries {
		if !strings.Contains(string(doc), "live.cgi?"+q) {
			t.Errorf("doc.go does not show live.cgi?%s", q)
		}
	}
}
