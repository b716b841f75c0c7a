package worker

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SetChildSubreaper makes the calling process a child subreaper
// (PR_SET_CHILD_SUBREAPER): descendants orphaned below it are re-parented
// to it instead of init. regent calls it at start, so that the tree of a
// worker whose guard died stays below regent. A subreaper, like PID 1 in a
// container, must reap those orphans: run a Reaper.
func SetChildSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("worker: set child subreaper: %w", err)
	}
	return nil
}

// Reaper reaps zombie children of the process that nobody else waits for:
// orphans re-parented to a subreaper or to PID 1. Children started through
// it (Spec.Reaper, Protect) are left to their own Wait. Safe for
// concurrent use.
type Reaper struct {
	mu  sync.Mutex // held while reaping and while protected children fork
	own map[int]bool
}

// NewReaper returns a Reaper.
func NewReaper() *Reaper { return &Reaper{own: make(map[int]bool)} }

// Protect runs start, which must fork at most one child and return its
// pid (for example exec.Cmd.Start), with reaping paused, and keeps that
// pid from being reaped until Release. Children of the process started
// any other way race with the reaper for their exit status.
func (r *Reaper) Protect(start func() (pid int, err error)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err == nil && pid > 0 {
		r.own[pid] = true
	}
	return pid, err
}

// Release lets pid be reaped again; call it after the child's own Wait.
func (r *Reaper) Release(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.own, pid)
}

// ReapOnce reaps every zombie child that is not protected and returns how
// many it reaped.
func (r *Reaper) ReapOnce() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	all, err := listProcs()
	if err != nil {
		return 0
	}
	self := os.Getpid()
	n := 0
	for _, s := range all {
		if s.PPID != self || !s.dead() || r.own[s.PID] {
			continue
		}
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(s.PID, &ws, unix.WNOHANG, nil); err == nil && pid == s.PID {
			n++
		}
	}
	return n
}

// Run reaps every interval (default 1s) until ctx ends, then returns nil.
func (r *Reaper) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.ReapOnce()
		}
	}
}
