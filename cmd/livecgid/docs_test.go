package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsDescribeWhatIs: the manuals say what livecgi does, not how it
// changed or what a later release may bring; such wording goes stale the
// day the change lands.
func TestDocsDescribeWhatIs(t *testing.T) {
	docs := []string{"../../README.md", "../../proto/README.md"}
	more, _ := filepath.Glob("../../plugins/*README.md")
	docs = append(docs, more...)
	more, _ = filepath.Glob("../../plugins/*/README.md")
	docs = append(docs, more...)
	stale := regexp.MustCompile(`(?i)\b(a later release|a future release|(than|as) before|no longer|used to (be|run)|is planned|will be added|coming soon)\b|, when (they|it) comes?,|(^|[.:;] )Before, `)
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		// Paragraphs joined into one line each: phrases wrap.
		text := regexp.MustCompile(`\n[ \t]*`).ReplaceAllString(string(b), " ")
		for _, m := range stale.FindAllStringIndex(text, -1) {
			lo, hi := max(0, m[0]-60), min(len(text), m[1]+60)
			t.Errorf("%s: %q: say what is", strings.TrimPrefix(doc, "../../"), text[lo:hi])
		}
	}
}
