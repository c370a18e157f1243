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
	"time"
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
// falls back to a directory under the system temp dir (fallbackDir), and
// says why in the returned fallback error (nil when dir was used). The
// process umask is set to 077 first: web servers run CGIs with odd umasks
// (boa: 0177).
func StateDir(dir string) (used string, fallback error, err error) {
	syscall.Umask(0o077)
	if err := privateDir(dir); err == nil {
		return dir, nil, nil
	} else {
		fallback = err
	}
	alt, err := fallbackDir(os.TempDir(), os.Getuid())
	if err != nil {
		return "", fallback, fmt.Errorf("state dir not usable: %v; fallback: %w", fallback, err)
	}
	return alt, fallback, nil
}

// fallbackDir is livecgi-<uid> under tmp when that is ours or can be made
// ours. Any local user can take that name first, so then it is one of our
// own livecgi-<uid>-<time>-<random>: others cannot make a directory owned
// by us, so every stub and supervisor of this user finds the same ones.
// Of those, the first (in name order, which is age) whose control socket
// answers, else the first; none yet, a new one. Two stubs that create one
// each at the same moment thus settle on the one a supervisor runs in.
func fallbackDir(tmp string, uid int) (string, error) {
	base := filepath.Join(tmp, "livecgi-"+strconv.Itoa(uid))
	baseErr := privateDir(base)
	if baseErr == nil {
		return base, nil
	}
	if d := ownDir(base+"-", uid); d != "" {
		return d, nil
	}
	rnd := make([]byte, 8)
	rand.Read(rnd)
	name := fmt.Sprintf("%s-%016x-%x", base, time.Now().UnixNano(), rnd)
	if err := os.Mkdir(name, 0o700); err != nil {
		return "", fmt.Errorf("%v; %w", baseErr, err)
	}
	if d := ownDir(base+"-", uid); d != "" {
		return d, nil
	}
	return name, nil
}

// ownDir picks among the directories named prefix* that uid owns with mode
// 0700 (see fallbackDir); "" if there is none.
func ownDir(prefix string, uid int) string {
	names, _ := filepath.Glob(prefix + "*") // sorted
	var first string
	for _, n := range names {
		fi, err := os.Lstat(n)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
			continue
		}
		if fd, err := dial(filepath.Join(n, ControlFile), time.Second); err == nil {
			syscall.Close(fd)
			return n
		}
		if first == "" {
			first = n
		}
	}
	return first
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
