package worker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// procStat is the part of /proc/<pid>/stat that the worker package uses.
type procStat struct {
	PID       int
	PPID      int
	PGID      int
	State     byte
	StartTime uint64 // clock ticks after boot: with PID, identifies a process
	RSSPages  int64
}

// dead reports whether the process has exited (zombie or dying) and only
// waits to be reaped.
func (s procStat) dead() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// errNoProcess is returned by readProcStat when the process does not exist.
var errNoProcess = errors.New("worker: no such process")

// readProcStat reads and parses /proc/<pid>/stat.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return procStat{}, errNoProcess
		}
		return procStat{}, err
	}
	return parseProcStat(b)
}

// parseProcStat parses the contents of a /proc/<pid>/stat file. The command
// name may hold spaces and parentheses: everything after the last ')' is
// split into fields.
func parseProcStat(b []byte) (procStat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return procStat{}, fmt.Errorf("worker: malformed proc stat %q", b)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("worker: malformed proc stat pid: %w", err)
	}
	f := bytes.Fields(b[closing+1:])
	// f[0] is field 3 of proc(5) (state); starttime is field 22, rss 24.
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("worker: short proc stat for pid %d", pid)
	}
	s := procStat{PID: pid, State: f[0][0]}
	if s.PPID, err = strconv.Atoi(string(f[1])); err != nil {
		return procStat{}, fmt.Errorf("worker: proc stat ppid: %w", err)
	}
	if s.PGID, err = strconv.Atoi(string(f[2])); err != nil {
		return procStat{}, fmt.Errorf("worker: proc stat pgrp: %w", err)
	}
	if s.StartTime, err = strconv.ParseUint(string(f[19]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("worker: proc stat starttime: %w", err)
	}
	if s.RSSPages, err = strconv.ParseInt(string(f[21]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("worker: proc stat rss: %w", err)
	}
	return s, nil
}

// listProcs returns the stat of every process visible in /proc. Processes
// that vanish during the scan are skipped.
func listProcs() ([]procStat, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]procStat, 0, len(names))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid <= 0 {
			continue
		}
		s, err := readProcStat(pid)
		if err != nil {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// descendants returns every process in all whose chain of parents reaches
// root; root itself is not included.
func descendants(all []procStat, root int) []procStat {
	children := make(map[int][]int, len(all))
	byPID := make(map[int]procStat, len(all))
	for _, s := range all {
		children[s.PPID] = append(children[s.PPID], s.PID)
		byPID[s.PID] = s
	}
	var out []procStat
	queue := []int{root}
	seen := map[int]bool{root: true}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if seen[c] {
				continue
			}
			seen[c] = true
			out = append(out, byPID[c])
			queue = append(queue, c)
		}
	}
	return out
}

// DescendantsRSS returns the summed resident set size, in bytes, of every
// live descendant of pid (pid itself excluded), read from /proc. Given a
// guard's pid (Process.GuardPID), it measures the worker's whole process
// tree: the guard is a child subreaper, so even the worker's orphaned
// descendants stay below it.
func DescendantsRSS(pid int) (uint64, error) {
	all, err := listProcs()
	if err != nil {
		return 0, fmt.Errorf("worker: list processes: %w", err)
	}
	var pages int64
	for _, s := range descendants(all, pid) {
		if !s.dead() && s.RSSPages > 0 {
			pages += s.RSSPages
		}
	}
	return uint64(pages) * uint64(os.Getpagesize()), nil
}
