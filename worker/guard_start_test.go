package worker

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawGuard is a guard started by hand, without Start, so that a test can
// hand it any deadline on argv and queue control lines before it runs.
type rawGuard struct {
	cmd     *exec.Cmd
	ctl     *os.File
	reports chan string // closed at the report pipe's EOF
	exited  chan int    // the guard's exit code
}

// startRawGuard queues queued (control lines) on a fresh control pipe,
// then starts the test binary as a guard with -deadline-ns argv around
// the testworker.
func startRawGuard(t *testing.T, argvDeadline int64, queued ...string) *rawGuard {
	t.Helper()
	needTestworker(t)
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range queued {
		if _, err := ctlW.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{testGuardArg},
		guardArgs(argvDeadline, ContainmentNone, nil, "", guardFDs{}, []string{testworkerPath, "-interval", "50ms"})...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.ExtraFiles = []*os.File{ctlR, repW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctlR.Close()
	repW.Close()
	g := &rawGuard{cmd: cmd, ctl: ctlW, reports: make(chan string, 64), exited: make(chan int, 1)}
	go func() {
		defer close(g.reports)
		sc := bufio.NewScanner(repR)
		for sc.Scan() {
			g.reports <- sc.Text()
		}
		repR.Close()
	}()
	go func() {
		_ = cmd.Wait()
		g.exited <- cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		g.ctl.Close() // EOF: the guard kills whatever it started
		select {
		case <-g.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("guard %d did not exit", cmd.Process.Pid)
		}
	})
	return g
}

// next returns the next report line (false at EOF) within a hang bound.
func (g *rawGuard) next(t *testing.T) (string, bool) {
	t.Helper()
	select {
	case l, ok := <-g.reports:
		return l, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no report from the guard within 10s")
		return "", false
	}
}

// firstReport skips note lines and returns the first other report.
func (g *rawGuard) firstReport(t *testing.T) string {
	t.Helper()
	for {
		l, ok := g.next(t)
		if !ok {
			return ""
		}
		if verb, _ := splitMsg(l); verb != msgNote && verb != msgHello {
			return l
		}
	}
}

func deadlineLine(ns int64) string { return msgDeadline + " " + strconv.FormatInt(ns, 10) }

// A guard that starts after the deadline on its argv, with a newer one
// already queued on its control pipe (the supervisor renewed while the
// guard was being started), starts the worker and enforces the newer one.
func TestGuardCatchesUpQueuedDeadline(t *testing.T) {
	now := bootNow()
	past := now - int64(time.Second)
	g := startRawGuard(t, past,
		deadlineLine(now-int64(500*time.Millisecond)), // an older renewal, passed too
		deadlineLine(now+int64(time.Minute)))          // the newest: still ahead
	l := g.firstReport(t)
	verb, rest := splitMsg(l)
	if verb != msgPID {
		t.Fatalf("first report %q, want the worker's pid", l)
	}
	pid, _ := strconv.Atoi(rest)
	if !alive(pid) {
		t.Fatalf("worker %d not alive", pid)
	}
	// The newer deadline is the one enforced: move it close, and the
	// guard kills the tree at it.
	if _, err := g.ctl.WriteString(deadlineLine(bootNow()+int64(300*time.Millisecond)) + "\n"); err != nil {
		t.Fatal(err)
	}
	var exit string
	for {
		l, ok := g.next(t)
		if !ok {
			break
		}
		if strings.HasPrefix(l, msgExit+" ") {
			exit = l
		}
	}
	es, err := parseExit(strings.TrimPrefix(exit, msgExit+" "))
	if err != nil || es.Cause != CauseDeadline {
		t.Fatalf("exit report %q (%v), want a kill at the deadline", exit, err)
	}
	if alive(pid) {
		t.Errorf("worker %d alive after the guard's exit", pid)
	}
}

// A guard whose newest known deadline has passed refuses to start the
// worker, whether the past deadline is on argv with nothing queued, or
// queued after a future one on argv (the newest wins, even if earlier);
// and a queued kill or term stops it before it starts.
func TestGuardRefusesStaleStart(t *testing.T) {
	now := bootNow()
	for name, c := range map[string]struct {
		argv   int64
		queued []string
		want   string
	}{
		"past argv, nothing queued": {now - int64(time.Second), nil, msgDeadlinePassedBeforeStart},
		"past argv, past queued": {now - int64(time.Second),
			[]string{deadlineLine(now - int64(500*time.Millisecond))}, msgDeadlinePassedBeforeStart},
		"future argv, newest queued past": {now + int64(time.Minute),
			[]string{deadlineLine(now + int64(2*time.Minute)), deadlineLine(now - int64(time.Millisecond))},
			msgDeadlinePassedBeforeStart},
		"future deadline, kill queued": {now + int64(time.Minute), []string{msgKill}, msgStoppedBeforeStart},
		"past argv, future queued, then term": {now - int64(time.Second),
			[]string{deadlineLine(now + int64(time.Minute)), msgTerm}, msgStoppedBeforeStart},
	} {
		t.Run(name, func(t *testing.T) {
			g := startRawGuard(t, c.argv, c.queued...)
			l := g.firstReport(t)
			if l != msgError+" "+c.want {
				t.Fatalf("first report %q, want %q", l, msgError+" "+c.want)
			}
			for {
				l, ok := g.next(t)
				if !ok {
					break
				}
				if verb, _ := splitMsg(l); verb == msgPID {
					t.Errorf("worker started: %q", l)
				}
			}
			select {
			case code := <-g.exited:
				if code != GuardExitError {
					t.Errorf("guard exit %d, want %d", code, GuardExitError)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("guard did not exit")
			}
			g.exited <- GuardExitError // for the cleanup
		})
	}
}

// A pool whose guards take longer to start than each deadline lasts, while
// the deadline keeps being renewed, starts its workers at the first
// attempt: the renewals made during the slow start reach the guard.
func TestPoolSlowGuardStart(t *testing.T) {
	const lease = 500 * time.Millisecond // shorter than slowGuardDelay
	rp := startPool(t, PoolConfig{
		Spec:        Spec{GuardArgs: []string{testSlowGuardArg}},
		Concurrency: 2,
		Deadline:    time.Now().Add(lease),
	})
	// Renew like a leader: every lease/5, each renewal a lease ahead.
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		tick := time.NewTicker(lease / 5)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := rp.ExtendDeadline(time.Now().Add(lease)); err != nil {
					t.Errorf("extend: %v", err)
				}
			}
		}
	}()
	defer func() { close(stop); <-renewed }()

	for i := 1; i <= 2; i++ {
		rp.events.wait(t, 20*time.Second, EventStarted, i)
	}
	for _, k := range []EventKind{EventStartFailed, EventExited} {
		if es := rp.events.of(k); len(es) > 0 {
			t.Errorf("%d %s events, want none: %+v", len(es), k, es)
		}
	}
	// Each slot spawned one guard: none gave up for a passed deadline.
	for _, st := range rp.Status() {
		if st.Starts != 1 || st.State != StateRunning {
			t.Errorf("slot %d: %d starts, state %s; want 1, running", st.Index, st.Starts, st.State)
		}
	}
}
