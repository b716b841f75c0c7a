package supervisor

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// fakeClock is a clock the test advances; its timers fire when it
// passes their time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]bool
	armed  chan struct{} // a timer was armed (size 1, a test signal)
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, timers: map[*fakeTimer]bool{}, armed: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
	} else {
		c.timers[t] = true
	}
	select {
	case c.armed <- struct{}{}:
	default:
	}
	return t.c, func() {
		c.mu.Lock()
		delete(c.timers, t)
		c.mu.Unlock()
	}
}

// Advance moves the clock by d and fires the timers it passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			t.c <- c.now
			delete(c.timers, t)
		}
	}
}

// waitArmed waits until a timer has been armed since the last call.
func (c *fakeClock) waitArmed(t *testing.T) {
	t.Helper()
	select {
	case <-c.armed:
	case <-time.After(5 * time.Second):
		t.Fatal("no timer armed")
	}
}

// A runner that stepped down holds back its candidacy for StepDownHold
// by the clock, whatever the real time: it campaigns once the clock has
// passed the hold, and a step-down request naming it ends the hold at
// once.
func TestHoldBackFollowsTheClock(t *testing.T) {
	clk := newFakeClock(time.Unix(1000, 0))
	cfg := &Config{Timing: election.Timing{StepDownHold: 10 * time.Second}.WithDefaults()}
	cfg.Logger = hclog.NewNullLogger()
	r := newQueueRunner(cfg, queueCfg("q", 0), config.Published{}, nil, clk, newMemberPublisher(cfg))
	wait := func() chan error {
		done := make(chan error, 1)
		go func() { done <- r.waitHoldBack(context.Background()) }()
		return done
	}

	r.holds.steppedDown(clk.Now().Add(10 * time.Second))
	done := wait()
	clk.waitArmed(t)
	clk.Advance(9 * time.Second)
	select {
	case <-done:
		t.Fatal("hold ended 1 s early")
	default:
	}
	clk.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	r.holds.steppedDown(clk.Now().Add(10 * time.Second))
	done = wait()
	clk.waitArmed(t)
	r.holds.clear() // asked to take the queue over
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Balancing hands over one batch, then waits for it by the clock: no new
// batch while the batch's queues have not left and its pacing has not
// passed, one as soon as they left and the pace passed, and a fresh plan
// once a batch has taken longer than handoverBound. The decisions are a
// function of the observation and the clock: no goroutine, no sleep.
func TestBalancerBatchesByTheClock(t *testing.T) {
	qs, names := numberedQueues(4 * balanceBatch)
	cfg := &Config{Identity: election.Identity{Node: "self"}, Queues: qs, Balance: true,
		Timing: election.Timing{LeaseTTL: time.Second, RetryInterval: 50 * time.Millisecond}.WithDefaults()}
	bl := newBalancer(cfg)
	now := time.Unix(1000, 0)
	leaders := map[string]election.LeaderRecord{}
	leading := map[string]bool{}
	for i, n := range names {
		leaders[n] = election.LeaderRecord{Queue: n, Node: "self", Term: int64(i + 1)}
		leading[n] = true
	}
	standBy := diagnosis.MemberPayload{Queues: map[string]diagnosis.MemberQueue{}}
	for _, n := range names {
		standBy.Queues[n] = diagnosis.MemberQueue{Role: election.RoleFollower}
	}
	other := map[string]diagnosis.MemberPayload{"other": standBy}
	decide := func() (yields []string, d balanceDecision) {
		d = bl.decide(balanceInput{now: now, leaders: leaders, leading: leading,
			members: []election.MemberRecord{{Node: "other", LastSeen: now}}, decoded: other})
		for _, a := range d.actions {
			if a.kind == yieldQueue {
				yields = append(yields, a.queue)
			}
		}
		return yields, d
	}

	first, d := decide()
	if len(first) != balanceBatch || d.batch != balanceBatch || d.share != "50..50" {
		t.Fatalf("first batch: %d yields, batch %d, share %s; want %d, 50..50", len(first), d.batch, d.share, balanceBatch)
	}
	if want := now.Add(bl.batchPace()); !bl.recheck().Equal(want) {
		t.Fatalf("recheck %s, want the batch pace later", bl.recheck().Sub(now))
	}
	now = now.Add(bl.batchPace())
	if y, _ := decide(); len(y) != 0 {
		t.Fatalf("a new batch while the last has not left: %v", y)
	}
	// The batch arrives at the other replica.
	for _, q := range first {
		leaders[q] = election.LeaderRecord{Queue: q, Node: "other", Term: 1000}
		delete(leading, q)
	}
	if y, _ := decide(); len(y) != balanceBatch {
		t.Fatalf("second batch: %d yields, want %d", len(y), balanceBatch)
	}
	// Its queues never leave: handoverBound after the batch's pace the
	// replica plans afresh (the same queues again, as nothing changed).
	now = now.Add(bl.batchPace() + bl.handoverBound() - time.Millisecond)
	if y, _ := decide(); len(y) != 0 {
		t.Fatalf("a new batch before handoverBound: %v", y)
	}
	now = now.Add(time.Millisecond)
	if y, _ := decide(); len(y) != balanceBatch {
		t.Fatalf("after handoverBound: %d yields, want %d", len(y), balanceBatch)
	}
}
