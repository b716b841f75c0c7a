package worker

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// signalExact sends sig to the process described by s, and only to it: the
// pid is pinned with a pidfd and its start time checked again, so a pid that
// was reaped and reused since the scan is never signalled. On kernels without
// pidfds it falls back to kill(2).
func signalExact(s procStat, sig syscall.Signal) {
	fd, err := unix.PidfdOpen(s.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			_ = unix.Kill(s.PID, sig)
		}
		return
	}
	defer unix.Close(fd)
	now, err := readProcStat(s.PID)
	if err != nil || now.StartTime != s.StartTime {
		return
	}
	_ = unix.PidfdSendSignal(fd, sig, nil, 0)
}

// signalGroup sends sig to process group pgid. A stopped process does not
// act on SIGTERM until continued, so SIGTERM is followed by SIGCONT.
func signalGroup(pgid int, sig syscall.Signal) {
	if pgid <= 1 {
		return
	}
	_ = unix.Kill(-pgid, sig)
	if sig == unix.SIGTERM {
		_ = unix.Kill(-pgid, unix.SIGCONT)
	}
}

// killTree SIGKILLs process group pgid and then every live descendant of
// root, scanning /proc again until none is left alive (zombies are left to
// the reaper). It returns only when the tree is dead, however long an
// unkillable (D state) process takes.
func killTree(root, pgid int) {
	signalGroup(pgid, unix.SIGKILL)
	poll := time.Millisecond
	for {
		all, err := listProcs()
		if err != nil {
			// /proc unreadable: the group kill is all that can be done.
			return
		}
		alive := 0
		for _, s := range descendants(all, root) {
			if s.dead() {
				continue
			}
			alive++
			signalExact(s, unix.SIGKILL)
		}
		if alive == 0 {
			return
		}
		time.Sleep(poll) // polling /proc: there is no event for "tree empty"
		if poll < 20*time.Millisecond {
			poll *= 2
		}
	}
}
