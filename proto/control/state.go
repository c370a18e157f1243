package control

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Names of the files in the state directory.
const (
	LockFile    = "livecgid.lock"
	ControlFile = "control.sock"
	SecretFile  = "secret"
	LogFile     = "livecgid.log"
	StubLogFile = "live.cgi.log"
	SocketDir   = "plugins" // go-plugin's unix sockets
)

// StateDir makes sure dir exists as a private directory of this user (mode
// 0700, not writable by others) and returns it. If dir cannot be used it
// falls back to livecgi-<uid> under the system temp dir, and says why in
// the returned fallback error (nil when dir was used). The process umask is
// set to 077 first: web servers run CGIs with odd umasks (boa: 0177).
func StateDir(dir string) (used string, fallback error, err error) {
	syscall.Umask(0o077)
	if err := privateDir(dir); err == nil {
		return dir, nil, nil
	} else {
		fallback = err
	}
	alt := filepath.Join(os.TempDir(), "livecgi-"+strconv.Itoa(os.Getuid()))
	if err := privateDir(alt); err != nil {
		return "", fallback, fmt.Errorf("state dir not usable: %v; fallback: %w", fallback, err)
	}
	return alt, fallback, nil
}

func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s: not a directory", dir)
	case ok && int(st.Uid) != os.Getuid():
		return fmt.Errorf("%s: owned by uid %d, not %d", dir, st.Uid, os.Getuid())
	case fi.Mode().Perm()&0o077 != 0:
		// Ours: tighten it (an older release, or a hand-made dir).
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	if fi.Mode().Perm()&0o700 != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}
	return syscall.Access(dir, 7) // rwx for us, or the umask bit us
}

// Secret returns the HMAC secret in dir, creating it (32 random bytes, mode
// 0600) on first use. Concurrent first callers all get the same secret.
func Secret(dir string) ([]byte, error) {
	path := filepath.Join(dir, SecretFile)
	b, err := os.ReadFile(path)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	// Write a temp file, then link it into place: readers never see a
	// half-written secret and only the first link wins.
	f, err := os.CreateTemp(dir, ".secret-*")
	if err != nil {
		return nil, fmt.Errorf("create secret: %w", err)
	}
	defer os.Remove(f.Name())
	nb := make([]byte, 32)
	rand.Read(nb)
	if _, err := f.Write(nb); err != nil {
		f.Close()
		return nil, fmt.Errorf("write secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write secret: %w", err)
	}
	if err := os.Link(f.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("install secret: %w", err)
	}
	b, err = os.ReadFile(path)
	if err != nil || len(b) < 32 {
		return nil, fmt.Errorf("read secret: %v (%d bytes)", err, len(b))
	}
	return b, nil
}
