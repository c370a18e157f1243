package sdktest

import (
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// CopyFixture copies the directory tree src (a /proc or /sys fixture) into
// a fresh temporary directory and returns the copy, which a test may write
// to. Path elements are URL-unescaped on the way: sysfs names hold ':'
// ("input0::capslock"), which the files of a Go module cannot, so fixtures
// store them escaped ("input0%3A%3Acapslock").
func CopyFixture(tb testing.TB, src string) string {
	tb.Helper()
	root := tb.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		name, err := url.PathUnescape(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		dst := filepath.Join(root, filepath.FromSlash(name))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		tb.Fatalf("copy fixture %s: %v", src, err)
	}
	return root
}
