package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// root is the module's root, from this package's directory.
const root = "../.."

// docFiles returns the module's files whose names end in one of exts,
// relative to root, outside bin/ and hidden directories.
func docFiles(t *testing.T, exts ...string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		for _, ext := range exts {
			if strings.HasSuffix(path, ext) {
				files = append(files, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestDocsDescribeWhatIs: the manuals say what livecgi does, not how it
// changed or what a later release may bring; such wording goes stale the
// day the change lands.
func TestDocsDescribeWhatIs(t *testing.T) {
	stale := regexp.MustCompile(`(?i)\b(a later release|a future release|(than|as) before|no longer|used to (be|run)|is planned|will be added|coming soon)\b|, when (they|it) comes?,|(^|[.:;] )Before, `)
	docs := docFiles(t, ".md")
	if len(docs) < 8 {
		t.Fatalf("found only %q", docs)
	}
	for _, doc := range docs {
		if strings.Contains(doc, "/results/") {
			continue // written by livecgi-bench report
		}
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		// Paragraphs joined into one line each: phrases wrap.
		text := regexp.MustCompile(`\n[ \t]*`).ReplaceAllString(string(b), " ")
		for _, m := range stale.FindAllStringIndex(text, -1) {
			lo, hi := max(0, m[0]-60), min(len(text), m[1]+60)
			t.Errorf("%s: %q: say what is", doc, text[lo:hi])
		}
	}
}

// TestREADMEShort: the top-level README is something a newcomer reads
// through: it starts with the two commands they type, and the manuals
// live beside the code they describe.
func TestREADMEShort(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 250 {
		t.Errorf("README.md has %d lines: keep it at most 250, and move the details to a manual beside the code", n)
	}
	intro, _, _ := strings.Cut(string(b), "\n## ")
	_, block, _ := strings.Cut(intro, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	if !strings.Contains(block, "make demo") || !strings.Contains(block, "make test") {
		t.Errorf("README.md: the first code block, before any section, is %q: want make demo and make test", block)
	}
}

var (
	fence    = regexp.MustCompile("(?ms)^[ \t]*```.*?^[ \t]*```[^\n]*$")
	codeSpan = regexp.MustCompile("`[^`\n]*`")
	mdLink   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading  = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *#*$`)
	boldLead = regexp.MustCompile(`\*\*([^*\n]+?)\.?\*\*`)
	// A section cited by name: `proto/README.md, §4.3 "Units"`.
	citation = regexp.MustCompile(`(?:^|[\s(])((?:[\w.-]+/)*[\w.-]+\.md),? (?:§[\d.]+,? )?"([^"]+)"`)
	goFile   = regexp.MustCompile(`(?:[\w.-]+/)*[\w-]+\.go\b`)
)

// markdown is a markdown file's headings' anchors and names, and the
// relative links of its prose (code blocks and spans left out).
type markdown struct {
	anchors map[string]bool
	names   []string // headings and **bold leads**, lower case
	links   []string
}

func readMarkdown(t *testing.T, path string) *markdown {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	prose := fence.ReplaceAllString(string(b), "")
	md := &markdown{anchors: map[string]bool{}}
	for _, m := range heading.FindAllStringSubmatch(prose, -1) {
		text := strings.ReplaceAll(m[1], "`", "")
		md.names = append(md.names, strings.ToLower(text))
		// GitHub's anchor: lower case, punctuation dropped, spaces to
		// hyphens; a repeated one gets -1, -2, ...
		slug := strings.Map(func(r rune) rune {
			switch {
			case r == ' ':
				return '-'
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
				return unicode.ToLower(r)
			}
			return -1
		}, text)
		for i, s := 1, slug; ; i++ {
			if !md.anchors[s] {
				md.anchors[s] = true
				break
			}
			s = slug + "-" + string(rune('0'+i))
		}
	}
	for _, m := range boldLead.FindAllStringSubmatch(prose, -1) {
		md.names = append(md.names, strings.ToLower(m[1]))
	}
	for _, m := range mdLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(prose, ""), -1) {
		if !strings.Contains(m[1], "://") && !strings.HasPrefix(m[1], "mailto:") {
			md.links = append(md.links, m[1])
		}
	}
	return md
}

// TestDocLinks: what the docs and comments point at is there, so text
// can move between manuals without leaving readers at a dead end:
//   - every relative link of a markdown file names a file of the tree,
//     and its #anchor a heading of that file;
//   - a section cited by name (README.md, "Who can do what") is a
//     heading or a bold lead of that file, or of a file it links to
//     (where the section moved);
//   - a .go file a Go comment names exists.
func TestDocLinks(t *testing.T) {
	mds := map[string]*markdown{}
	md := func(path string) *markdown {
		if mds[path] == nil {
			mds[path] = readMarkdown(t, filepath.Join(root, path))
		}
		return mds[path]
	}
	// target resolves a link or citation made in file from, relative to
	// its directory, else (for citations) to the root.
	target := func(from, ref string, orRoot bool) (string, bool) {
		p := filepath.Join(filepath.Dir(from), ref)
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			return p, true
		}
		if orRoot {
			if _, err := os.Stat(filepath.Join(root, ref)); err == nil {
				return filepath.Clean(ref), true
			}
		}
		return "", false
	}
	hasSection := func(path, name string) bool {
		name = strings.ToLower(name)
		found := func(m *markdown) bool {
			for _, n := range m.names {
				if strings.Contains(n, name) {
					return true
				}
			}
			return false
		}
		if found(md(path)) {
			return true
		}
		for _, l := range md(path).links {
			file, _, _ := strings.Cut(l, "#")
			if p, ok := target(path, file, false); ok && strings.HasSuffix(p, ".md") && found(md(p)) {
				return true
			}
		}
		return false
	}
	checkCitations := func(from, text string) {
		text = regexp.MustCompile(`\s*\n\s*`).ReplaceAllString(text, " ")
		for _, m := range citation.FindAllStringSubmatch(text, -1) {
			p, ok := target(from, m[1], true)
			if !ok {
				t.Errorf("%s cites %s, which is not there", from, m[1])
			} else if !hasSection(p, m[2]) {
				t.Errorf("%s cites %s, %q: no such section there or in what it links to", from, m[1], m[2])
			}
		}
	}

	for _, doc := range docFiles(t, ".md") {
		for _, l := range md(doc).links {
			file, anchor, _ := strings.Cut(l, "#")
			p := doc
			if file != "" {
				var ok bool
				if p, ok = target(doc, file, false); !ok {
					t.Errorf("%s links to %s, which is not there", doc, l)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(p, ".md") && !md(p).anchors[anchor] {
				t.Errorf("%s links to %s: %s has no heading #%s", doc, l, p, anchor)
			}
		}
		b, _ := os.ReadFile(filepath.Join(root, doc))
		checkCitations(doc, codeSpan.ReplaceAllString(fence.ReplaceAllString(string(b), ""), ""))
	}
	for _, conf := range docFiles(t, ".conf") {
		b, _ := os.ReadFile(filepath.Join(root, conf))
		checkCitations(conf, regexp.MustCompile(`(?m)^#[ \t]?`).ReplaceAllString(string(b), "")) // comments wrap
	}
	for _, src := range docFiles(t, ".go") {
		if strings.HasSuffix(src, ".pb.go") {
			continue // generated
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, src), nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			continue // testdata may hold what does not parse
		}
		for _, g := range f.Comments {
			text := g.Text()
			checkCitations(src, text)
			for _, name := range goFile.FindAllString(text, -1) {
				if _, ok := target(src, name, true); ok {
					continue
				}
				if first, _, nested := strings.Cut(name, "/"); nested {
					if _, err := os.Stat(filepath.Join(root, first)); err != nil {
						continue // another project's file (go/src/net/http/cgi/child.go)
					}
				}
				t.Errorf("%s: a comment names %s, which is not there", src, name)
			}
		}
	}
}
