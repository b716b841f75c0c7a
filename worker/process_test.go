package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// deadlineTolerance is how late after its deadline a tree may die: the
// guard's reaction plus /proc scans, on a loaded 2-core machine under -race.
const deadlineTolerance = 600 * time.Millisecond

func TestGuardDeadlineKillsTree(t *testing.T) {
	out := &outputs{}
	spec := testSpec(t, out, "-ignore-term", "-spawn-child", "-child-setsid", "-child-ignore-term")
	deadline := time.Now().Add(1500 * time.Millisecond)
	spec.Deadline = deadline
	p := startTest(t, spec, out)
	child := out.childPID(t)
	if !alive(p.PID()) || !alive(child) {
		t.Fatalf("worker %d or child %d not running", p.PID(), child)
	}
	ended := waitDone(t, p, 10*time.Second)
	if late := ended.Sub(deadline); late > deadlineTolerance {
		t.Errorf("tree died %s after the deadline", late)
	}
	if ended.Before(deadline) {
		t.Errorf("tree died %s before the deadline", deadline.Sub(ended))
	}
	st := p.ExitStatus()
	if st.Cause != CauseDeadline || st.Signal != syscall.SIGKILL {
		t.Errorf("status = %v, want SIGKILL by deadline", st)
	}
	for _, pid := range []int{p.PID(), child} {
		if alive(pid) {
			t.Errorf("pid %d survived the deadline", pid)
		}
	}
}

func TestGuardOrphanedKillsTree(t *testing.T) {
	out := &outputs{}
	p := startTest(t, testSpec(t, out, "-spawn-child", "-child-setsid", "-child-ignore-term"), out)
	child := out.childPID(t)
	p.abandon() // the supervisor "dies": EOF on the control pipe
	waitDone(t, p, 5*time.Second)
	st := p.ExitStatus()
	if st.Cause != CauseOrphaned {
		t.Errorf("cause = %s, want %s", st.Cause, CauseOrphaned)
	}
	for _, pid := range []int{p.PID(), child} {
		if alive(pid) {
			t.Errorf("pid %d survived the supervisor", pid)
		}
	}
}

func TestGuardExtendDeadline(t *testing.T) {
	out := &outputs{}
	spec := testSpec(t, out)
	spec.Deadline = time.Now().Add(700 * time.Millisecond)
	p := startTest(t, spec, out)
	end := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(end) {
		if err := p.ExtendDeadline(time.Now().Add(700 * time.Millisecond)); err != nil {
			t.Fatalf("extend: %v", err)
		}
		select {
		case <-p.Done():
			t.Fatalf("worker ended despite renewals: %v", p.ExitStatus())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if st := p.ExitStatus(); !st.Success() || st.Cause != CauseExited {
		t.Errorf("status = %v, want clean exit on SIGTERM", st)
	}
	if err := p.ExtendDeadline(time.Now().Add(time.Second)); !errors.Is(err, ErrExited) {
		t.Errorf("extend after exit = %v, want ErrExited", err)
	}
}

func TestStopHonorsSIGTERM(t *testing.T) {
	out := &outputs{}
	p := startTest(t, testSpec(t, out, "-spawn-child"), out)
	child := out.childPID(t)
	start := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stop took %s", d)
	}
	if st := p.ExitStatus(); !st.Success() {
		t.Errorf("status = %v, want exit 0", st)
	}
	if _, ok := out.find("testworker terminating"); !ok {
		t.Error("worker did not see SIGTERM")
	}
	if alive(child) {
		t.Errorf("child %d survived", child)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	out := &outputs{}
	spec := testSpec(t, out, "-ignore-term")
	spec.StopTimeout = 500 * time.Millisecond
	p := startTest(t, spec, out)
	start := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	d := time.Since(start)
	if d < spec.StopTimeout || d > spec.StopTimeout+deadlineTolerance {
		t.Errorf("stop took %s, want about %s", d, spec.StopTimeout)
	}
	if st := p.ExitStatus(); st.Signal != syscall.SIGKILL || st.Cause != CauseKilled {
		t.Errorf("status = %v, want SIGKILL on request", st)
	}
}

func TestStopDeadlineWins(t *testing.T) {
	out := &outputs{}
	spec := testSpec(t, out, "-ignore-term")
	spec.StopTimeout = time.Minute
	deadline := time.Now().Add(time.Second)
	spec.Deadline = deadline
	p := startTest(t, spec, out)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if late := time.Since(deadline); late > deadlineTolerance {
		t.Errorf("stop ended %s after the deadline", late)
	}
	if st := p.ExitStatus(); st.Signal != syscall.SIGKILL {
		t.Errorf("status = %v, want SIGKILL", st)
	}
}

func TestStopContextBounds(t *testing.T) {
	out := &outputs{}
	spec := testSpec(t, out, "-ignore-term")
	spec.StopTimeout = time.Minute
	p := startTest(t, spec, out)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop = %v, want deadline exceeded", err)
	}
	// The tree was SIGKILLed when ctx ended.
	waitDone(t, p, 5*time.Second)
	if st := p.ExitStatus(); st.Signal != syscall.SIGKILL {
		t.Errorf("status = %v, want SIGKILL", st)
	}
}

func TestStartErrors(t *testing.T) {
	out := &outputs{}
	spec := testSpec(t, out)
	spec.Command = []string{filepath.Join(t.TempDir(), "no-such-command")}
	if _, err := Start(context.Background(), spec); !errors.Is(err, ErrStart) {
		t.Errorf("missing command: err = %v, want ErrStart", err)
	}
	spec = testSpec(t, out)
	spec.Deadline = time.Now().Add(-time.Second)
	if _, err := Start(context.Background(), spec); !errors.Is(err, ErrDeadlinePassed) {
		t.Errorf("past deadline: err = %v, want ErrDeadlinePassed", err)
	}
	spec = testSpec(t, out)
	spec.Command = nil
	if _, err := Start(context.Background(), spec); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("no command: err = %v, want ErrInvalidSpec", err)
	}
	spec = testSpec(t, out)
	spec.GuardExe = filepath.Join(t.TempDir(), "no-such-guard")
	if _, err := Start(context.Background(), spec); !errors.Is(err, ErrStart) {
		t.Errorf("missing guard: err = %v, want ErrStart", err)
	}
}

func TestExitCodeAndOutput(t *testing.T) {
	out := &outputs{}
	p := startTest(t, testSpec(t, out, "-exit-after", "100ms", "-exit-code", "7"), out)
	waitDone(t, p, 5*time.Second)
	if st := p.ExitStatus(); st.Code != 7 || st.Cause != CauseExited {
		t.Errorf("status = %v, want exit 7", st)
	}
	l, ok := out.find("testworker pid ")
	if !ok {
		t.Fatal("no output forwarded")
	}
	if l.Stream != "stdout" || !strings.HasSuffix(l.Text, " "+itoa(p.PID())) {
		t.Errorf("line = %+v, want stdout line with pid %d", l, p.PID())
	}
}

func TestGuardSurvivesSignalsAndGuardLoss(t *testing.T) {
	out := &outputs{}
	p := startTest(t, testSpec(t, out), out)
	// SIGTERM/SIGINT to the guard are ignored: the supervisor owns stopping.
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		if err := syscall.Kill(p.GuardPID(), sig); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-p.Done():
		t.Fatalf("guard ended on a signal: %v", p.ExitStatus())
	case <-time.After(300 * time.Millisecond):
	}
	// A guard killed outright takes its worker with it.
	if err := syscall.Kill(p.GuardPID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 5*time.Second)
	if st := p.ExitStatus(); st.Cause != CauseGuardLost {
		t.Errorf("cause = %s, want %s", st.Cause, CauseGuardLost)
	}
	waitFor(t, 5*time.Second, "worker death", func() bool { return !alive(p.PID()) })
}

func TestOrphanHookRunsOnceTreesAreDead(t *testing.T) {
	needTestworker(t)
	dir := t.TempDir()
	hookFile := filepath.Join(dir, "hook")
	var procs []*Process
	for i := 0; i < 2; i++ {
		out := &outputs{}
		spec := testSpec(t, out, "-spawn-child", "-child-setsid", "-child-ignore-term")
		spec.Index = i
		spec.GuardArgs = []string{testHookGuardArg}
		spec.GuardMeta = map[string]string{"hook_file": hookFile, "exe": testworkerPath}
		spec.GroupLock = filepath.Join(dir, "group.lock")
		procs = append(procs, startTest(t, spec, out))
		out.childPID(t)
	}
	for _, p := range procs {
		p.abandon()
	}
	for _, p := range procs {
		waitDone(t, p, 10*time.Second)
	}
	b, err := os.ReadFile(hookFile)
	if err != nil {
		t.Fatalf("hook did not run: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		if l != "live=0 cause=orphaned" {
			t.Errorf("hook line %q: ran while workers lived", l)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
