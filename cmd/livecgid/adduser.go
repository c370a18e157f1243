package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
)

// The -adduser flags' help, shared with livecgid -help.
const (
	addUserUsage = "add or change the user `name` in the users file, reading the password from stdin, and exit"
	roleUsage    = "with -adduser: the user's role, operator or viewer"
	usersUsage   = "with -adduser: the users `file` (default: the config's auth_users, conventionally " + defaultUsersFile + ")"
)

// defaultUsersFile is where the sample configuration puts auth_users.
const defaultUsersFile = "/etc/livecgi/users"

// isAddUser reports whether args ask for -adduser.
func isAddUser(args []string) bool {
	for _, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == "adduser" || strings.HasPrefix(a, "adduser=") {
			return true
		}
	}
	return false
}

// addUser is livecgid -adduser NAME [-role operator|viewer] [-users file]:
// it reads the password from the first line of stdin (without echo on a
// terminal) and adds or replaces NAME's entry in the users file (the
// config's auth_users unless -users names one).
func addUser(args []string, stdin *os.File, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("livecgid -adduser", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("adduser", "", addUserUsage)
	role := fs.String("role", auth.RoleOperator, roleUsage)
	configPath := fs.String("config", "/etc/livecgi/livecgi.conf", "configuration `file`, for auth_users")
	users := fs.String("users", "", usersUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	path := *users
	if path == "" {
		cfg, err := config.Load(*configPath)
		if err != nil {
			return err
		}
		if path = cfg.AuthUsers; path == "" {
			return fmt.Errorf("%s sets no auth_users: set it, or pass -users", *configPath)
		}
	}
	if !auth.ValidUser(*name) {
		return fmt.Errorf("bad user name %q: 1 to %d bytes, no spaces, colons or control characters", *name, auth.MaxUser)
	}
	if !auth.ValidRole(*role) {
		return fmt.Errorf("role %q: want operator or viewer", *role)
	}
	pass, err := readPassword(stdin, stderr)
	if err != nil {
		return err
	}
	hash, err := auth.HashPassword(pass)
	if err != nil {
		return err
	}
	replaced, err := auth.SetUser(path, auth.User{Name: *name, Role: *role, Hash: hash})
	if err != nil {
		return err
	}
	verb := "added"
	if replaced {
		verb = "changed"
	}
	fmt.Fprintf(stdout, "%s %s (%s) in %s\n", verb, *name, *role, path)
	return nil
}

// readPassword reads one line: any bytes but a newline (a final CR is
// dropped too). On a terminal it asks for it and turns echo off.
func readPassword(in *os.File, prompt io.Writer) (string, error) {
	if t, err := unix.IoctlGetTermios(int(in.Fd()), unix.TCGETS); err == nil {
		fmt.Fprint(prompt, "Password: ")
		quiet := *t
		quiet.Lflag &^= unix.ECHO
		unix.IoctlSetTermios(int(in.Fd()), unix.TCSETS, &quiet)
		defer func() {
			unix.IoctlSetTermios(int(in.Fd()), unix.TCSETS, t)
			fmt.Fprintln(prompt)
		}()
	}
	line, err := bufio.NewReaderSize(in, 4096).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case line == "":
		return "", errors.New("empty password: give one on the first line of stdin")
	case len(line) > 1024:
		return "", errors.New("password over 1024 bytes")
	}
	return line, nil
}
