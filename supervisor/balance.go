package supervisor

import (
	"fmt"
	"sort"
	"time"

	"github.com/regentd/regent/election"
)

// Balancing spreads leadership evenly: with R live replicas and Q queues,
// each replica ends up leading between floor(Q/R) and ceil(Q/R) of them,
// without ever leaving a queue leaderless for longer than a graceful
// handover. Every replica computes, from the same observation (leader
// records and member records), the same deterministic plan: move one
// queue at a time from the most loaded eligible replica to the least
// loaded one until they differ by at most one. Each replica then carries
// out only its own part of the plan:
//
//   - targeted handover: for each queue it must give away, the leader
//     writes a step-down request naming the receiving replica (the
//     backends hold every other replica back for a few seconds, so the
//     queue goes exactly where the plan says and the old leader does not
//     win it back), stops its workers and resigns. Queues move in bounded
//     batches (balanceBatch per receiver), and the next batch starts only
//     when the queues of the last batch have left and no more queues are
//     without a leader than the other replicas' batches account for;
//   - candidacy delay: a replica above ceil(Q/R) holds back its candidacy
//     for queues led by others, and delays it for a free queue, so that a
//     replica below its share takes it.
//
// Eligible replicas are the ones that can take a queue now: their member
// record is fresh (last seen within readyAge) and their leadership count
// has not recently dropped to zero. A replica SIGKILLed with its host alive loses
// every leadership at once (its guards release the terms) while its member
// record lingers until its lease expires; the recent drop keeps the others
// from handing queues to it meanwhile.
//
// A queue's prefer list overrides the plan: a leader that is not preferred
// hands the queue to a live preferred node, a follower that is not
// preferred holds back while a preferred node is live, and such queues are
// never moved by the plan.

// balanceBatch bounds how many queues one replica hands over to one
// receiver at a time: every handover costs the receiver a worker spawn (a
// guard process and the worker), and hundreds at once on a small host
// starve lease renewals.
const balanceBatch = 25

// balanceView is what one observation tells about leadership counts.
type balanceView struct {
	live   map[string]bool // eligible members that campaign for our queues
	counts map[string]int  // queues of ours led, per node
	queues int             // our queues
	led    int             // our queues that have a leader
}

// share returns floor and ceil of the fair share.
func (v balanceView) share() (floor, ceil int) {
	r := len(v.live)
	if r == 0 {
		return v.queues, v.queues
	}
	return v.queues / r, (v.queues + r - 1) / r
}

// surplus is how many of its queues node should hand over now, according
// to the plan.
func (v balanceView) surplus(node string) int {
	n := 0
	for _, m := range v.plan() {
		if m.from == node {
			n += m.n
		}
	}
	return n
}

// holdsBack reports whether node should delay its candidacy for more
// queues: it leads more than its ceiling share, and another eligible
// replica can take them.
func (v balanceView) holdsBack(node string) bool {
	if len(v.live) < 2 {
		return false
	}
	_, ceil := v.share()
	return v.counts[node] > ceil
}

// move is one part of a plan: n queues from one node to another.
type move struct {
	from, to string
	n        int
}

// plan returns the moves that even out the counts of the eligible nodes:
// repeatedly one queue from the most loaded to the least loaded, ties
// broken by node name, until they differ by at most one. It is
// deterministic, so every replica that sees the same view computes the
// same plan and no receiver gets queues from two donors that both meant
// to fill the same gap.
func (v balanceView) plan() []move {
	if len(v.live) < 2 {
		return nil
	}
	nodes := make([]string, 0, len(v.live))
	for n := range v.live {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	counts := make([]int, len(nodes))
	for i, n := range nodes {
		counts[i] = v.counts[n]
	}
	idx := map[[2]int]int{}
	var out []move
	for range v.queues + 1 {
		hi, lo := 0, 0
		for i := range nodes {
			if counts[i] > counts[hi] {
				hi = i
			}
			if counts[i] < counts[lo] {
				lo = i
			}
		}
		if counts[hi]-counts[lo] <= 1 {
			break
		}
		counts[hi]--
		counts[lo]++
		k := [2]int{hi, lo}
		if j, ok := idx[k]; ok {
			out[j].n++
			continue
		}
		idx[k] = len(out)
		out = append(out, move{from: nodes[hi], to: nodes[lo], n: 1})
	}
	return out
}

// balanceTracker is the observer's memory between observations, for
// eligibility and batching. It is owned by the observer goroutine.
type balanceTracker struct {
	lastCounts map[string]int
	dropped    map[string]time.Time // when a node's count last dropped
	// moving lists the queues handed over in the current batch, with the
	// term handed over.
	moving map[string]int64
	next   time.Time // no new batch before
	// recheck: when the plan should be looked at again though nothing
	// changed (a batch's pacing ran out, or its handovers are still under
	// way); zero when only a change matters. The observer observes again
	// then: its safety-net tick is a whole lease, and waiting for it made
	// each batch of a settling cluster take 5-10 s instead of under one.
	recheck time.Time
}

// eligible reports whether node can receive queues now: its member
// record is fresh and its count has not dropped within the last window.
func (t *balanceTracker) eligible(node string, lastSeen time.Time, now time.Time, window time.Duration) bool {
	if !lastSeen.IsZero() && now.Sub(lastSeen) > window {
		return false
	}
	if d, ok := t.dropped[node]; ok && now.Sub(d) < window+time.Second {
		return false
	}
	return true
}

// observe records the counts of one observation.
func (t *balanceTracker) observe(counts map[string]int, now time.Time) {
	if t.dropped == nil {
		t.dropped = map[string]time.Time{}
	}
	for n, c := range t.lastCounts {
		// Only a drop to nothing: a donor handing over a batch drops too,
		// and counting it out would make each replica plan with a
		// different set of live replicas (seen at 5,000 queues: the
		// donors took each other for dead and moved queues between
		// themselves).
		if c > 0 && counts[n] == 0 {
			t.dropped[n] = now
		}
	}
	t.lastCounts = counts
}

// readyAge is how old a member record may be for its replica to count as
// live for balancing: a few renewals.
func (s *Supervisor) readyAge() time.Duration {
	return s.cfg.LeaseTTL/2 + time.Second
}

// balance applies the plan for this replica after an observation.
// leaders maps each of our queues to its current leader record; ready
// maps each eligible node to the queues it campaigns for.
func (s *Supervisor) balance(v balanceView, leaders map[string]election.LeaderRecord, ready map[string]map[string]bool) {
	if !s.cfg.Balance || s.cfg.Exclusive {
		return
	}
	s.bal.recheck = time.Time{}
	pinned := s.balancePreferred(v, leaders, ready)
	s.balanceCandidacy(v, leaders, pinned)
	s.balanceHandovers(v, leaders, ready, pinned)
}

// leads reports whether this replica leads qs right now.
func (s *Supervisor) leads(qs *queueState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return qs.role == election.RoleLeader
}

// balancePreferred hands over, or holds back from, the queues pinned to a
// live preferred node, and returns them.
func (s *Supervisor) balancePreferred(v balanceView, leaders map[string]election.LeaderRecord, ready map[string]map[string]bool) map[string]bool {
	me := s.cfg.Identity.Node
	pinned := map[string]bool{}
	for _, name := range s.order {
		qs := s.queues[name]
		to := ""
		for _, n := range qs.cfg.Prefer {
			if v.live[n] && (n == me || ready[n][name]) {
				to = n
				break
			}
		}
		if to == "" {
			continue
		}
		pinned[name] = true
		switch {
		case to == me:
			s.clearBalanceHold(qs)
		case s.leads(qs):
			s.yieldQueue(qs, yieldReq{why: "preferred node live", to: to})
		default:
			s.holdQueue(qs, leaders[name].Node != "", s.holdDelay())
		}
	}
	return pinned
}

// balanceCandidacy delays this replica's candidacy for the queues it does
// not lead while it is above the ceiling share.
func (s *Supervisor) balanceCandidacy(v balanceView, leaders map[string]election.LeaderRecord, pinned map[string]bool) {
	me := s.cfg.Identity.Node
	hold := v.holdsBack(me)
	for _, name := range s.order {
		if pinned[name] {
			continue
		}
		qs := s.queues[name]
		if hold && leaders[name].Node != me {
			s.holdQueue(qs, leaders[name].Node != "", s.holdDelay())
		} else {
			s.clearBalanceHold(qs)
		}
	}
}

// balanceHandovers hands over this replica's part of the plan, one batch at
// a time: the queues handed over last time must have left (or the batch
// has taken too long: a receiver died?), and no failover may be under way.
func (s *Supervisor) balanceHandovers(v balanceView, leaders map[string]election.LeaderRecord, ready map[string]map[string]bool, pinned map[string]bool) {
	me := s.cfg.Identity.Node
	now := time.Now()
	t := &s.bal
	pending := 0
	for q, term := range t.moving {
		if l := leaders[q]; l.Node == "" || (l.Node == me && l.Term == term) {
			pending++
		}
	}
	if pending > 0 && now.Before(t.next.Add(s.handoverBound())) {
		t.recheck = maxTime(t.next, now.Add(s.batchPace()))
		return
	}
	t.moving = nil
	// Queues without a leader beyond what the other replicas' batches
	// account for mean a failover is under way: no new batch meanwhile.
	// (Waiting for every queue to be led made two donors wait for each
	// other's batches: 10-14 s per batch at 5,000 queues.)
	var mine []move
	others := 0 // at most in flight from the other donors' batches
	for _, m := range v.plan() {
		if m.from == me {
			mine = append(mine, m)
		} else {
			others += min(m.n, balanceBatch)
		}
	}
	if now.Before(t.next) || v.queues-v.led > max(others, balanceBatch*(len(v.live)-1)) {
		t.recheck = maxTime(t.next, now.Add(s.batchPace()))
		return
	}
	if moving := s.yieldBatch(mine, leaders, ready, pinned); len(moving) > 0 {
		t.moving = moving
		t.next = now.Add(s.batchPace())
		t.recheck = t.next
		s.log.Info("rebalancing", "handing_over", len(moving), "share", fmtShare(v))
	}
}

// yieldBatch yields up to balanceBatch queues to each receiver of mine (a
// replica that won most queues at a cold start hands over to every other
// replica at once) and returns them with their terms.
func (s *Supervisor) yieldBatch(mine []move, leaders map[string]election.LeaderRecord, ready map[string]map[string]bool, pinned map[string]bool) map[string]int64 {
	me := s.cfg.Identity.Node
	moving := map[string]int64{}
	for _, m := range mine {
		n := min(m.n, balanceBatch)
		for i := len(s.order) - 1; i >= 0 && n > 0; i-- {
			name := s.order[i]
			if _, ok := moving[name]; ok || pinned[name] || leaders[name].Node != me {
				continue
			}
			qs := s.queues[name]
			if !s.leads(qs) || !ready[m.to][name] {
				continue
			}
			s.yieldQueue(qs, yieldReq{why: "rebalance", to: m.to})
			moving[name] = leaders[name].Term
			n--
		}
	}
	return moving
}

// batchPace is the least time between two batches of one replica, and
// how often the plan is looked at again while a batch is under way.
func (s *Supervisor) batchPace() time.Duration {
	return 2 * s.cfg.RetryInterval
}

// balanceRecheck returns when the observer should observe again though
// nothing changed (zero: only on a change); see balanceTracker.recheck.
func (s *Supervisor) balanceRecheck() time.Time {
	return s.bal.recheck
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func fmtShare(v balanceView) string {
	floor, ceil := v.share()
	return fmt.Sprintf("%d..%d", floor, ceil)
}

// holdDelay is how long a replica that holds back waits, once a queue is
// seen free, before it campaigns anyway: long enough for a replica below
// its share to win, short enough to bound the gap.
func (s *Supervisor) holdDelay() time.Duration {
	return 2 * s.cfg.RetryInterval
}

// handoverBound is how long a batch's handovers may take before the
// replica plans afresh.
func (s *Supervisor) handoverBound() time.Duration {
	return s.cfg.StepDownHold + s.cfg.LeaseTTL
}

// holdQueue makes this replica hold back its candidacy for qs: while the
// queue is led by another replica (refreshed by every observation, and
// lapsing after a few observer ticks if none comes), and for delay once
// it is seen free.
func (s *Supervisor) holdQueue(qs *queueState, led bool, delay time.Duration) {
	now := time.Now()
	s.mu.Lock()
	if led {
		qs.balanceHold = now.Add(s.balanceHoldMax())
		qs.balanceHoldLed = true
	} else if qs.balanceHold.IsZero() || qs.balanceHoldLed || qs.balanceHold.After(now.Add(delay)) {
		qs.balanceHold = now.Add(delay)
		qs.balanceHoldLed = false
	}
	s.mu.Unlock()
	wakeHold(qs)
}

// clearBalanceHold ends a balance hold of qs.
func (s *Supervisor) clearBalanceHold(qs *queueState) {
	s.mu.Lock()
	had := !qs.balanceHold.IsZero()
	qs.balanceHold = time.Time{}
	qs.balanceHoldLed = false
	s.mu.Unlock()
	if had {
		wakeHold(qs)
	}
}

// balanceHoldMax bounds a hold that no observation refreshes.
func (s *Supervisor) balanceHoldMax() time.Duration {
	return 2 * s.observeTick()
}

func wakeHold(qs *queueState) {
	select {
	case qs.holdBack <- struct{}{}:
	default:
	}
}

// yieldReq asks a lead loop to hand its queue over.
type yieldReq struct {
	why string
	// to is the node that should take over; the others hold back.
	to string
}

// yieldQueue asks the lead loop of qs to hand the queue over gracefully.
func (s *Supervisor) yieldQueue(qs *queueState, req yieldReq) {
	select {
	case qs.yield <- req:
	default:
	}
}
