package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

func liveSet(nodes ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range nodes {
		m[n] = true
	}
	return m
}

func TestBalanceShares(t *testing.T) {
	cases := []struct {
		name     string
		v        balanceView
		node     string
		surplus  int
		holdBack bool
	}{
		{"alone leads all", balanceView{liveSet("a"), map[string]int{"a": 10}, 10, 10}, "a", 0, false},
		{"newcomer: leader above ceil", balanceView{liveSet("a", "b"), map[string]int{"a": 10}, 10, 10}, "a", 5, true},
		{"newcomer holds nothing", balanceView{liveSet("a", "b"), map[string]int{"a": 10}, 10, 10}, "b", 0, false},
		{"balanced 3 of 10", balanceView{liveSet("a", "b", "c"), map[string]int{"a": 4, "b": 3, "c": 3}, 10, 10}, "a", 0, false},
		{"at ceil while another below floor", balanceView{liveSet("a", "b", "c"), map[string]int{"a": 2, "b": 2}, 4, 4}, "a", 1, false},
		{"at ceil while another below floor, b", balanceView{liveSet("a", "b", "c"), map[string]int{"a": 2, "b": 2}, 4, 4}, "b", 0, false},
		{"floor fine", balanceView{liveSet("a", "b", "c"), map[string]int{"a": 2, "b": 1, "c": 1}, 4, 4}, "a", 0, false},
		{"below ceil campaigns", balanceView{liveSet("a", "b", "c"), map[string]int{"a": 2, "b": 1, "c": 1}, 4, 4}, "b", 0, false},
		{"300 over 3 after a join", balanceView{liveSet("a", "b", "c"), map[string]int{"a": 150, "b": 150}, 300, 300}, "a", 50, true},
		{"300 over 2 after a kill, uneven race", balanceView{liveSet("a", "b"), map[string]int{"a": 157, "b": 143}, 300, 300}, "a", 7, true},
		{"not eligible nodes do not count", balanceView{liveSet("a", "b"), map[string]int{"a": 150, "b": 150, "dead": 0}, 300, 300}, "a", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.v.surplus(tc.node); got != tc.surplus {
				t.Errorf("surplus(%s) = %d, want %d (plan %v)", tc.node, got, tc.surplus, tc.v.plan())
			}
			if got := tc.v.holdsBack(tc.node); got != tc.holdBack {
				t.Errorf("holdsBack(%s) = %v, want %v", tc.node, got, tc.holdBack)
			}
		})
	}
}

// The plan moves the fewest queues possible (no queue moves twice, no
// node both gives and receives), lands every node within [floor, ceil],
// and is the same whatever order the view was built in.
func TestBalancePlan(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 500; i++ {
		r := 1 + rng.Intn(6)
		q := rng.Intn(400)
		v := balanceView{live: map[string]bool{}, counts: map[string]int{}, queues: q}
		nodes := []string{}
		for j := 0; j < r; j++ {
			n := fmt.Sprintf("n%d", j)
			nodes = append(nodes, n)
			v.live[n] = true
		}
		for k := 0; k < q; k++ {
			v.counts[nodes[rng.Intn(r)]]++
		}
		v.led = q
		plan := v.plan()
		after := map[string]int{}
		for n, c := range v.counts {
			after[n] = c
		}
		gives, gets := map[string]bool{}, map[string]bool{}
		moved := 0
		for _, m := range plan {
			after[m.from] -= m.n
			after[m.to] += m.n
			gives[m.from], gets[m.to] = true, true
			moved += m.n
		}
		floor, ceil := v.share()
		minMoves := 0
		for _, n := range nodes {
			if c := after[n]; c < floor || c > ceil {
				t.Fatalf("counts %v: after plan %v node %s leads %d, want %d..%d", v.counts, plan, n, c, floor, ceil)
			}
			if gives[n] && gets[n] {
				t.Fatalf("counts %v: plan %v makes %s give and receive", v.counts, plan, n)
			}
			if c := v.counts[n]; c > ceil {
				minMoves += c - ceil
			}
		}
		// At most the excess above ceil, plus what is needed to lift
		// nodes below floor.
		lift := 0
		for _, n := range nodes {
			if c := v.counts[n]; c < floor {
				lift += floor - c
			}
		}
		if moved > max(minMoves, lift) {
			t.Fatalf("counts %v: plan %v moves %d, more than needed (%d)", v.counts, plan, moved, max(minMoves, lift))
		}
		// Deterministic: the same plan from a copy built in another order.
		w := balanceView{live: map[string]bool{}, counts: map[string]int{}, queues: q, led: q}
		for j := len(nodes) - 1; j >= 0; j-- {
			w.live[nodes[j]] = true
			w.counts[nodes[j]] = v.counts[nodes[j]]
		}
		if a, b := fmt.Sprint(plan), fmt.Sprint(w.plan()); a != b {
			t.Fatalf("plan not deterministic: %s vs %s", a, b)
		}
	}
}

// A replica whose count dropped recently (SIGKILLed: its guards released
// its terms) is no target until it has proved alive for a while, and a
// stale member record never is.
func TestBalanceEligible(t *testing.T) {
	var tr balanceTracker
	t0 := time.Unix(1000, 0)
	window := 6 * time.Second
	tr.observe(map[string]int{"a": 100, "b": 100, "c": 100}, t0)
	if !tr.eligible("c", t0, t0, window) {
		t.Fatal("c steady and fresh: want eligible")
	}
	tr.observe(map[string]int{"a": 150, "b": 150}, t0.Add(time.Second))
	if tr.eligible("c", t0.Add(time.Second), t0.Add(2*time.Second), window) {
		t.Fatal("c just lost every queue: want not eligible")
	}
	if !tr.eligible("a", t0.Add(2*time.Second), t0.Add(2*time.Second), window) {
		t.Fatal("a grew: want eligible")
	}
	if tr.eligible("c", t0.Add(time.Second), t0.Add(8*time.Second), window) {
		t.Fatal("c's record is stale: want not eligible")
	}
	if !tr.eligible("c", t0.Add(8*time.Second), t0.Add(8*time.Second), window) {
		t.Fatal("c fresh again long after the drop: want eligible")
	}
	if !tr.eligible("d", time.Time{}, t0, window) {
		t.Fatal("unknown last-seen: want eligible")
	}
	// A donor handing over a batch stays eligible: every replica must
	// plan with the same live set.
	tr.observe(map[string]int{"a": 125, "b": 150, "c": 25}, t0.Add(9*time.Second))
	if !tr.eligible("a", t0.Add(9*time.Second), t0.Add(9*time.Second), window) {
		t.Fatal("a handed over a batch: want still eligible")
	}
}

// Whatever the starting counts, repeatedly applying the plan converges in
// one round, and a second round moves nothing (no oscillation).
func TestBalanceConverges(t *testing.T) {
	for _, start := range [][]int{{300, 0, 0}, {0, 0, 300}, {299, 1, 0}, {100, 100, 100}, {5, 0, 0}, {4, 0, 0, 0, 0}, {151, 149}, {101, 101, 98}} {
		nodes := []string{"a", "b", "c", "d", "e"}[:len(start)]
		v := balanceView{live: map[string]bool{}, counts: map[string]int{}}
		for i, n := range nodes {
			v.live[n] = true
			v.counts[n] = start[i]
			v.queues += start[i]
		}
		v.led = v.queues
		for round := 0; round < 2; round++ {
			moves := 0
			for _, n := range nodes {
				for _, m := range v.plan() {
					if m.from == n {
						v.counts[m.from] -= m.n
						v.counts[m.to] += m.n
						moves += m.n
					}
				}
			}
			if round == 1 && moves > 0 {
				t.Errorf("start %v: second round still moves %d", start, moves)
			}
		}
		floor, ceil := v.share()
		for _, n := range nodes {
			if c := v.counts[n]; c < floor || c > ceil {
				t.Errorf("start %v: %s leads %d, want within [%d, %d] (%v)", start, n, c, floor, ceil, v.counts)
			}
		}
	}
}

// startBalanced runs a supervisor "self" with balancing on, leading every
// queue in leads; then a fresh member "other", standing by for every
// queue, shows up.
// runOnFake runs a supervisor named "self" on fb (1 s lease, 50 ms retry
// unless cfg sets them) until the end of the test.
func runOnFake(t *testing.T, fb *fakeBackend, cfg Config) {
	t.Helper()
	cfg.Identity = election.Identity{Cluster: "c", Node: "self"}
	cfg.LeaseTTL, cfg.FenceMargin = time.Second, 100*time.Millisecond
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 50 * time.Millisecond
	}
	cfg.Dial = func(ctx context.Context) (election.Backend, error) { return fb, nil }
	cfg.NewPool = func(spec PoolSpec) Pool {
		return &fakePool{backend: fb, deadline: spec.Deadline, fenced: make(chan struct{})}
	}
	sup, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("supervisor did not stop")
		}
	})
}

func startBalanced(t *testing.T, queues []config.QueueConfig, leads []string, others ...string) *fakeBackend {
	t.Helper()
	return startBalancedOn(t, nil, queues, leads, others...)
}

// startBalancedOn is startBalanced with the balancer's clock (nil: the
// wall clock).
func startBalancedOn(t *testing.T, clk clock, queues []config.QueueConfig, leads []string, others ...string) *fakeBackend {
	t.Helper()
	fb := newFakeBackend()
	mp := diagnosis.MemberPayload{Queues: map[string]diagnosis.MemberQueue{}}
	for _, q := range queues {
		mp.Queues[q.Name] = diagnosis.MemberQueue{Role: election.RoleFollower}
	}
	payload, _ := json.Marshal(mp)
	runOnFake(t, fb, Config{Queues: queues, Balance: true, clock: clk})
	for i, q := range leads {
		fb.mu.Lock()
		fb.leaders[q] = election.LeaderRecord{Queue: q, Node: "self", Term: int64(i + 1)}
		fb.mu.Unlock()
		select {
		case fb.grant <- newFakeLeadership(q, int64(i+1), time.Now().Add(time.Hour)):
		case <-time.After(5 * time.Second):
			t.Fatal("no campaign for " + q)
		}
	}
	// The other replica shows up once self leads.
	// Every leadership started (its role is in self's member record)
	// before the other replicas show up: a batch planned earlier would
	// count queues whose leadership is still starting, and skip them.
	deadline := time.Now().Add(5 * time.Second)
	for {
		fb.mu.Lock()
		m := fb.members["self"]
		fb.mu.Unlock()
		n := 0
		if p, err := diagnosis.DecodeMemberPayload(m.Payload); err == nil {
			for _, q := range leads {
				if p.Queues[q].Role == election.RoleLeader {
					n++
				}
			}
		}
		if n == len(leads) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d leaderships started", n, len(leads))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(others) == 0 {
		others = []string{"other"}
	}
	fb.mu.Lock()
	for _, n := range others {
		fb.members[n] = election.MemberRecord{Node: n, Role: election.RoleFollower, LastSeen: time.Now(), Payload: payload}
	}
	fb.mu.Unlock()
	fb.wake()
	return fb
}

func waitEvents(t *testing.T, fb *fakeBackend, what string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := fb.Events()
		if ok(ev) {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; events %v", what, ev)
		}
		fb.wake()
		time.Sleep(10 * time.Millisecond)
	}
}

func countPrefix(ev []string, prefix string) int {
	n := 0
	for _, e := range ev {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

// A leader that is not the queue's preferred node hands the queue to the
// live preferred node, naming it in the step-down request, and resigns
// only after its workers stopped.
func TestPreferHandsOver(t *testing.T) {
	q := queueCfg("q", 0)
	q.Prefer = []string{"other"}
	fb := startBalanced(t, []config.QueueConfig{q}, []string{"q"})
	ev := waitEvents(t, fb, "resign", func(ev []string) bool { return countPrefix(ev, "resign") == 1 })
	// The fake pool records pool_start from its own goroutine, so it may
	// come after the step-down request; what matters is that the request
	// names the receiver before the workers stop, and the resign comes
	// after they stopped.
	want := []string{"pool_start", "step_down q to other", "pool_stop", "resign"}
	sorted := slices.Clone(ev)
	slices.Sort(sorted)
	wantSorted := slices.Clone(want)
	slices.Sort(wantSorted)
	at := func(e string) int { return slices.Index(ev, e) }
	if !slices.Equal(sorted, wantSorted) || at("pool_start") > at("pool_stop") ||
		at("step_down q to other") > at("pool_stop") || at("pool_stop") > at("resign") {
		t.Fatalf("events %v, want %v (pool_start and step_down in either order)", ev, want)
	}
}

// Leading 4 queues beside an idle replica, a replica hands over its
// surplus of 2, each to that replica, and no more while they have not
// left. A batch holds only queues already led when it is planned, so the
// first batch may be 1 queue if the observation came before the fourth
// leadership started (the fake backend never completes a handover, so
// the next batch never comes): 1 or 2, never more.
func TestRebalanceTargetedBatch(t *testing.T) {
	var qs []config.QueueConfig
	var names []string
	for _, n := range []string{"q1", "q2", "q3", "q4"} {
		qs = append(qs, queueCfg(n, 0))
		names = append(names, n)
	}
	fb := startBalanced(t, qs, names)
	waitEvents(t, fb, "a resign", func(ev []string) bool { return countPrefix(ev, "resign") >= 1 })
	// Further observations while the leader records still name self
	// (the handovers have not completed) move nothing beyond the surplus.
	for i := 0; i < 20; i++ {
		fb.wake()
		time.Sleep(10 * time.Millisecond)
	}
	ev := fb.Events()
	if n := countPrefix(ev, "step_down "); n < 1 || n > 2 || countPrefix(ev, "resign") != n {
		t.Fatalf("want 1 or 2 handovers (the surplus is 2), each followed by a resign; events %v", ev)
	}
	for _, e := range ev {
		if strings.HasPrefix(e, "step_down ") && !strings.HasSuffix(e, " to other") {
			t.Fatalf("handover not targeted at the idle replica: %v", ev)
		}
	}
}

// numberedQueues returns n queue configs q00, q01, ... and their names.
func numberedQueues(n int) ([]config.QueueConfig, []string) {
	var qs []config.QueueConfig
	var names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("q%02d", i)
		qs = append(qs, queueCfg(name, 0))
		names = append(names, name)
	}
	return qs, names
}

// Once a batch's queues have arrived, the next batch follows after the
// batch pace even if no change notification comes: the observer rechecks
// the plan then, instead of waiting for its safety-net tick (5 s here).
// Leading 60 queues beside an idle replica, self hands over its surplus
// of 30 in batches (the first may be short if it was planned before every
// leadership started); the test moves each handed-over queue to the other
// replica without notifying a change, and moves the balancer's clock by
// the batch pace: that alone must bring the next batch.
// armed reports whether a timer was armed on clk since the last look.
func armed(clk *fakeClock) bool {
	select {
	case <-clk.armed:
		return true
	default:
		return false
	}
}

func TestRebalanceNextBatchWithoutChange(t *testing.T) {
	qs, names := numberedQueues(60)
	clk := newFakeClock(time.Now())
	fb := startBalancedOn(t, clk, qs, names)
	pace := 2 * 50 * time.Millisecond // batchPace of runOnFake's retry interval
	stepDowns := func() []string {
		var out []string
		for _, e := range fb.Events() {
			if strings.HasPrefix(e, "step_down ") {
				out = append(out, strings.Fields(e)[1])
			}
		}
		return out
	}
	arrived := map[string]bool{}
	progress := time.Now() // the last arrival
	advanced := progress   // the last move of the clock
	batches := 0
	for len(arrived) < 30 {
		var fresh []string
		for _, q := range stepDowns() {
			if !arrived[q] {
				fresh = append(fresh, q)
			}
		}
		fb.mu.Lock()
		for _, q := range fresh {
			arrived[q] = true
			fb.leaders[q] = election.LeaderRecord{Queue: q, Node: "other", Term: int64(100 + len(arrived))}
		}
		fb.mu.Unlock()
		if len(fresh) > 0 {
			batches++
			progress, advanced = time.Now(), time.Now()
			clk.Advance(pace)
		} else if time.Since(advanced) > 200*time.Millisecond && armed(clk) {
			// The observation that took the advance may have read the
			// records before they moved, and armed its recheck a pace
			// later: time goes on while it waits on the clock.
			advanced = time.Now()
			clk.Advance(pace)
		}
		// Bound: well under the observer's 5 s safety-net tick.
		if time.Since(progress) > 3*time.Second {
			t.Fatalf("no new batch %s after the last arrived and the clock passed the pace (no change notified); %d handed over; events %v",
				time.Since(progress).Round(time.Millisecond), len(arrived), fb.Events())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A batch beyond the surplus would come at the next pace.
	clk.Advance(pace)
	time.Sleep(200 * time.Millisecond)
	if n := len(stepDowns()); n != 30 {
		t.Fatalf("%d step-downs, want the surplus of 30", n)
	}
	t.Logf("surplus of 30 handed over in %d batches", batches)
}

// A replica that leads every queue beside two idle replicas hands its
// surplus to both at once: up to balanceBatch queues to each receiver in
// one batch, not balanceBatch in all.
func TestRebalanceBatchPerReceiver(t *testing.T) {
	qs, names := numberedQueues(90)
	fb := startBalanced(t, qs, names, "a", "b")
	to := func() map[string]int {
		out := map[string]int{}
		for _, e := range fb.Events() {
			if f := strings.Fields(e); len(f) == 4 && f[0] == "step_down" {
				out[f[3]]++
			}
		}
		return out
	}
	// The fake never completes a handover, so the first batch is all
	// there is; it may be planned before every leadership started, so
	// wait for both receivers to have their full batch.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := to()
		if got["a"] == balanceBatch && got["b"] == balanceBatch {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("step-downs per receiver %v; want %d to each of a and b in the first batch", got, balanceBatch)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if got := to(); got["a"] != balanceBatch || got["b"] != balanceBatch || len(got) != 2 {
		t.Fatalf("step-downs per receiver %v; want exactly %d to each of a and b", got, balanceBatch)
	}
}

// A replica that just handed a queue over holds back its candidacy for
// StepDownHold, unless a step-down request names it as the receiver: a
// queue handed straight back campaigns at once, not after the hold.
func TestHandedBackQueueNotHeld(t *testing.T) {
	fb := newFakeBackend()
	runOnFake(t, fb, Config{Timing: election.Timing{StepDownHold: 10 * time.Second}, Queues: []config.QueueConfig{queueCfg("q", 0)}})
	grant := func(term int64, within time.Duration) bool {
		fb.mu.Lock()
		fb.leaders["q"] = election.LeaderRecord{Queue: "q", Node: "self", Term: term}
		fb.mu.Unlock()
		select {
		case fb.grant <- newFakeLeadership("q", term, time.Now().Add(time.Hour)):
			return true
		case <-time.After(within):
			return false
		}
	}
	if !grant(1, 5*time.Second) {
		t.Fatal("no campaign")
	}
	// Asked to hand q to "other": self steps down and resigns.
	fb.mu.Lock()
	fb.stepDowns["q"] = election.StepDownRequest{Queue: "q", To: "other", Term: 1}
	fb.mu.Unlock()
	waitEvents(t, fb, "the resign", func(ev []string) bool { return countPrefix(ev, "resign") == 1 })
	// "other" took term 2 and hands it straight back to self.
	fb.mu.Lock()
	delete(fb.leaders, "q")
	fb.stepDowns["q"] = election.StepDownRequest{Queue: "q", To: "self", Term: 2}
	fb.mu.Unlock()
	fb.wake()
	// Bound: well under the 10 s hold.
	if !grant(3, 3*time.Second) {
		t.Fatal("no campaign within 3 s of a step-down request naming self: held back by its own step-down hold")
	}
}
