package trust

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// TrustError is a file that someone other than this user or root could
// have replaced. Fix is the command that repairs it.
type TrustError struct {
	Path    string
	Problem string // "is writable by group or others (mode ...)", "is owned by uid N, ..."
	Fix     string
}

func (e *TrustError) Error() string { return e.Path + " " + e.Problem + "; fix: " + e.Fix }

// CheckTrust refuses a file that others could have replaced: the file or
// its directory writable by group or others, or owned by someone other than
// this user or root. A symlink is only as safe as the file it names and
// that file's directory, so those are checked too. Trust problems are
// *TrustError; a file that cannot be examined gives os.Stat's error. The
// supervisor applies it to plugins, the stub to the supervisor binary and
// Load to the configuration file.
func CheckTrust(path string) error {
	uid := uint32(os.Getuid())
	check := []string{filepath.Dir(path), path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		check = append(check, filepath.Dir(real), real)
	}
	for _, p := range check {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o022 != 0 {
			return &TrustError{p, fmt.Sprintf("is writable by group or others (mode %v)", fi.Mode().Perm()), "chmod go-w " + p}
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uid && st.Uid != 0 {
			return &TrustError{p, "is owned by uid " + strconv.Itoa(int(st.Uid)) + ", not " + strconv.Itoa(int(uid)) + " or root", "chown root " + p}
		}
	}
	return nil
}

// CheckTrusted refuses a file others could have written, as the supervisor
// refuses plugins: it and its directory must not be writable by group or
// others and must be owned by this user or root. A users file must also
// not be readable by others (it holds password hashes).
func CheckTrusted(path string, secret bool) error {
	uid := uint32(os.Getuid())
	for i, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if i == 0 && !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		if fi.Mode().Perm()&0o022 != 0 && !(i == 1 && fi.Mode()&fs.ModeSticky != 0) {
			return fmt.Errorf("%s is writable by group or others (mode %v)", p, fi.Mode().Perm())
		}
		if i == 0 && secret && fi.Mode().Perm()&0o004 != 0 {
			return fmt.Errorf("%s is readable by others (mode %v); chmod o-r it", p, fi.Mode().Perm())
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uid && st.Uid != 0 {
			return fmt.Errorf("%s is owned by uid %d, not %d or root", p, st.Uid, uid)
		}
	}
	return nil
}
