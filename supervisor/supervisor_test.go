package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

type harness struct {
	fb     *fakeBackend
	sup    *Supervisor
	pools  chan *fakePool
	cancel context.CancelFunc
	done   chan error
	logBuf *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func queueCfg(name string, maxRSS int) config.QueueConfig {
	return config.QueueConfig{Name: name, Command: []string{"w"}, Concurrency: 1, MaxRSSMB: maxRSS,
		StopTimeout: time.Second, Restart: config.RestartPolicy{InitialBackoff: time.Second, MaxBackoff: time.Minute, ResetAfter: time.Minute, MaxCrashes: 3}}
}

func startHarness(t *testing.T, exclusive bool) *harness {
	t.Helper()
	return startHarnessWith(t, exclusive, nil)
}

// startHarnessWith is startHarness with a change to the config (nil: none).
func startHarnessWith(t *testing.T, exclusive bool, change func(*Config)) *harness {
	t.Helper()
	h := &harness{fb: newFakeBackend(), pools: make(chan *fakePool, 10), done: make(chan error, 1), logBuf: &lockedBuffer{}}
	cfg := Config{
		Identity:  election.Identity{Cluster: "c", Node: "self"},
		Timing:    election.Timing{LeaseTTL: time.Second, FenceMargin: 100 * time.Millisecond},
		Queues:    []config.QueueConfig{queueCfg("q", 4096)},
		Exclusive: exclusive,
		Dial:      func(ctx context.Context) (election.Backend, error) { return h.fb, nil },
		NewPool: func(spec PoolSpec) Pool {
			p := &fakePool{backend: h.fb, deadline: spec.Deadline, fenced: make(chan struct{}), concurrency: spec.Queue.Concurrency}
			h.pools <- p
			return p
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: h.logBuf, Level: hclog.Debug}),
	}
	if change != nil {
		change(&cfg)
	}
	sup, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.sup = sup
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- sup.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("supervisor did not stop")
		}
	})
	return h
}

func (h *harness) pool(t *testing.T) *fakePool {
	t.Helper()
	select {
	case p := <-h.pools:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no pool started")
		return nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 5*time.Second, what, cond)
}

// waitWithin waits for cond for at most d.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Without renewals the leader fences its workers at ValidUntil - margin.
func TestFencesAtDeadline(t *testing.T) {
	h := startHarness(t, false)
	valid := time.Now().Add(400 * time.Millisecond)
	l := newFakeLeadership("q", 7, valid)
	h.fb.grant <- l
	p := h.pool(t)
	want := valid.Add(-100 * time.Millisecond)
	if !p.deadline.Equal(want) {
		t.Errorf("pool deadline %s, want ValidUntil-margin %s", p.deadline, want)
	}
	select {
	case <-p.fenced:
	case <-time.After(2 * time.Second):
		t.Fatal("workers were not fenced")
	}
	p.mu.Lock()
	at := p.fencedAt
	p.mu.Unlock()
	if at.Before(want) {
		t.Errorf("fenced %s before the deadline", want.Sub(at))
	}
	if late := at.Sub(want); late > 50*time.Millisecond {
		t.Errorf("fenced %s after the deadline", late)
	}
	waitFor(t, "resign after fence", func() bool { return slices.Contains(h.fb.Events(), "resign") })
}

// A host suspend stops CLOCK_MONOTONIC (and Go's timers) but not the
// lease on the backend: after the resume the leader fences at once by its
// suspend-counting clock, not a whole remaining lease later when its
// monotonic fence timer fires. The suspend is injected through
// Config.Now (a real one cannot be made here).
func TestFencesAfterSuspend(t *testing.T) {
	var suspended atomic.Int64
	h := startHarnessWith(t, false, func(c *Config) {
		c.LeaseTTL, c.FenceMargin = 20*time.Second, 2*time.Second
		c.Now = func() time.Time { return time.Now().Add(time.Duration(suspended.Load())) }
	})
	l := newFakeLeadership("q", 9, time.Now().Add(20*time.Second))
	h.fb.grant <- l
	p := h.pool(t)
	waitFor(t, "the pool running", func() bool { return slices.Contains(h.fb.Events(), "pool_start") })
	resumed := time.Now()
	suspended.Store(int64(30 * time.Second)) // the host slept through the lease
	select {
	case <-p.fenced:
		t.Logf("fenced %s after the resume", time.Since(resumed).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatal("workers not fenced within 3s of a resume past the lease; the monotonic fence timer has 18s to go")
	}
	waitFor(t, "resign after fence", func() bool { return slices.Contains(h.fb.Events(), "resign") })
}

// Renewals move the pool's deadline forward; a loss fences at once.
func TestRenewalsExtendAndLossFences(t *testing.T) {
	h := startHarness(t, false)
	l := newFakeLeadership("q", 8, time.Now().Add(300*time.Millisecond))
	h.fb.grant <- l
	p := h.pool(t)
	for i := 0; i < 5; i++ {
		next := time.Now().Add(300 * time.Millisecond)
		l.renew(next)
		waitFor(t, "deadline moved", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.deadline.Equal(next.Add(-100 * time.Millisecond))
		})
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-p.fenced:
		t.Fatal("fenced although renewed")
	default:
	}
	if !h.sup.Leads("q") {
		t.Error("Leads(q) = false while leading")
	}
	lostAt := time.Now()
	l.lose()
	select {
	case <-p.fenced:
	case <-time.After(time.Second):
		t.Fatal("loss did not fence")
	}
	if d := time.Since(lostAt); d > 50*time.Millisecond {
		t.Errorf("fence %s after loss", d)
	}
	waitFor(t, "follower again", func() bool { return !h.sup.Leads("q") })
}

// A graceful stop stops the pool first and resigns only after it ended.
func TestGracefulStopResignsAfterWorkers(t *testing.T) {
	h := startHarness(t, false)
	l := newFakeLeadership("q", 9, time.Now().Add(10*time.Second))
	h.fb.grant <- l
	h.pool(t)
	waitFor(t, "pool started", func() bool { return slices.Contains(h.fb.Events(), "pool_start") })
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	h.done <- nil
	ev := h.fb.Events()
	stop, resign := slices.Index(ev, "pool_stop"), slices.Index(ev, "resign")
	if stop < 0 || resign < 0 || resign < stop {
		t.Fatalf("events %v: want pool_stop before resign", ev)
	}
}

// A follower reports each differing field against the leader's config.
func TestFollowerReportsConflict(t *testing.T) {
	h := startHarness(t, false)
	leaderCfg := queueCfg("q", 16384).Publish(time.Second)
	payload, _ := json.Marshal(diagnosis.LeaderPayload{Version: "x", Config: leaderCfg})
	h.fb.mu.Lock()
	h.fb.leaders["q"] = election.LeaderRecord{Queue: "q", Node: "other", Term: 3, Payload: payload}
	h.fb.mu.Unlock()
	h.fb.wake()
	waitFor(t, "conflict logged", func() bool {
		return strings.Contains(h.logBuf.String(), "max_rss_mb leader=16384 follower=4096")
	})
	waitFor(t, "conflict in member record", func() bool {
		h.fb.mu.Lock()
		m := h.fb.members["self"]
		h.fb.mu.Unlock()
		p, err := diagnosis.DecodeMemberPayload(m.Payload)
		return err == nil && len(p.Queues["q"].Conflicts) == 1 && p.Queues["q"].Conflicts[0].Field == "max_rss_mb"
	})
	// Reported once per change, not on every wake-up.
	h.fb.wake()
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(h.logBuf.String(), "config_conflict"); n != 1 {
		t.Errorf("conflict logged %d times, want once", n)
	}
}

// --exclusive fails with the leader's identity and config.
func TestExclusiveAlreadyLed(t *testing.T) {
	fb := newFakeBackend()
	payload, _ := json.Marshal(diagnosis.LeaderPayload{Config: queueCfg("q", 16384).Publish(time.Second)})
	fb.leaders["q"] = election.LeaderRecord{Queue: "q", Node: "other", Host: "h1", PID: 42, Term: 3, Payload: payload}
	sup, err := New(Config{
		Identity: election.Identity{Cluster: "c", Node: "self"}, Timing: election.Timing{LeaseTTL: time.Second, FenceMargin: 100 * time.Millisecond},
		Queues: []config.QueueConfig{queueCfg("q", 4096)}, Exclusive: true,
		Dial:    func(ctx context.Context) (election.Backend, error) { return fb, nil },
		NewPool: func(spec PoolSpec) Pool { t.Error("pool started"); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = sup.Run(ctx)
	var led *AlreadyLedError
	if !errors.As(err, &led) {
		t.Fatalf("Run = %v, want AlreadyLedError", err)
	}
	for _, want := range []string{"node other", "host h1", "max_rss_mb=16384"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err, want)
		}
	}
}

// A leader's workers get their fence token: the queue's fence key and the
// owner "<cluster>/<deployment id>" read from the backend.
func TestWorkersGetFenceToken(t *testing.T) {
	env := make(chan []string, 1)
	h := startHarnessWith(t, false, func(cfg *Config) {
		q := queueCfg("q", 0)
		q.FenceKey = "orders"
		cfg.Queues = []config.QueueConfig{q}
		inner := cfg.NewPool
		cfg.NewPool = func(spec PoolSpec) Pool {
			env <- spec.Env
			return inner(spec)
		}
	})
	h.fb.grant <- newFakeLeadership("q", 7, time.Now().Add(time.Minute))
	h.pool(t)
	got := <-env
	for _, want := range []string{"REGENT_FENCE_KEY=orders", "REGENT_FENCE_OWNER=c/0123456789abcdef", "REGENT_QUEUE=q"} {
		if !slices.Contains(got, want) {
			t.Errorf("worker env %q lacks %s", got, want)
		}
	}
}
