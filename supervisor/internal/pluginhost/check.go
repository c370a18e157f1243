package pluginhost

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// CheckPluginFile reports why livecgid would not run the file name in the
// plugins directory dir: not a complete executable, not trusted (see
// control.CheckTrust), or not allowed by sums (cfg plugin_sha256; empty allows
// any). ok is false for names livecgid ignores (".x", "x~", "x.tmp", …).
func CheckPluginFile(dir, name string, sums map[string]string) (ok bool, err error) {
	if !candidate(name) {
		return false, nil
	}
	path := dir + "/" + name
	fi, err := os.Stat(path)
	if err != nil {
		return true, err
	}
	if err := usableBinary(path, fi); err != nil {
		return true, err
	}
	if err := checkTrust(path); err != nil {
		return true, err
	}
	if len(sums) == 0 {
		return true, nil
	}
	want, listed := sums[name]
	if !listed {
		return true, fmt.Errorf("%w: %s is not in the plugin_sha256 allowlist", ErrRefused, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return true, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return true, err
	}
	if hex.EncodeToString(h.Sum(nil)) != want {
		return true, fmt.Errorf("%w: SHA-256 of %s does not match plugin_sha256 in the config", ErrRefused, path)
	}
	return true, nil
}
