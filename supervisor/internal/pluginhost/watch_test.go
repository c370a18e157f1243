package pluginhost

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestUsableBinary: a complete binary with compressed DWARF sections (a
// plain go build) is usable; any prefix of it is not.
func TestUsableBinary(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o600)
	bin := filepath.Join(dir, "full")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fi, _ := os.Stat(bin)
	if err := usableBinary(bin, fi); err != nil {
		t.Fatalf("complete binary refused: %v", err)
	}
	b, _ := os.ReadFile(bin)
	for _, n := range []int{16, len(b) / 3, len(b) - 1} {
		part := filepath.Join(dir, "part")
		os.WriteFile(part, b[:n], 0o755)
		fi, _ := os.Stat(part)
		if err := usableBinary(part, fi); err == nil {
			t.Errorf("first %d of %d bytes accepted", n, len(b))
		}
	}
	os.Chmod(bin, 0o644)
	fi, _ = os.Stat(bin)
	if err := usableBinary(bin, fi); err == nil || err.Error() != "not executable" {
		t.Errorf("non-executable: %v", err)
	}
}
