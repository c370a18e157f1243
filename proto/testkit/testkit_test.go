package testkit

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m, nil) }

// TestProcs: a shell started with -state-dir, and the sleep it runs, as
// /proc shows them: found by its command line and as this process's
// child, its child left out as Topmost; killed, it is reaped, and the
// orphaned sleep comes to this process (Main made it the reaper).
func TestProcs(t *testing.T) {
	dir := t.TempDir()
	sh := exec.Command("/bin/sh", "-c", "sleep 600; :", "sh", "-state-dir", dir)
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	pid := sh.Process.Pid
	var sleep int
	for end := time.Now().Add(30 * time.Second); sleep == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) { // bounds a failing test only
			KillAndReap(pid)
			t.Fatal("the shell started no sleep within 30 s")
		}
		if kids := Children(pid); len(kids) == 1 {
			if p, ok := ReadProc(kids[0]); ok && strings.HasPrefix(p.Cmdline, "sleep\x00") {
				sleep = kids[0]
			}
		}
	}
	t.Cleanup(func() { KillAndReap(sleep) })

	if kids := Children(os.Getpid()); !slices.Contains(kids, pid) {
		t.Errorf("Children(me) = %v, want %d among them", kids, pid)
	}
	if got := PIDs(Matching(dir)); !slices.Equal(got, []int{pid}) {
		t.Errorf("Matching(dir) = %v, want [%d]", got, pid)
	}
	if got := Supervisors(dir); !slices.Equal(got, []int{pid}) {
		t.Errorf("Supervisors(dir) = %v, want [%d]", got, pid)
	}
	p, _ := ReadProc(pid)
	s, _ := ReadProc(sleep)
	if got := PIDs(Topmost([]Proc{s, p})); !slices.Equal(got, []int{pid}) {
		t.Errorf("Topmost(sleep, sh) = %v, want [%d]", got, pid)
	}
	if args := p.Args(); !slices.Equal(args, []string{"/bin/sh", "-c", "sleep 600; :", "sh", "-state-dir", dir}) {
		t.Errorf("Args() = %q", args)
	}

	KillAndReap(pid)
	if Alive(pid) {
		t.Errorf("%d alive after KillAndReap", pid)
	}
	if s, ok := ReadProc(sleep); !ok || s.PPID != os.Getpid() || !s.Live() {
		t.Errorf("orphaned sleep: %+v %v, want it live, a child of %d", s, ok, os.Getpid())
	}
	KillAndReap(sleep)
	if _, ok := ReadProc(sleep); ok {
		t.Errorf("sleep %d still in /proc after KillAndReap: not reaped", sleep)
	}
}

// TestBuffer: writers and readers at once (under -race).
func TestBuffer(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("x"))
			}
		}()
		go func() {
			defer wg.Done()
			_ = b.String()
		}()
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Errorf("%d bytes, want 800", n)
	}
}
