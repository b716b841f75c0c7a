package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// fakeClock is a Clock moved by hand.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock and fires the waiters due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// waiters counts pending After calls.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// eventLog records pool events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// of returns the events of kind.
func (l *eventLog) of(kind EventKind) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// wait waits until there are n events of kind and returns the n-th.
func (l *eventLog) wait(t *testing.T, timeout time.Duration, kind EventKind, n int) Event {
	t.Helper()
	var e Event
	waitFor(t, timeout, fmt.Sprintf("%d %s events", n, kind), func() bool {
		es := l.of(kind)
		if len(es) >= n {
			e = es[n-1]
			return true
		}
		return false
	})
	return e
}

// runningPool is a pool under test.
type runningPool struct {
	*Pool
	events *eventLog
	out    *outputs
	stop   func() error
}

// startPool runs a pool of testworkers (args) configured by cfg.
func startPool(t *testing.T, cfg PoolConfig, args ...string) *runningPool {
	t.Helper()
	out := &outputs{}
	spec := testSpec(t, out, args...)
	spec.StopTimeout = cfg.Spec.StopTimeout
	if cfg.Spec.GuardArgs != nil {
		spec.GuardArgs = cfg.Spec.GuardArgs
	}
	cfg.Spec = spec
	if cfg.Deadline.IsZero() {
		cfg.Deadline = time.Now().Add(time.Minute)
	}
	events := &eventLog{}
	cfg.Events = events.add
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	pool, err := NewPool(cfg)
	if err != nil {
		t.Fatalf("new pool: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pool.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute):
				runErr = errors.New("pool did not stop")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return &runningPool{Pool: pool, events: events, out: out, stop: stop}
}

func TestPoolCrashBackoffSchedule(t *testing.T) {
	clock := newFakeClock()
	rp := startPool(t, PoolConfig{
		Clock:   clock,
		Rand:    func() float64 { return 0 },
		Restart: RestartPolicy{InitialBackoff: time.Second, MaxBackoff: 8 * time.Second, MaxCrashes: 5},
	}, "-exit-after", "1ms", "-exit-code", "3")
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i, w := range want {
		e := rp.events.wait(t, 10*time.Second, EventBackoff, i+1)
		if e.Delay != w*time.Second {
			t.Fatalf("backoff %d = %s, want %s", i+1, e.Delay, w*time.Second)
		}
		st := rp.Status()[0]
		if st.ConsecutiveCrashes != i+1 || st.Crashes != i+1 {
			t.Fatalf("after crash %d: status %+v", i+1, st)
		}
		if st.Degraded != (i+1 >= 5) || rp.Degraded() != st.Degraded {
			t.Fatalf("after crash %d: degraded = %v", i+1, st.Degraded)
		}
		if st.LastExit == nil || st.LastExit.Code != 3 {
			t.Fatalf("after crash %d: last exit %v", i+1, st.LastExit)
		}
		waitFor(t, 5*time.Second, "backoff wait", func() bool { return clock.pending() > 0 })
		if got := len(rp.events.of(EventStarted)); got != i+1 {
			t.Fatalf("started %d times during backoff %d", got, i+1)
		}
		clock.Advance(e.Delay)
	}
	if n := len(rp.events.of(EventDegraded)); n != 1 {
		t.Errorf("degraded events = %d, want 1", n)
	}
	for _, e := range rp.events.of(EventExited) {
		if !e.Crash {
			t.Errorf("exit %v not counted as a crash", e.Exit)
		}
	}
}

func TestPoolStartFailureIsCrash(t *testing.T) {
	clock := newFakeClock()
	out := &outputs{}
	spec := testSpec(t, out)
	spec.Command = []string{filepath.Join(t.TempDir(), "missing")}
	events := &eventLog{}
	pool, err := NewPool(PoolConfig{Spec: spec, Deadline: time.Now().Add(time.Minute), Clock: clock,
		Rand: func() float64 { return 0 }, Events: events.add, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pool.Run(ctx) }()
	e := events.wait(t, 10*time.Second, EventStartFailed, 1)
	if !errors.Is(e.Err, ErrStart) || !e.Crash {
		t.Errorf("start failure event %+v", e)
	}
	if b := events.wait(t, 5*time.Second, EventBackoff, 1); b.Delay != time.Second {
		t.Errorf("backoff %s, want 1s", b.Delay)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if st := pool.Status()[0]; st.Crashes != 1 || st.State != StateStopped {
		t.Errorf("status %+v", st)
	}
}

func TestPoolExitZeroIsNotCrash(t *testing.T) {
	rp := startPool(t, PoolConfig{
		Restart: RestartPolicy{InitialBackoff: 20 * time.Millisecond},
	}, "-exit-after", "20ms", "-exit-code", "0")
	rp.events.wait(t, 20*time.Second, EventStarted, 3)
	st := rp.Status()[0]
	if st.Crashes != 0 || st.Degraded {
		t.Errorf("status %+v: exit 0 counted as a crash", st)
	}
	for _, e := range rp.events.of(EventExited) {
		if e.Crash {
			t.Errorf("exit %v counted as a crash", e.Exit)
		}
	}
}

func TestPoolStopsEveryTree(t *testing.T) {
	outFile := filepath.Join(t.TempDir(), "lines")
	rp := startPool(t, PoolConfig{
		Concurrency: 3,
		EnvFor: func(i int) []string {
			return []string{"REGENT_TERM=7", "REGENT_QUEUE=q", fmt.Sprintf("REGENT_NODE=n%d", i)}
		},
	}, "-spawn-child", "-child-setsid", "-child-ignore-term", "-out", outFile)
	for i := 1; i <= 3; i++ {
		rp.events.wait(t, 10*time.Second, EventStarted, i)
	}
	waitFor(t, 10*time.Second, "three children", func() bool { return rp.out.count("testworker child pid") == 3 })
	var pids []int
	for _, st := range rp.Status() {
		if st.State != StateRunning || st.PID == 0 {
			t.Errorf("status %+v, want running", st)
		}
		pids = append(pids, st.PID)
	}
	rp.out.mu.Lock()
	for _, l := range rp.out.lines {
		var pid int
		if _, err := fmt.Sscanf(l.Text, "testworker child pid %d", &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	rp.out.mu.Unlock()
	waitFor(t, 5*time.Second, "lines of every worker", func() bool {
		b, _ := os.ReadFile(outFile)
		s := string(b)
		return strings.Contains(s, " q 0\n") && strings.Contains(s, " q 1\n") && strings.Contains(s, " q 2\n")
	})
	b, _ := os.ReadFile(outFile)
	if !strings.HasPrefix(string(b), "7 n") {
		t.Errorf("worker env not applied: %q", strings.SplitN(string(b), "\n", 2)[0])
	}

	if err := rp.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d survived the pool", pid)
		}
	}
	for _, st := range rp.Status() {
		if st.State != StateStopped || st.PID != 0 {
			t.Errorf("status %+v, want stopped", st)
		}
		if st.LastExit == nil || !st.LastExit.Success() {
			t.Errorf("last exit %v, want clean stop", st.LastExit)
		}
	}
}

func TestPoolStopDeadlineWins(t *testing.T) {
	deadline := time.Now().Add(1500 * time.Millisecond)
	rp := startPool(t, PoolConfig{
		Concurrency: 2,
		Deadline:    deadline,
		Spec:        Spec{StopTimeout: time.Minute},
	}, "-ignore-term")
	rp.events.wait(t, 10*time.Second, EventStarted, 2)
	waitFor(t, 10*time.Second, "workers ready", func() bool { return rp.out.count("testworker pid") == 2 })
	if err := rp.stop(); err != nil {
		t.Fatal(err)
	}
	if late := time.Since(deadline); late > deadlineTolerance {
		t.Errorf("pool stopped %s after the deadline", late)
	}
	for _, e := range rp.events.of(EventExited) {
		if e.Exit.Signal != syscall.SIGKILL {
			t.Errorf("exit %v, want SIGKILL", e.Exit)
		}
	}
}

func TestPoolDeadlineLapseAndExtend(t *testing.T) {
	rp := startPool(t, PoolConfig{Deadline: time.Now().Add(time.Second)})
	rp.events.wait(t, 10*time.Second, EventStarted, 1)
	// Renewals keep the worker past its first deadline.
	end := time.Now().Add(1200 * time.Millisecond)
	for time.Now().Before(end) {
		if err := rp.ExtendDeadline(time.Now().Add(700 * time.Millisecond)); err != nil {
			t.Fatalf("extend: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the renewal period under test
	}
	if n := len(rp.events.of(EventExited)); n != 0 {
		t.Fatalf("worker ended despite renewals")
	}
	// Without renewals the guard kills it at the deadline, and no worker
	// starts again until the deadline moves.
	e := rp.events.wait(t, 5*time.Second, EventExited, 1)
	if e.Exit.Cause != CauseDeadline || e.Crash {
		t.Errorf("exit %+v, want deadline, not a crash", e)
	}
	waitFor(t, 5*time.Second, "waiting state", func() bool { return rp.Status()[0].State == StateWaiting })
	time.Sleep(300 * time.Millisecond) // nothing may start in this window
	if n := len(rp.events.of(EventStarted)); n != 1 {
		t.Fatalf("started %d times past the deadline", n)
	}
	if err := rp.ExtendDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	rp.events.wait(t, 10*time.Second, EventStarted, 2)
	if st := rp.Status()[0]; st.Crashes != 0 {
		t.Errorf("status %+v: deadline kill counted as crash", st)
	}
}

func TestPoolFence(t *testing.T) {
	rp := startPool(t, PoolConfig{Concurrency: 2, Spec: Spec{StopTimeout: time.Minute}}, "-ignore-term")
	rp.events.wait(t, 10*time.Second, EventStarted, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := rp.Fence(ctx); err != nil {
		t.Fatalf("fence: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("fence took %s", d)
	}
	waitFor(t, 5*time.Second, "fenced slots waiting", func() bool {
		for _, st := range rp.Status() {
			if st.State != StateWaiting {
				return false
			}
		}
		return true
	})
	rp.ExtendDeadline(time.Now().Add(time.Minute)) // does not lift the fence
	time.Sleep(200 * time.Millisecond)             // nothing may start in this window
	if n := len(rp.events.of(EventStarted)); n != 2 {
		t.Errorf("started %d times after fence", n)
	}
	for _, e := range rp.events.of(EventExited) {
		if e.Crash || e.Exit.Cause != CauseKilled {
			t.Errorf("exit %+v, want killed, not a crash", e)
		}
	}
}

func TestPoolRSSWatchdogTree(t *testing.T) {
	// Each process stays under the limit; the tree does not.
	rp := startPool(t, PoolConfig{
		MaxRSSMB:      48,
		CheckInterval: 50 * time.Millisecond,
		Spec:          Spec{StopTimeout: 2 * time.Second},
	}, "-alloc-mb", "28", "-spawn-child", "-child-alloc-mb", "28")
	e := rp.events.wait(t, 20*time.Second, EventRSSKill, 1)
	if e.RSSBytes <= 48<<20 || e.LimitBytes != 48<<20 {
		t.Errorf("kill event %+v", e)
	}
	rp.events.wait(t, 20*time.Second, EventStarted, 2)
	exit := rp.events.of(EventExited)[0]
	if exit.Crash {
		t.Errorf("rss kill counted as crash: %+v", exit)
	}
	if st := rp.Status()[0]; st.Crashes != 0 || st.Restarts < 1 {
		t.Errorf("status %+v", st)
	}
}

func TestPoolRSSWarnAndLoop(t *testing.T) {
	var rss atomic.Uint64
	rss.Store(85 << 20)
	rp := startPool(t, PoolConfig{
		MaxRSSMB:      100,
		CheckInterval: 20 * time.Millisecond,
		RSSSampler:    func(int) (uint64, error) { return rss.Load(), nil },
		Restart:       RestartPolicy{InitialBackoff: 20 * time.Millisecond},
	})
	rp.events.wait(t, 10*time.Second, EventRSSWarning, 1)
	waitFor(t, 5*time.Second, "rss in status", func() bool { return rp.Status()[0].RSSBytes == 85<<20 })
	time.Sleep(200 * time.Millisecond) // ten more samples: still one warning
	if n := len(rp.events.of(EventRSSWarning)); n != 1 {
		t.Fatalf("%d warnings, want 1", n)
	}
	rss.Store(120 << 20)
	rp.events.wait(t, 20*time.Second, EventRSSLoop, 1)
	st := rp.Status()[0]
	if !st.RSSLoop || st.RSSKills != 4 || st.Crashes != 0 {
		t.Errorf("status %+v, want rss loop after 4 kills, no crash", st)
	}
	if n := len(rp.events.of(EventRSSKill)); n < 4 {
		t.Errorf("%d kills", n)
	}
}

func TestPoolWedgeRestart(t *testing.T) {
	rp := startPool(t, PoolConfig{
		Liveness: Liveness{HeartbeatTimeout: 400 * time.Millisecond, StartupGrace: 100 * time.Millisecond, MaxRestarts: 1},
		Spec:     Spec{StopTimeout: 2 * time.Second},
	}, "-interval", "20ms", "-heartbeat-for", "600ms")
	first := rp.events.wait(t, 10*time.Second, EventStarted, 1)
	w := rp.events.wait(t, 10*time.Second, EventWedgeRestart, 1)
	if d := w.Time.Sub(first.Time); d < time.Second {
		t.Errorf("wedge restart %s after start: a beating worker was restarted", d)
	}
	rp.events.wait(t, 10*time.Second, EventStarted, 2)
	// The budget (1) is spent: the next silence is only reported.
	rp.events.wait(t, 10*time.Second, EventWedged, 1)
	st := rp.Status()[0]
	if !st.Wedged || st.State != StateRunning || st.WedgeRestarts != 1 || st.Crashes != 0 {
		t.Errorf("status %+v, want wedged but running", st)
	}
	if n := len(rp.events.of(EventStarted)); n != 2 {
		t.Errorf("started %d times, want 2", n)
	}
}

func TestPoolConfigErrors(t *testing.T) {
	for name, cfg := range map[string]PoolConfig{
		"no command":  {Deadline: time.Now().Add(time.Minute)},
		"no deadline": {Spec: Spec{Command: []string{"true"}}},
		"negative":    {Spec: Spec{Command: []string{"true"}}, Deadline: time.Now().Add(time.Minute), Concurrency: -1},
	} {
		if _, err := NewPool(cfg); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: err = %v, want ErrInvalidSpec", name, err)
		}
	}
	pool, err := NewPool(PoolConfig{Spec: Spec{Command: []string{"true"}}, Deadline: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pool.Run(ctx); err != nil {
		t.Errorf("run: %v", err)
	}
	if err := pool.Run(ctx); !errors.Is(err, ErrPoolRunning) {
		t.Errorf("second run: %v, want ErrPoolRunning", err)
	}
}

// Every exit event names its likely cause (the worker_exited event's
// cause field), and the pool logs each event once, under its stable
// name.
func TestPoolExitCauses(t *testing.T) {
	var logs lockedLog
	crash := startPool(t, PoolConfig{Logger: logs.logger(), Restart: RestartPolicy{InitialBackoff: time.Hour}},
		"-exit-after", "20ms", "-exit-code", "3")
	if e := crash.events.wait(t, 10*time.Second, EventExited, 1); e.Cause != ExitCrash || !e.Crash {
		t.Errorf("exit 3: cause %q crash %v, want %q", e.Cause, e.Crash, ExitCrash)
	}
	clean := startPool(t, PoolConfig{Restart: RestartPolicy{InitialBackoff: time.Hour}}, "-exit-after", "20ms", "-exit-code", "0")
	if e := clean.events.wait(t, 10*time.Second, EventExited, 1); e.Cause != ExitClean {
		t.Errorf("exit 0: cause %q, want %q", e.Cause, ExitClean)
	}
	fenced := startPool(t, PoolConfig{})
	fenced.events.wait(t, 10*time.Second, EventStarted, 1)
	if err := fenced.Fence(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e := fenced.events.wait(t, 10*time.Second, EventExited, 1); e.Cause != ExitFenced {
		t.Errorf("fenced: cause %q, want %q", e.Cause, ExitFenced)
	}
	stopped := startPool(t, PoolConfig{})
	stopped.events.wait(t, 10*time.Second, EventStarted, 1)
	if err := stopped.stop(); err != nil {
		t.Fatal(err)
	}
	if e := stopped.events.wait(t, 10*time.Second, EventExited, 1); e.Cause != ExitStop {
		t.Errorf("stopped: cause %q, want %q", e.Cause, ExitStop)
	}
	if err := crash.stop(); err != nil {
		t.Fatal(err)
	}
	text := logs.String()
	for _, want := range []string{"worker_spawned", "worker_exited", "cause=crash", "backoff"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	for _, sentence := range []string{"worker started", "worker crashed", "worker exited"} {
		if strings.Contains(text, sentence) {
			t.Errorf("log still has the sentence %q: each event is logged once, by name", sentence)
		}
	}
	if n := strings.Count(text, "worker_exited"); n != 1 {
		t.Errorf("worker_exited logged %d times for one exit", n)
	}
}

// lockedLog collects a logger's output for a test.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *lockedLog) logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: l, Level: hclog.Debug})
}
