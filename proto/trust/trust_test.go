package trust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckTrust(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "bin")
	os.WriteFile(f, []byte("x"), 0o755)
	if err := CheckTrust(f); err != nil {
		t.Fatalf("private file: %v", err)
	}
	var te *TrustError
	os.Chmod(f, 0o777)
	if err := CheckTrust(f); !errors.As(err, &te) || te.Path != f || te.Fix != "chmod go-w "+f {
		t.Fatalf("0777 file: %v", err)
	}
	os.Chmod(f, 0o755)
	os.Chmod(dir, 0o770)
	if err := CheckTrust(f); !errors.As(err, &te) || te.Path != dir || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("group-writable dir: %v", err)
	}
	os.Chmod(dir, 0o700)
	if err := CheckTrust(filepath.Join(dir, "missing")); err == nil || errors.As(err, &te) {
		t.Fatalf("missing file: %v, want a stat error", err)
	}
	if os.Getuid() != 0 {
		return // chown needs root
	}
	os.Chown(f, 4321, 4321)
	if err := CheckTrust(f); !errors.As(err, &te) || !strings.Contains(err.Error(), "owned by uid 4321") || te.Fix != "chown root "+f {
		t.Fatalf("file of another user: %v", err)
	}
}
