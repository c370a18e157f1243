// Package testkit is what this module's tests share, written once: Buffer
// (output several goroutines write and a test reads), the processes /proc
// lists (Matching, Children, Supervisors, KillAndReap) and Main, a
// TestMain that makes the test process the reaper of the daemons its
// tests start. Standard library only, so the stub's tests stay light.
// Tests import it; programs never do (TestDependenciesFlowOneWay).
//
// Why here: the tests of cgi/, cmd/, plugins/ and supervisor/ use it. Go
// lets a package under X/internal/ be imported only from within X/, and
// the module's root holds nothing but cmd/ supervisor/ plugins/ cgi/
// proto/, so an internal/ package cannot serve them all. proto/ holds the
// contracts every part already imports, so a package under it adds no
// new direction to the dependencies.
package testkit

import (
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Buffer is a strings.Builder that several goroutines may write while
// others read it: a process's stderr, a logger's output. The zero value
// is empty and ready; all methods may be called concurrently.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Main is a TestMain for tests that start daemons: a stub starts a
// supervisor detached (setsid, its parent exits), and the orphan would
// go to init. Main makes this process their reaper instead
// (PR_SET_CHILD_SUBREAPER), so that a test can wait for them, see their
// exit, and reap them in its cleanup (KillAndReap). After the tests it
// calls cleanup (if not nil: kill what is left, remove build dirs),
// reaps every child that has exited, and exits with the tests' code.
func Main(m *testing.M, cleanup func()) {
	const prSetChildSubreaper = 36
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	code := m.Run()
	if cleanup != nil {
		cleanup()
	}
	for {
		if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
			break
		}
	}
	os.Exit(code)
}
