package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTick = 100

// Proc is one process of a measured tree.
type Proc struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	RSS  int64  `json:"rss_kb"`
	PSS  int64  `json:"pss_kb"`
	Anon int64  `json:"anon_kb"` // anonymous memory: what the process really owns
	CPU  int64  `json:"cpu_ticks"`
}

// Usage is the memory and CPU of a process and all its descendants.
type Usage struct {
	Procs int    `json:"procs"`
	RSS   int64  `json:"rss_kb"`
	PSS   int64  `json:"pss_kb"`
	Anon  int64  `json:"anon_kb"`
	CPU   int64  `json:"cpu_ticks"` // utime+stime(+cutime+cstime), see treeUsage
	List  []Proc `json:"list,omitempty"`
}

// procFS reads process figures under root (normally /proc; tests pass a
// fixture).
type procFS struct{ root string }

// stat returns a process's parent, name and CPU ticks: utime+stime of the
// process plus cutime+cstime, the times of the children it has reaped
// (CGI processes that came and went, under their web server).
func (p procFS) stat(pid int) (ppid int, comm string, ticks int64, err error) {
	b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, "", 0, err
	}
	return parseStat(b)
}

// parseStat reads /proc/<pid>/stat: "pid (comm) state ppid … utime stime
// cutime cstime …", where comm may hold spaces and parentheses.
func parseStat(b []byte) (ppid int, comm string, ticks int64, err error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return 0, "", 0, fmt.Errorf("stat: no (comm) in %q", b)
	}
	comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	// f[0] is the state (field 3); utime is field 14, so f[11]; cstime f[14].
	if len(f) < 15 {
		return 0, "", 0, fmt.Errorf("stat: %d fields after comm, want 15 or more", len(f))
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, "", 0, fmt.Errorf("stat: ppid: %w", err)
	}
	for _, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, "", 0, fmt.Errorf("stat: times: %w", err)
		}
		ticks += v
	}
	return ppid, comm, ticks, nil
}

// smaps returns Rss, Pss and Anonymous (kB) from /proc/<pid>/smaps_rollup.
func (p procFS) smaps(pid int) (rss, pss, anon int64, err error) {
	b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0, 0, 0, err
	}
	return parseRollup(b)
}

func parseRollup(b []byte) (rss, pss, anon int64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	found := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		var dst *int64
		switch f[0] {
		case "Rss:":
			dst = &rss
		case "Pss:":
			dst = &pss
		case "Anonymous:":
			dst = &anon
		default:
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("smaps_rollup: %s: %w", f[0], err)
		}
		*dst = v
		found++
	}
	if found < 3 {
		return 0, 0, 0, fmt.Errorf("smaps_rollup: want Rss, Pss and Anonymous, found %d of them", found)
	}
	return rss, pss, anon, sc.Err()
}

// tree returns root and every live descendant of it.
func (p procFS) tree(root int) []int {
	kids := map[int][]int{}
	ents, _ := os.ReadDir(p.root)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, _, err := p.stat(pid); err == nil {
			kids[ppid] = append(kids[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, kids[out[i]]...)
	}
	return out
}

// usage sums the tree under root. Processes that end while it reads are
// skipped; a root that is gone is an error. With list, each process is
// returned too, largest PSS first.
func (p procFS) usage(root int, list bool) (Usage, error) {
	var u Usage
	for i, pid := range p.tree(root) {
		_, comm, ticks, err := p.stat(pid)
		if err != nil {
			if i == 0 {
				return u, fmt.Errorf("process %d: %w", root, err)
			}
			continue
		}
		rss, pss, anon, err := p.smaps(pid)
		if err != nil && i == 0 {
			return u, fmt.Errorf("process %d: %w", root, err)
		}
		u.Procs++
		u.RSS += rss
		u.PSS += pss
		u.Anon += anon
		u.CPU += ticks
		if list {
			u.List = append(u.List, Proc{PID: pid, Comm: comm, RSS: rss, PSS: pss, Anon: anon, CPU: ticks})
		}
	}
	sort.Slice(u.List, func(i, j int) bool { return u.List[i].PSS > u.List[j].PSS })
	return u, nil
}
