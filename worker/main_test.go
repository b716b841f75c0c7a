package worker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

// Helper-process modes: the test binary re-executed as a guard.
const (
	testGuardArg     = "regent-test-guard"
	testHookGuardArg = "regent-test-guard-hook"
	// testSlowGuardArg: a guard that takes slowGuardDelay to start, as a
	// guard exec'd on a loaded host does.
	testSlowGuardArg = "regent-test-guard-slow"
	slowGuardDelay   = 1500 * time.Millisecond
	// testHelperGuardArg: a guard whose orphan hook runs its helper
	// (OrphanInfo.Helper) with meta["helper_out"] as its argument.
	testHelperGuardArg = "regent-test-guard-helper"
)

var (
	testworkerPath string
	testworkerErr  error
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case testGuardArg:
			os.Exit(GuardMain(os.Args[2:]))
		case testSlowGuardArg:
			time.Sleep(slowGuardDelay) // the slow start under test
			os.Exit(GuardMain(os.Args[2:]))
		case testHookGuardArg:
			os.Exit(RunGuard(os.Args[2:], GuardConfig{OnOrphaned: testOrphanHook}))
		case testHelperGuardArg:
			os.Exit(RunGuard(os.Args[2:], GuardConfig{OnOrphaned: testHelperHook}))
		}
	}
	dir, err := os.MkdirTemp("", "regent-worker-test-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testworkerPath = filepath.Join(dir, "testworker")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(gobin, "build", "-o", testworkerPath,
		"github.com/regentd/regent/integration/testworker").CombinedOutput()
	if err != nil {
		testworkerErr = fmt.Errorf("build testworker: %v: %s", err, out)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testOrphanHook appends to meta["hook_file"] how many processes running
// meta["exe"] are still alive: the hook must find none.
func testOrphanHook(ctx context.Context, info OrphanInfo) error {
	live := 0
	all, err := listProcs()
	if err != nil {
		return err
	}
	for _, s := range all {
		if s.dead() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.PID))
		if err == nil && exe == info.Meta["exe"] {
			live++
		}
	}
	f, err := os.OpenFile(info.Meta["hook_file"], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "live=%d cause=%s\n", live, info.Exit.Cause)
	return err
}

// testHelperHook runs the helper executable handed to the guard.
func testHelperHook(ctx context.Context, info OrphanInfo) error {
	if info.Helper == nil {
		return fmt.Errorf("no helper")
	}
	out, err := FileCommand(ctx, info.Helper, "helper", info.Meta["helper_out"]).CombinedOutput()
	if err != nil {
		return fmt.Errorf("helper: %v: %s", err, out)
	}
	return nil
}

// needTestworker fails the test if the testworker could not be built.
func needTestworker(t *testing.T) {
	t.Helper()
	if testworkerErr != nil {
		t.Fatal(testworkerErr)
	}
}

// testLogger routes hclog to t.Log until the test ends.
func testLogger(t *testing.T) hclog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.close)
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: w})
}

type tWriter struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

// outputs collects worker output lines.
type outputs struct {
	mu    sync.Mutex
	lines []OutputLine
}

func (o *outputs) add(l OutputLine) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lines = append(o.lines, l)
}

// find returns the first line containing s.
func (o *outputs) find(s string) (OutputLine, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.lines {
		if strings.Contains(l.Text, s) {
			return l, true
		}
	}
	return OutputLine{}, false
}

// count returns how many lines contain s.
func (o *outputs) count(s string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, l := range o.lines {
		if strings.Contains(l.Text, s) {
			n++
		}
	}
	return n
}

// childPID waits for the "testworker child pid N" line and returns N.
func (o *outputs) childPID(t *testing.T) int {
	t.Helper()
	var pid int
	waitFor(t, 5*time.Second, "child pid line", func() bool {
		l, ok := o.find("testworker child pid ")
		if ok {
			fmt.Sscanf(l.Text, "testworker child pid %d", &pid)
		}
		return pid > 0
	})
	return pid
}

// testSpec is a spec running the testworker under the test binary as guard.
func testSpec(t *testing.T, out *outputs, args ...string) Spec {
	needTestworker(t)
	return Spec{
		Command:     append([]string{testworkerPath}, args...),
		GuardExe:    os.Args[0],
		GuardArgs:   []string{testGuardArg},
		Deadline:    time.Now().Add(time.Minute),
		StopTimeout: 5 * time.Second,
		Logger:      testLogger(t),
		Output:      out.add,
	}
}

// startTest starts spec, waits until the testworker has set up its signal
// handling, and makes sure the tree is dead when the test ends.
func startTest(t *testing.T, spec Spec, out *outputs) *Process {
	t.Helper()
	p, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		p.Kill()
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("process %d did not end", p.PID())
		}
	})
	waitFor(t, 10*time.Second, "testworker ready", func() bool {
		_, ok := out.find("testworker pid ")
		return ok
	})
	return p
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitDone waits for p to end and returns when it did.
func waitDone(t *testing.T, p *Process, timeout time.Duration) time.Time {
	t.Helper()
	select {
	case <-p.Done():
		return time.Now()
	case <-time.After(timeout):
		t.Fatalf("process %d still running after %s", p.PID(), timeout)
		return time.Time{}
	}
}

// alive reports whether pid names a live (not zombie) process.
func alive(pid int) bool {
	s, err := readProcStat(pid)
	return err == nil && !s.dead()
}
