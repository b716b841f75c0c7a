package supervisor

import (
	"time"

	"github.com/regentd/regent/election"
)

// Balancing spreads leadership evenly: with R live replicas and Q queues,
// each replica ends up leading between floor(Q/R) and ceil(Q/R) of them.
// Two rules achieve it, without ever leaving a queue leaderless for longer
// than a graceful handover:
//
//   - candidacy delay: a replica that already leads ceil(Q/R) queues or
//     more holds back its candidacy for others (a free queue is always
//     wanted by a replica below its share, since the shares add up to Q);
//   - voluntary step-down: a replica above ceil(Q/R), or above floor(Q/R)
//     while another is below floor(Q/R), hands over its surplus gracefully
//     (workers stopped, then resign) and holds back those queues for a
//     while, so that a replica below its share takes them.
//
// A queue's prefer list overrides the share: a live preferred node never
// holds back for that queue, and a leader that is not preferred hands the
// queue over when a preferred node is live.

// balanceView is what one observation tells about leadership counts.
type balanceView struct {
	live   map[string]bool // live members that campaign for our queues
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

// surplus is how many of its queues node should hand over now.
func (v balanceView) surplus(node string) int {
	floor, ceil := v.share()
	mine := v.counts[node]
	if mine > ceil {
		return mine - ceil
	}
	lowest := mine
	for n := range v.live {
		if v.counts[n] < lowest {
			lowest = v.counts[n]
		}
	}
	if lowest < floor && mine > floor {
		return min(mine-floor, floor-lowest)
	}
	return 0
}

// holdsBack reports whether node should delay its candidacy for more
// queues: it already leads its ceiling share.
func (v balanceView) holdsBack(node string) bool {
	if len(v.live) < 2 {
		return false
	}
	_, ceil := v.share()
	return v.counts[node] >= ceil
}

// balance applies the two rules for this replica after an observation.
// leaders maps each of our queues to its current leader record.
func (s *Supervisor) balance(v balanceView, leaders map[string]election.LeaderRecord) {
	if !s.cfg.Balance || s.cfg.Exclusive {
		return
	}
	me := s.cfg.Identity.Node
	now := time.Now()
	hold := s.cfg.RetryInterval * 4
	surplus := v.surplus(me)
	if surplus > 0 && (now.Before(s.nextRebalance) || v.led < v.queues) {
		// One batch at a time: wait until the queues handed over last
		// time have a leader again before handing over more.
		surplus = 0
	}
	yielded := 0
	for i := len(s.order) - 1; i >= 0; i-- {
		qs := s.queues[s.order[i]]
		preferred := s.preferredLive(qs, v)
		s.mu.Lock()
		leading := qs.role == election.RoleLeader
		s.mu.Unlock()
		switch {
		case leading && len(preferred) > 0 && !preferred[me]:
			s.yieldQueue(qs, "preferred node live", hold)
			yielded++
		case leading && yielded < surplus:
			s.yieldQueue(qs, "rebalance", hold)
			yielded++
		case !leading && len(preferred) > 0:
			if !preferred[me] {
				s.holdQueue(qs, now.Add(hold))
			}
		case !leading && v.holdsBack(me):
			if _, led := leaders[qs.cfg.Name]; led {
				s.holdQueue(qs, now.Add(hold))
			}
		}
	}
	if yielded > 0 {
		s.nextRebalance = now.Add(max(2*time.Second, s.cfg.LeaseTTL/2))
	}
}

// preferredLive returns the live nodes among the queue's prefer list.
func (s *Supervisor) preferredLive(qs *queueState, v balanceView) map[string]bool {
	out := map[string]bool{}
	for _, n := range qs.cfg.Prefer {
		if v.live[n] {
			out[n] = true
		}
	}
	return out
}

func (s *Supervisor) holdQueue(qs *queueState, until time.Time) {
	s.mu.Lock()
	if until.After(qs.holdUntil) {
		qs.holdUntil = until
	}
	s.mu.Unlock()
	select {
	case qs.holdBack <- struct{}{}:
	default:
	}
}

// yieldQueue asks the lead loop of qs to hand the queue over gracefully.
func (s *Supervisor) yieldQueue(qs *queueState, why string, hold time.Duration) {
	select {
	case qs.yield <- why:
	default:
	}
}
