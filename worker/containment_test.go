package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/regentd/regent/internal/boottime"
)

// markedProcs returns the live processes whose environment holds
// REGENT_TEST_MARK=mark: a worker's whole tree, whatever group, session
// or PID namespace its members moved to.
func markedProcs(mark string) []int {
	want := []byte("REGENT_TEST_MARK=" + mark)
	all, _ := listProcs()
	var out []int
	for _, s := range all {
		if s.dead() {
			continue
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(s.PID) + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				out = append(out, s.PID)
				break
			}
		}
	}
	return out
}

// escapingSpec runs `sh -c 'testworker -spawn-child -child-setsid; :'`:
// the shell is the guard's child, the worker the shell's, and the
// worker's helper leaves the process group in a session of its own, as
// a daemonizing worker does. Every process carries a fresh mark.
func escapingSpec(t *testing.T, c Containment, out *outputs) (Spec, string) {
	spec := testSpec(t, out)
	mark := fmt.Sprintf("%d-%d", os.Getpid(), rand.Int64())
	spec.Command = []string{"/bin/sh", "-c", testworkerPath + " -interval 50ms -spawn-child -child-setsid; :"}
	spec.Env = append(os.Environ(), "REGENT_TEST_MARK="+mark)
	spec.Containment = c
	t.Cleanup(func() { // whatever the test found, leave nothing behind
		for _, pid := range markedProcs(mark) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	})
	return spec, mark
}

// needContainment skips a containment the kernel does not allow here;
// as root in CI (REGENT_CI=1) the PID namespace must work.
func needContainment(t *testing.T, c Containment) {
	t.Helper()
	if c == ContainmentNone {
		return
	}
	err := probeContainment(context.Background(), Spec{GuardExe: os.Args[0], GuardArgs: []string{testGuardArg}}, c)
	if err == nil {
		return
	}
	if os.Getenv("REGENT_CI") != "" && os.Geteuid() == 0 && c == ContainmentPIDNamespace {
		t.Fatalf("containment %s must work as root: %v", c, err)
	}
	t.Skipf("containment %s not allowed here: %v", c, err)
}

// Everything a worker starts dies with its guard even when the guard is
// SIGKILLed with nobody left to act (the supervisor and every guard
// killed at one instant, as `pkill -9 regent` does): the kernel ends the
// guard's PID namespace. Without containment the setsid helper survives:
// that case is the control showing that the check can fail.
func TestContainmentKillsEscapedTree(t *testing.T) {
	for _, c := range Containments {
		t.Run(string(c), func(t *testing.T) {
			needContainment(t, c)
			out := &outputs{}
			spec, mark := escapingSpec(t, c, out)
			p := startTest(t, spec, out)
			waitFor(t, 10*time.Second, "shell, worker and setsid helper running", func() bool {
				return len(markedProcs(mark)) >= 3
			})
			// The pid the guard reports is the host's: it names the
			// worker here, never a namespace-local number.
			if env, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/environ"); err != nil ||
				!bytes.Contains(env, []byte("REGENT_TEST_MARK="+mark)) {
				t.Fatalf("reported pid %d is not the worker's host pid (%v)", p.PID(), err)
			}
			// The supervisor dies with the guard: SIGKILL both sides at
			// once, so that no process of regent's can act.
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			p.abandon()
			waitDone(t, p, 10*time.Second)
			if c == ContainmentNone {
				waitFor(t, 5*time.Second, "the setsid helper to be the only survivor", func() bool {
					return len(markedProcs(mark)) == 1
				})
				t.Logf("without containment the setsid helper %v survives its SIGKILLed guard", markedProcs(mark))
				return
			}
			waitFor(t, 5*time.Second, "every process of the worker's tree to be dead", func() bool {
				return len(markedProcs(mark)) == 0
			})
		})
	}
}

// The supervisor never waits without end on a guard that does not act: a
// guard frozen (SIGSTOP) past its deadline is SIGKILLed by the backstop
// at the deadline plus BackstopGrace, and its contained tree with it.
func TestBackstopKillsFrozenGuard(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool // ask for a Kill before the deadline, as a fence does
	}{{"deadline", false}, {"kill", true}} {
		t.Run(tc.name, func(t *testing.T) {
			needContainment(t, ContainmentPIDNamespace)
			out := &outputs{}
			spec, mark := escapingSpec(t, ContainmentPIDNamespace, out)
			spec.Deadline = boottime.Now().Add(2 * time.Second)
			spec.BackstopGrace = 200 * time.Millisecond
			p := startTest(t, spec, out)
			t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
			waitFor(t, 10*time.Second, "the tree running", func() bool { return len(markedProcs(mark)) >= 3 })
			if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			from, bound := spec.Deadline, spec.BackstopGrace
			if tc.kill {
				from, bound = boottime.Now(), killBackstopGrace
				p.Kill()
			}
			done := waitDone(t, p, 15*time.Second)
			late := boottime.Now().Add(-time.Since(done)).Sub(from)
			t.Logf("frozen guard killed %s after the trigger (grace %s)", late.Round(time.Millisecond), bound)
			if late < bound {
				t.Errorf("backstop acted %s after the trigger, before its grace %s", late, bound)
			}
			if late > bound+3*time.Second {
				t.Errorf("backstop acted %s after the trigger; want about %s", late, bound)
			}
			if got := p.ExitStatus().Cause; got != CauseBackstop {
				t.Errorf("cause %q, want %q", got, CauseBackstop)
			}
			waitFor(t, 5*time.Second, "the frozen guard's tree to be dead", func() bool {
				return len(markedProcs(mark)) == 0
			})
		})
	}
}

// A guard forked just before the supervisor died belongs to its pool from
// the fork: it holds the group lock shared before it runs a line of its
// own, so the last of the other guards cannot release the term under it.
func TestGuardHoldsGroupLockFromFork(t *testing.T) {
	out := &outputs{}
	spec := testSpec(t, out)
	spec.GuardArgs = []string{testSlowGuardArg} // sleeps before its first line
	spec.GroupLock = filepath.Join(t.TempDir(), "guards.lock")
	checked := make(chan error, 1)
	p, err := start(context.Background(), spec, func(*Process) {
		f, err := os.OpenFile(spec.GroupLock, os.O_RDWR, 0)
		if err != nil {
			checked <- err
			return
		}
		defer f.Close()
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			checked <- errors.New("the group lock was free while the guard was starting")
			return
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			checked <- err
			return
		}
		checked <- nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill(); <-p.Done() })
	if err := <-checked; err != nil {
		t.Fatal(err)
	}
}

// A guard whose control pipe is already at EOF when it would start the
// worker (the supervisor died while it was being exec'd) never starts it:
// the term may have been released by the pool's last guard.
func TestGuardRefusesStartAfterEOF(t *testing.T) {
	g := startRawGuardClosed(t)
	if got := g.firstReport(t); got != msgError+" "+msgOrphanedBeforeStart {
		t.Fatalf("first report %q, want %q", got, msgError+" "+msgOrphanedBeforeStart)
	}
	for {
		l, ok := g.next(t)
		if !ok {
			break
		}
		if verb, _ := splitMsg(l); verb == msgPID {
			t.Fatalf("the guard started a worker after EOF: %q", l)
		}
	}
	code := <-g.exited
	g.exited <- code // for the cleanup
	if code != GuardExitError {
		t.Fatalf("guard exit %d, want %d", code, GuardExitError)
	}
}

// startRawGuardClosed starts a raw guard whose control pipe has no writer
// left before it runs.
func startRawGuardClosed(t *testing.T) *rawGuard {
	g := startRawGuard(t, bootNow()+int64(time.Minute))
	g.ctl.Close()
	return g
}

// A guard refuses a supervisor of another protocol version, with a
// message that says what to do.
func TestGuardRefusesOtherProtocol(t *testing.T) {
	var stderr strings.Builder
	args := []string{"-protocol", strconv.Itoa(GuardProtocol - 1), "-deadline-ns", strconv.FormatInt(bootNow()+int64(time.Minute), 10), "--", "true"}
	code := RunGuard(args, GuardConfig{Stderr: &stderr})
	if code != GuardExitError {
		t.Fatalf("exit %d, want %d", code, GuardExitError)
	}
	if !strings.Contains(stderr.String(), "protocol mismatch") || !strings.Contains(stderr.String(), "restart regent") {
		t.Fatalf("message %q lacks the mismatch and the fix", stderr.String())
	}
}

// As root the best containment is a PID namespace per guard.
func TestDetectContainment(t *testing.T) {
	c, why := DetectContainment(context.Background(), Spec{GuardExe: os.Args[0], GuardArgs: []string{testGuardArg}})
	t.Logf("containment here: %s %s", c, why)
	if os.Geteuid() == 0 && c != ContainmentPIDNamespace {
		t.Fatalf("as root: %s (%s), want %s", c, why, ContainmentPIDNamespace)
	}
	if c == ContainmentNone && why == "" {
		t.Fatal("no containment and no reason")
	}
}

func TestParseNSpid(t *testing.T) {
	got, err := parseNSpid([]byte("Name:\tx\nNSpid:\t4242\t2\nPPid:\t1\n"))
	if err != nil || len(got) != 2 || got[0] != 4242 || got[1] != 2 {
		t.Fatalf("parseNSpid = %v, %v", got, err)
	}
	if _, err := parseNSpid([]byte("Name:\tx\n")); err == nil {
		t.Fatal("no NSpid line: want an error")
	}
}
