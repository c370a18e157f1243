package testkit

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Proc is one process as /proc tells it.
type Proc struct {
	PID, PPID int
	State     byte   // of /proc/PID/stat: 'R', 'S', 'D', 'T', 'Z' (a zombie), 'X' (dead), ...
	Cmdline   string // /proc/PID/cmdline: each argument followed by a NUL
}

// Live reports whether p runs: neither a zombie waiting for its reaper
// nor dead.
func (p Proc) Live() bool { return p.State != 'Z' && p.State != 'X' }

// String returns p's pid and arguments, for a test's message.
func (p Proc) String() string {
	return strconv.Itoa(p.PID) + " " + strings.Join(p.Args(), " ")
}

// Args returns p's arguments, from Cmdline.
func (p Proc) Args() []string {
	return strings.Split(strings.TrimSuffix(p.Cmdline, "\x00"), "\x00")
}

// ReadProc reads process pid from /proc; ok is false when it is gone.
func ReadProc(pid int) (p Proc, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 2 || len(f[0]) != 1 {
		return p, false
	}
	p.PID, p.State = pid, f[0][0]
	p.PPID, _ = strconv.Atoi(f[1])
	cmdline, _ := os.ReadFile(dir + "/cmdline") // empty for a kernel thread or a zombie
	p.Cmdline = string(cmdline)
	return p, true
}

// Procs returns the live processes /proc lists, this one left out. One
// that ends while they are read may be left out too.
func Procs() []Proc {
	ents, _ := os.ReadDir("/proc")
	me := os.Getpid()
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == me {
			continue
		}
		if p, ok := ReadProc(pid); ok && p.Live() {
			out = append(out, p)
		}
	}
	return out
}

// Alive reports whether pid runs (a zombie waiting for its reaper does
// not count).
func Alive(pid int) bool {
	p, ok := ReadProc(pid)
	return ok && p.Live()
}

// Children returns the live processes whose parent is pid.
func Children(pid int) []int {
	var out []int
	for _, p := range Procs() {
		if p.PPID == pid {
			out = append(out, p.PID)
		}
	}
	return out
}

// Matching returns the live processes, this one left out, whose command
// line contains s: a temporary directory's path finds what a test
// started there. Arguments are separated by NULs in s as in Cmdline.
func Matching(s string) []Proc {
	var out []Proc
	for _, p := range Procs() {
		if strings.Contains(p.Cmdline, s) {
			out = append(out, p)
		}
	}
	return out
}

// Topmost leaves out of procs those whose parent is among them: a child
// between fork and exec still shows its parent's command line.
func Topmost(procs []Proc) []Proc {
	in := map[int]bool{}
	for _, p := range procs {
		in[p.PID] = true
	}
	var out []Proc
	for _, p := range procs {
		if !in[p.PPID] {
			out = append(out, p)
		}
	}
	return out
}

// PIDs returns the pids of procs.
func PIDs(procs []Proc) []int {
	var out []int
	for _, p := range procs {
		out = append(out, p.PID)
	}
	return out
}

// Supervisors returns the live supervisors started for state dir
// stateDir (the stub starts livecgid with -state-dir), without their
// children between fork and exec (a plugin about to start).
func Supervisors(stateDir string) []int {
	return PIDs(Topmost(Matching("\x00-state-dir\x00" + stateDir + "\x00")))
}

// KillAndReap SIGKILLs pid and waits for it when it is this process's
// child (by birth, or as the reaper Main makes it); else it only kills.
func KillAndReap(pid int) {
	syscall.Kill(pid, syscall.SIGKILL)
	for {
		if _, err := syscall.Wait4(pid, nil, 0, nil); !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}

// KillMatching kills and reaps every process Matching(s) finds.
func KillMatching(s string) {
	for _, p := range Matching(s) {
		KillAndReap(p.PID)
	}
}

// KillSupervisors kills and reaps every process Supervisors(stateDir)
// finds.
func KillSupervisors(stateDir string) {
	for _, pid := range Supervisors(stateDir) {
		KillAndReap(pid)
	}
}
