package worker

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestReaperReapsOrphansOnly(t *testing.T) {
	if err := SetChildSubreaper(); err != nil {
		t.Fatal(err)
	}
	r := NewReaper()
	self := os.Getpid()
	// An orphan: the shell exits, its background sleep is re-parented to
	// this (subreaper) process and becomes a zombie nobody waits for.
	out, err := exec.Command("sh", "-c", "sleep 0.1 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	// A protected child, left to its own Wait.
	prot := exec.Command("true")
	pid, err := r.Protect(func() (int, error) {
		if err := prot.Start(); err != nil {
			return 0, err
		}
		return prot.Process.Pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	zombie := func(pid int) bool {
		s, err := readProcStat(pid)
		return err == nil && s.PPID == self && s.dead()
	}
	waitFor(t, 5*time.Second, "both zombies", func() bool { return zombie(orphan) && zombie(pid) })
	// Zombies of earlier tests (a worker whose guard was SIGKILLed) may be
	// reaped too; the protected child must not be.
	if n := r.ReapOnce(); n < 1 {
		t.Errorf("reaped %d, want at least the orphan", n)
	}
	if _, err := readProcStat(orphan); err != errNoProcess {
		t.Errorf("orphan %d not reaped: %v", orphan, err)
	}
	if err := prot.Wait(); err != nil {
		t.Errorf("protected child's own wait: %v", err)
	}
	r.Release(pid)
}
