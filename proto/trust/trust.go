package trust

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Error is a file that someone other than this user or root could have
// replaced, changed or read. Fix is the command that repairs it.
type Error struct {
	Path    string
	Problem string // "is writable by group or others (mode ...)", "is owned by uid N, ..."
	Fix     string
}

func (e *Error) Error() string { return e.Path + " " + e.Problem + "; fix: " + e.Fix }

// Options are what sets one file apart from another under Check.
type Options struct {
	// Secret: the file holds secrets (password hashes, a private key), so
	// it must not be readable by others either.
	Secret bool
	// StickyDirs accepts a directory writable by others when it has the
	// sticky bit (/tmp, or the RAM disk a read-only firmware writes its
	// files to): there others may add files but not remove or rename
	// theirs, so the entry itself must then be this user's or root's (a
	// symlink's own owner included). For data files: a program is never
	// run from such a directory.
	StickyDirs bool
}

// Check refuses a file that others could have replaced or changed: not a
// regular file, the file or its directory writable by group or others, or
// owned by someone other than this user or root. A symlink is only as
// safe as the file it names and that file's directory, so those are
// checked too. Trust problems are *Error; a file that cannot be examined
// gives os.Stat's error.
//
// It is the one rule for every file livecgi reads or runs with its
// user's rights: plugins, exec's programs and confs, the supervisor
// binary (the stub), auth_command and the configuration file with
// Options{}; the users file and the MQTT password and key with Secret and
// StickyDirs.
func Check(path string, o Options) error {
	uid := uint32(os.Getuid())
	check := []string{filepath.Dir(path), path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		check = append(check, filepath.Dir(real), real)
	}
	for i, p := range check {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		dir := i%2 == 0
		if !dir && !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		if perm := fi.Mode().Perm(); perm&0o022 != 0 {
			sticky := dir && o.StickyDirs && fi.Mode()&fs.ModeSticky != 0
			if !sticky {
				return &Error{p, fmt.Sprintf("is writable by group or others (mode %v)", perm), "chmod go-w " + p}
			}
			// Others may add to this directory: the entry must be ours.
			entry := check[i+1]
			efi, err := os.Lstat(entry)
			if err != nil {
				return err
			}
			if err := owner(entry, efi, uid); err != nil {
				return err
			}
		}
		if !dir && o.Secret && fi.Mode().Perm()&0o004 != 0 {
			return &Error{p, fmt.Sprintf("is readable by others (mode %v)", fi.Mode().Perm()), "chmod o-r " + p}
		}
		if err := owner(p, fi, uid); err != nil {
			return err
		}
	}
	return nil
}

// owner refuses p (described by fi) unless uid or root owns it.
func owner(p string, fi fs.FileInfo, uid uint32) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uid && st.Uid != 0 {
		return &Error{p, "is owned by uid " + strconv.Itoa(int(st.Uid)) + ", not " + strconv.Itoa(int(uid)) + " or root", "chown root " + p}
	}
	return nil
}
