package supervisor

import (
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
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
//
// # Drain
//
// A drained node (an operator's drain record under its node id,
// control.State.Drains) takes no part in the plan: it is never live for
// balancing, never a receiver, never a prefer target (a queue that
// prefers it goes to its next live preferred node, else to anyone). The
// other replicas balance among themselves as if it were gone. The drained
// replica itself (balancer.drain) decides, on every observation:
//
//   - hand over: every queue it leads that another live, non-drained
//     replica stands by for goes to that replica — its first live
//     preferred node standing by, else the least loaded one standing by
//     (counting what this observation already sends it), ties by name —
//     by the same targeted handover as balancing, in batches of at most
//     balanceBatch per receiver, paced like balancing's batches;
//   - hold back: for every queue that another live, non-drained replica
//     lists (leader or standing by), its candidacy is held back
//     (holds.holdDrain: a campaign under way is interrupted), refreshed by
//     every observation;
//   - stand by: for a queue no other live, non-drained replica lists, it
//     campaigns as usual, and keeps the queue if it leads it; as soon as
//     another replica lists the queue (re-checked on every observation), it
//     hands the queue over and holds back. A drain never leaves a queue
//     without a leader that a replica could have led.
//
// "Live" is the balancer's eligibility: a member record seen within
// readyAge, and no recent drop of its count to nothing.

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

// balanceTracker is the balancer's memory between observations, for
// eligibility and batching.
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
	// draining: since when a drained node has led some of this replica's
	// queues (zero: none does). The drained node hands them to the least
	// loaded replicas; this replica starts no batch of its own meanwhile
	// (for at most handoverBound), as the counts it sees while the
	// drain's handovers land are transient (seen: two receivers handing
	// a queue back and forth, one of them holding back for its own
	// step-down hold, 3.5 s without a leader).
	draining time.Time
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

// balancer decides, from one observation, which of this replica's queues
// it hands over and which it holds back from. It runs on the observer's
// goroutine and owns its memory (balanceTracker); its decisions are
// returned (balanceDecision), and the observer carries them out on the
// runners.
type balancer struct {
	me     string
	queues []config.QueueConfig // this replica's, in order
	timing election.Timing
	// on: balancing is on (Config.Balance, and not Exclusive).
	on bool
	t  balanceTracker
}

func newBalancer(cfg *Config) *balancer {
	return &balancer{me: cfg.Identity.Node, queues: cfg.Queues, timing: cfg.Timing, on: cfg.Balance && !cfg.Exclusive}
}

// balanceInput is one observation, as the balancer needs it.
type balanceInput struct {
	now time.Time
	// leaders maps each led queue to its leader record (every queue of
	// the cluster; the balancer keeps this replica's).
	leaders map[string]election.LeaderRecord
	members []election.MemberRecord
	// decoded: the members' decoded payloads, by node.
	decoded map[string]diagnosis.MemberPayload
	// leading: the queues this replica's runners lead now.
	leading map[string]bool
	// drained: the drained nodes (the operator's drain records).
	drained map[string]bool
}

// balanceAction is one decision about one queue.
type balanceAction struct {
	queue string
	kind  balanceKind
	led   bool     // holdQueue: the queue has a leader
	yield yieldReq // yieldQueue
}

type balanceKind int

const (
	// holdQueue: hold back the candidacy for the queue (runner holds:
	// holdBalance with holdDelay and balanceHoldMax).
	holdQueue balanceKind = iota
	// clearHold: end a balance hold of the queue.
	clearHold
	// yieldQueue: hand the queue over (runner requestYield).
	yieldQueue
	// drainQueue: hold back the candidacy for the queue, interrupting a
	// campaign under way (runner holds: holdDrain, until balanceHoldMax
	// later unless refreshed): this node is drained.
	drainQueue
	// undrainQueue: end a drain hold of the queue.
	undrainQueue
)

// balanceDecision is what one observation decides: the actions, in
// order, and a new batch of handovers if one starts (logged as
// rebalancing).
type balanceDecision struct {
	actions []balanceAction
	batch   int // queues handed over in a new batch; 0: none
	share   string
	// draining: the batch is a drained replica's (logged as draining).
	draining bool
}

// decide builds the balance view of one observation and returns this
// replica's part of the plan.
func (bl *balancer) decide(in balanceInput) balanceDecision {
	v, leaders, ready, listed := bl.view(in)
	var d balanceDecision
	if in.drained[bl.me] {
		// A drain is obeyed with balancing on or off.
		bl.t.recheck = time.Time{}
		bl.drain(&d, in, v, leaders, ready, listed)
		return d
	}
	for _, q := range bl.queues {
		d.add(balanceAction{queue: q.Name, kind: undrainQueue})
	}
	if !bl.on {
		return d
	}
	bl.t.recheck = time.Time{}
	pinned := bl.preferred(&d, v, leaders, ready, in.leading)
	bl.candidacy(&d, v, leaders, pinned)
	bl.handovers(&d, in, v, leaders, ready, pinned)
	return d
}

// view returns the balance view of one observation: the counts, the
// eligible nodes (never a drained one), the leader record of each of
// this replica's queues, the queues each eligible replica stands by for
// (ready), and the queues another eligible replica lists (listed).
func (bl *balancer) view(in balanceInput) (v balanceView, leaders map[string]election.LeaderRecord, ready map[string]map[string]bool, listed map[string]bool) {
	v = balanceView{live: map[string]bool{}, counts: map[string]int{}, queues: len(bl.queues)}
	mine := map[string]bool{}
	for _, q := range bl.queues {
		mine[q.Name] = true
	}
	leaders = map[string]election.LeaderRecord{}
	for q, r := range in.leaders {
		if mine[q] {
			leaders[q] = r
			v.counts[r.Node]++
			v.led++
		}
	}
	bl.t.observe(v.counts, in.now)
	seen := map[string]time.Time{}
	for _, m := range in.members {
		if m.Err == nil {
			seen[m.Node] = m.LastSeen
		}
	}
	ready = map[string]map[string]bool{}
	listed = map[string]bool{}
	for node, p := range in.decoded {
		if node == bl.me || in.drained[node] || !bl.t.eligible(node, seen[node], in.now, bl.readyAge()) {
			continue
		}
		for q, mq := range p.Queues {
			if !mine[q] {
				continue
			}
			v.live[node] = true
			listed[q] = true
			if mq.Role != election.RoleLeader {
				if ready[node] == nil {
					ready[node] = map[string]bool{}
				}
				ready[node][q] = true
			}
		}
	}
	if !in.drained[bl.me] {
		v.live[bl.me] = true
	}
	return v, leaders, ready, listed
}

// readyAge is how old a member record may be for its replica to count as
// live for balancing: a few renewals.
func (bl *balancer) readyAge() time.Duration {
	return bl.timing.LeaseTTL/2 + time.Second
}

func (d *balanceDecision) add(a balanceAction) { d.actions = append(d.actions, a) }

// preferred hands over, or holds back from, the queues pinned to a live
// preferred node, and returns them.
func (bl *balancer) preferred(d *balanceDecision, v balanceView, leaders map[string]election.LeaderRecord, ready map[string]map[string]bool, leading map[string]bool) map[string]bool {
	pinned := map[string]bool{}
	for _, q := range bl.queues {
		to := ""
		for _, n := range q.Prefer {
			if v.live[n] && (n == bl.me || ready[n][q.Name]) {
				to = n
				break
			}
		}
		if to == "" {
			continue
		}
		pinned[q.Name] = true
		switch {
		case to == bl.me:
			d.add(balanceAction{queue: q.Name, kind: clearHold})
		case leading[q.Name]:
			d.add(balanceAction{queue: q.Name, kind: yieldQueue, yield: yieldReq{why: "preferred node live", to: to}})
		default:
			d.add(balanceAction{queue: q.Name, kind: holdQueue, led: leaders[q.Name].Node != ""})
		}
	}
	return pinned
}

// candidacy delays this replica's candidacy for the queues it does not
// lead while it is above the ceiling share.
func (bl *balancer) candidacy(d *balanceDecision, v balanceView, leaders map[string]election.LeaderRecord, pinned map[string]bool) {
	hold := v.holdsBack(bl.me)
	for _, q := range bl.queues {
		if pinned[q.Name] {
			continue
		}
		if hold && leaders[q.Name].Node != bl.me {
			d.add(balanceAction{queue: q.Name, kind: holdQueue, led: leaders[q.Name].Node != ""})
		} else {
			d.add(balanceAction{queue: q.Name, kind: clearHold})
		}
	}
}

// handovers hands over this replica's part of the plan, one batch at a
// time: the queues handed over last time must have left (or the batch
// has taken too long: a receiver died?), and no failover may be under way.
func (bl *balancer) handovers(d *balanceDecision, in balanceInput, v balanceView, leaders map[string]election.LeaderRecord, ready map[string]map[string]bool, pinned map[string]bool) {
	now, t := in.now, &bl.t
	if bl.drainUnderWay(in, v) {
		t.recheck = now.Add(bl.batchPace())
		return
	}
	pending := 0
	for q, term := range t.moving {
		if l := leaders[q]; l.Node == "" || (l.Node == bl.me && l.Term == term) {
			pending++
		}
	}
	if pending > 0 && now.Before(t.next.Add(bl.handoverBound())) {
		t.recheck = maxTime(t.next, now.Add(bl.batchPace()))
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
		if m.from == bl.me {
			mine = append(mine, m)
		} else {
			others += min(m.n, balanceBatch)
		}
	}
	if now.Before(t.next) || v.queues-v.led > max(others, balanceBatch*(len(v.live)-1)) {
		t.recheck = maxTime(t.next, now.Add(bl.batchPace()))
		return
	}
	if moving := bl.yieldBatch(d, mine, leaders, ready, pinned, in.leading); len(moving) > 0 {
		t.moving = moving
		t.next = now.Add(bl.batchPace())
		t.recheck = t.next
		d.batch, d.share = len(moving), fmtShare(v)
	}
}

// yieldBatch yields up to balanceBatch queues to each receiver of mine (a
// replica that won most queues at a cold start hands over to every other
// replica at once) and returns them with their terms.
func (bl *balancer) yieldBatch(d *balanceDecision, mine []move, leaders map[string]election.LeaderRecord, ready map[string]map[string]bool, pinned, leading map[string]bool) map[string]int64 {
	moving := map[string]int64{}
	for _, m := range mine {
		n := min(m.n, balanceBatch)
		for i := len(bl.queues) - 1; i >= 0 && n > 0; i-- {
			name := bl.queues[i].Name
			if _, ok := moving[name]; ok || pinned[name] || leaders[name].Node != bl.me {
				continue
			}
			if !leading[name] || !ready[m.to][name] {
				continue
			}
			d.add(balanceAction{queue: name, kind: yieldQueue, yield: yieldReq{why: "rebalance", to: m.to}})
			moving[name] = leaders[name].Term
			n--
		}
	}
	return moving
}

// batchPace is the least time between two batches of one replica, and
// how often the plan is looked at again while a batch is under way.
func (bl *balancer) batchPace() time.Duration {
	return 2 * bl.timing.RetryInterval
}

// recheck returns when the observer should observe again though nothing
// changed (zero: only on a change); see balanceTracker.recheck.
func (bl *balancer) recheck() time.Time {
	return bl.t.recheck
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
func (bl *balancer) holdDelay() time.Duration {
	return 2 * bl.timing.RetryInterval
}

// handoverBound is how long a batch's handovers may take before the
// replica plans afresh.
func (bl *balancer) handoverBound() time.Duration {
	return bl.timing.StepDownHold + bl.timing.LeaseTTL
}

// balanceHoldMax bounds a hold that no observation refreshes: a few
// observer ticks.
func (bl *balancer) balanceHoldMax() time.Duration {
	return 2 * observeTick(bl.timing)
}

// yieldReq asks a lead loop to hand its queue over.
type yieldReq struct {
	why string
	// to is the node that should take over; the others hold back.
	to string
}

// drainUnderWay reports whether a drained node leads some of this
// replica's queues (and has for less than handoverBound): the drained
// node is handing them over, and this replica waits for that before it
// plans batches of its own (balanceTracker.draining).
func (bl *balancer) drainUnderWay(in balanceInput, v balanceView) bool {
	t := &bl.t
	leads := false
	for n, c := range v.counts {
		if c > 0 && in.drained[n] {
			leads = true
		}
	}
	if !leads {
		t.draining = time.Time{}
		return false
	}
	if t.draining.IsZero() {
		t.draining = in.now
	}
	return in.now.Before(t.draining.Add(bl.handoverBound()))
}

// drain is decide for a drained replica (see "Drain" above): it holds
// back from every queue another live, non-drained replica lists, stands
// by for the others, and hands over, in paced batches, every queue it
// leads that another replica stands by for.
func (bl *balancer) drain(d *balanceDecision, in balanceInput, v balanceView, leaders map[string]election.LeaderRecord, ready map[string]map[string]bool, listed map[string]bool) {
	for _, q := range bl.queues {
		// No balance hold: the drain alone decides the candidacy.
		d.add(balanceAction{queue: q.Name, kind: clearHold})
		if listed[q.Name] {
			d.add(balanceAction{queue: q.Name, kind: drainQueue})
		} else {
			d.add(balanceAction{queue: q.Name, kind: undrainQueue})
		}
	}
	now, t := in.now, &bl.t
	pending := 0
	for q, term := range t.moving {
		if l := leaders[q]; l.Node == "" || (l.Node == bl.me && l.Term == term) {
			pending++
		}
	}
	if (pending > 0 && now.Before(t.next.Add(bl.handoverBound()))) || now.Before(t.next) {
		t.recheck = maxTime(t.next, now.Add(bl.batchPace()))
		return
	}
	t.moving = nil
	load := maps.Clone(v.counts)
	per := map[string]int{} // queues sent to each receiver in this batch
	moving := map[string]int64{}
	for _, q := range bl.queues {
		if !in.leading[q.Name] || leaders[q.Name].Node != bl.me {
			continue
		}
		to := drainTarget(q, v, ready, load, per)
		if to == "" {
			continue // no one else can take it (yet): keep leading it
		}
		d.add(balanceAction{queue: q.Name, kind: yieldQueue, yield: yieldReq{why: "drained", to: to}})
		moving[q.Name] = leaders[q.Name].Term
		load[to]++
		per[to]++
	}
	if len(moving) > 0 {
		t.moving = moving
		t.next = now.Add(bl.batchPace())
		t.recheck = t.next
		d.batch, d.draining = len(moving), true
	}
}

// drainTarget returns the node a drained replica hands queue q to: its
// first live preferred node if that one stands by for q, else the least
// loaded live node standing by for q (load: counts plus what this batch
// already sends), ties by name; "" when none can take it in this batch
// (per: at most balanceBatch per receiver).
func drainTarget(q config.QueueConfig, v balanceView, ready map[string]map[string]bool, load, per map[string]int) string {
	for _, n := range q.Prefer {
		if v.live[n] && ready[n][q.Name] {
			if per[n] >= balanceBatch {
				return ""
			}
			return n
		}
	}
	best := ""
	for n := range v.live {
		if !ready[n][q.Name] || per[n] >= balanceBatch {
			continue
		}
		if best == "" || load[n] < load[best] || (load[n] == load[best] && n < best) {
			best = n
		}
	}
	return best
}
