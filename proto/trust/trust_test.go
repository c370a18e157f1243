package trust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "bin")
	os.WriteFile(f, []byte("x"), 0o755)
	if err := Check(f, Options{}); err != nil {
		t.Fatalf("private file: %v", err)
	}
	var te *Error
	os.Chmod(f, 0o777)
	if err := Check(f, Options{}); !errors.As(err, &te) || te.Path != f || te.Fix != "chmod go-w "+f {
		t.Fatalf("0777 file: %v", err)
	}
	os.Chmod(f, 0o755)
	os.Chmod(dir, 0o770)
	if err := Check(f, Options{}); !errors.As(err, &te) || te.Path != dir || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("group-writable dir: %v", err)
	}
	os.Chmod(dir, 0o700)
	if err := Check(filepath.Join(dir, "missing"), Options{}); err == nil || errors.As(err, &te) {
		t.Fatalf("missing file: %v, want a stat error", err)
	}
	if os.Getuid() != 0 {
		return // chown needs root
	}
	os.Chown(f, 4321, 4321)
	if err := Check(f, Options{}); !errors.As(err, &te) || !strings.Contains(err.Error(), "owned by uid 4321") || te.Fix != "chown root "+f {
		t.Fatalf("file of another user: %v", err)
	}
}

// TestCheckLinks: a symlink is followed whatever the options: a file that
// others can replace behind a link from a private directory is refused,
// as the link is only as safe as its target's directory.
func TestCheckLinks(t *testing.T) {
	open := t.TempDir()
	os.Chmod(open, 0o777)
	target := filepath.Join(open, "users")
	os.WriteFile(target, []byte("x"), 0o600)
	private := t.TempDir()
	link := filepath.Join(private, "users")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{}, {Secret: true}, {Secret: true, StickyDirs: true}} {
		var te *Error
		if err := Check(link, o); !errors.As(err, &te) || te.Path != open || !strings.Contains(err.Error(), "writable by group or others") {
			t.Errorf("%+v: link into a 0777 dir: %v", o, err)
		}
	}
	os.Chmod(open, 0o755)
	if err := Check(link, Options{Secret: true}); err != nil {
		t.Errorf("link into a safe dir: %v", err)
	}
	os.Chmod(target, 0o666)
	if err := Check(link, Options{}); err == nil || !strings.Contains(err.Error(), "is writable by group or others") {
		t.Errorf("link to a 0666 file: %v", err)
	}
}

// TestCheckSecret: a secret must not be readable by others; group may.
func TestCheckSecret(t *testing.T) {
	f := filepath.Join(t.TempDir(), "password")
	os.WriteFile(f, []byte("x"), 0o600)
	for mode, want := range map[os.FileMode]string{0o600: "", 0o640: "", 0o644: "is readable by others (mode -rw-r--r--); fix: chmod o-r " + f} {
		os.Chmod(f, mode)
		if err := Check(f, Options{Secret: true}); want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("mode %v: %v, want %q", mode, err, want)
		}
		if err := Check(f, Options{}); err != nil {
			t.Errorf("mode %v, not a secret: %v", mode, err)
		}
	}
}

// TestCheckSticky: a directory writable by others is refused, unless it
// is sticky and the options allow that; then the entry must be ours,
// a symlink's own owner included.
func TestCheckSticky(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o777|os.ModeSticky)
	f := filepath.Join(dir, "users")
	os.WriteFile(f, []byte("x"), 0o600)
	if err := Check(f, Options{}); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("sticky dir, no StickyDirs: %v", err)
	}
	if err := Check(f, Options{StickyDirs: true}); err != nil {
		t.Errorf("sticky dir, StickyDirs: %v", err)
	}
	os.Chmod(dir, 0o777)
	if err := Check(f, Options{StickyDirs: true}); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("0777 dir without the sticky bit: %v", err)
	}
	if os.Getuid() != 0 {
		return // chown needs root
	}
	// Another user's link in a sticky dir, to a file of ours elsewhere:
	// that user can point it anywhere.
	os.Chmod(dir, 0o777|os.ModeSticky)
	safe := filepath.Join(t.TempDir(), "users")
	os.WriteFile(safe, []byte("x"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(safe, link)
	if err := Check(link, Options{StickyDirs: true}); err != nil {
		t.Errorf("our link in a sticky dir: %v", err)
	}
	os.Lchown(link, 4321, 4321)
	if err := Check(link, Options{StickyDirs: true}); err == nil || !strings.Contains(err.Error(), link+" is owned by uid 4321") {
		t.Errorf("another user's link in a sticky dir: %v", err)
	}
}

// TestCheckNotRegular: directories and devices are not files to trust.
func TestCheckNotRegular(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	for _, p := range []string{sub, "/dev/null"} {
		if err := Check(p, Options{}); err == nil {
			t.Errorf("%s: accepted", p)
		}
	}
	if err := Check(sub, Options{}); err == nil || err.Error() != sub+" is not a regular file" {
		t.Errorf("directory: %v", err)
	}
}
