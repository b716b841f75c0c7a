package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/election"
	"github.com/regentd/regent/supervisor/diagnosis"
)

// observe watches the cluster's records and reports conflicts, split
// brain and stale workers; it also relays step-down requests. It returns
// an *AlreadyLedError with Exclusive.
func (s *Supervisor) observe(ctx context.Context, b election.Backend) error {
	changes := b.Changes(ctx)
	// A slow safety net in case a wake-up is missed; the backend's
	// notifications are the fast path.
	tick := time.NewTicker(s.observeTick())
	defer tick.Stop()
	reported := map[string]string{} // problem key -> last message, to log once per change
	for {
		began := time.Now()
		if err := s.observeOnce(ctx, b, reported); err != nil {
			var led *AlreadyLedError
			if errors.As(err, &led) {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			s.cfg.Metrics.backendError()
			s.log.Debug("observe failed", "error", err)
		}
		// Rest as long as the observation took (at most a second) before
		// the next: with thousands of queues an observation reads
		// megabytes, and a cluster busy settling changes all the time. A
		// small cluster observes within milliseconds of a change.
		if sleepCtx(ctx, min(time.Since(began), time.Second)) != nil {
			return nil
		}
		if !s.waitObserve(ctx, changes, tick.C) {
			return nil
		}
	}
}

// waitObserve waits until the next observation is due: a change, the
// safety-net tick, or the balance's recheck time. It reports false when
// ctx ends or changes closes.
func (s *Supervisor) waitObserve(ctx context.Context, changes <-chan struct{}, tick <-chan time.Time) bool {
	var recheck <-chan time.Time
	if at := s.balanceRecheck(); !at.IsZero() {
		timer := time.NewTimer(time.Until(at))
		defer timer.Stop()
		recheck = timer.C
	}
	select {
	case <-ctx.Done():
		return false
	case _, ok := <-changes:
		return ok
	case <-tick:
	case <-recheck:
	}
	return true
}

// observeTick is the period of the observer's safety-net reads.
func (s *Supervisor) observeTick() time.Duration {
	return max(s.cfg.LeaseTTL, 5*time.Second)
}

func (s *Supervisor) observeOnce(ctx context.Context, b election.Backend, reported map[string]string) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	leaders, err := b.Leaders(rctx)
	if err != nil {
		return fmt.Errorf("read leaders: %w", err)
	}
	members, err := b.Members(rctx)
	if err != nil {
		return fmt.Errorf("read members: %w", err)
	}
	reqs, err := b.StepDownRequests(rctx)
	if err != nil {
		return fmt.Errorf("read step-down requests: %w", err)
	}
	stepDowns := map[string]election.StepDownRequest{}
	for _, r := range reqs {
		stepDowns[r.Queue] = r
	}
	me := s.cfg.Identity.Node
	byQueue := map[string]election.LeaderRecord{}
	for _, r := range leaders {
		if r.Err != nil {
			s.reportOnce(reported, "corrupt/"+r.Queue, r.Err.Error(), func() {
				s.log.Error("corrupt leader record", "queue", r.Queue, "error", r.Err)
			})
			continue
		}
		byQueue[r.Queue] = r
	}
	decoded := map[string]diagnosis.MemberPayload{}
	for _, m := range members {
		if m.Err != nil {
			continue
		}
		if p, err := diagnosis.DecodeMemberPayload(m.Payload); err == nil {
			decoded[m.Node] = p
		}
	}

	memberChanged := false
	for _, name := range s.order {
		qs := s.queues[name]
		rec, led := byQueue[name]
		var leaderCfg *config.Published
		if led {
			if p, err := diagnosis.DecodeLeaderPayload(rec.Payload); err == nil {
				leaderCfg = &p.Config
			}
		}
		s.mu.Lock()
		role := qs.role
		if led {
			r := rec
			qs.leader = &r
		} else {
			qs.leader = nil
		}
		s.mu.Unlock()

		if s.cfg.Exclusive && led && rec.Node != me && role != election.RoleLeader {
			return &AlreadyLedError{Queue: name, Leader: rec, Config: leaderCfg}
		}
		if m := s.cfg.Metrics; m != nil && led {
			if role != election.RoleLeader {
				m.Term.WithLabelValues(name).Set(float64(rec.Term))
			}
		}

		// Config conflicts, reported by followers.
		var conflicts []config.Conflict
		if led && rec.Node != me && leaderCfg != nil {
			conflicts = config.Diff(*leaderCfg, qs.published)
		}
		s.mu.Lock()
		changed := !slices.Equal(conflicts, qs.conflicts)
		if role == election.RoleLeader {
			changed = false
		} else {
			qs.conflicts = conflicts
		}
		s.mu.Unlock()
		if changed {
			memberChanged = true
			if m := s.cfg.Metrics; m != nil {
				m.ConfigConflicts.WithLabelValues(name).Set(float64(len(conflicts)))
			}
			if len(conflicts) > 0 {
				s.log.Warn("config_conflict", "queue", name, "leader_node", rec.Node, "term", rec.Term,
					"conflicts", diagnosis.FormatConflicts(conflicts))
			} else {
				s.log.Info("config_conflict_resolved", "queue", name)
			}
		}

		// Split brain: more than one member claims to lead the queue. A
		// claim older than the newest one is tolerated for a lease TTL
		// (plus a second) after the newest began: a dead replica's member
		// record lingers until its lease expires, and a live one must
		// have fenced itself by then.
		var claims []diagnosis.Claim
		stale := 0
		for _, node := range sortedKeys(decoded) {
			mq, ok := decoded[node].Queues[name]
			if !ok {
				continue
			}
			if mq.Role == election.RoleLeader {
				claims = append(claims, diagnosis.Claim{Node: node, Term: mq.Term, Since: mq.Since})
			}
			if led && time.Since(rec.ElectedAt) > s.cfg.LeaseTTL+time.Second {
				for _, t := range mq.WorkerTerms {
					if t < rec.Term {
						stale++
						s.reportOnce(reported, "stale/"+name+"/"+node, fmt.Sprint(t, rec.Term), func() {
							s.log.Error("stale_worker", "queue", name, "node", node, "worker_term", t, "current_term", rec.Term)
						})
					}
				}
			}
		}
		claimants := diagnosis.SplitBrain(claims, s.cfg.LeaseTTL+time.Second, time.Now())
		if m := s.cfg.Metrics; m != nil {
			v := 0.0
			if len(claimants) > 1 {
				v = 1
			}
			m.SplitBrain.WithLabelValues(name).Set(v)
			m.StaleWorkers.WithLabelValues(name).Set(float64(stale))
		}
		if len(claimants) > 1 {
			desc := diagnosis.FormatClaims(claimants)
			s.reportOnce(reported, "split/"+name, desc, func() {
				s.log.Error("split_brain", "queue", name, "claimants", desc)
			})
		} else {
			delete(reported, "split/"+name)
		}

		// Step-down requests: the leader of the asked term steps down; a
		// follower not named by --to holds back (the backends also hold
		// back inside Campaign).
		req, asked := stepDowns[name]
		if !asked {
			continue
		}
		if role == election.RoleLeader {
			s.mu.Lock()
			mine := qs.term == req.Term
			s.mu.Unlock()
			if mine && req.To != me {
				select {
				case qs.stepDown <- struct{}{}:
				default:
				}
			}
			continue
		}
		if req.To == me {
			// Asked to take over: nothing of ours may hold it back, not
			// even the hold of our own recent step-down (a queue handed
			// back at once by a replica with another view of the counts
			// was left leaderless for that hold).
			s.mu.Lock()
			qs.holdUntil = time.Time{}
			s.mu.Unlock()
			s.clearBalanceHold(qs)
			wakeHold(qs)
			continue
		}
		if req.To == "" {
			continue
		}
		if age := time.Since(req.RequestedAt); age >= 0 && age < s.cfg.StepDownHold {
			until := time.Now().Add(s.cfg.StepDownHold - age)
			s.mu.Lock()
			if until.After(qs.holdUntil) {
				qs.holdUntil = until
			}
			s.mu.Unlock()
			wakeHold(qs)
		}
	}
	if s.cfg.Balance {
		s.observeBalance(byQueue, members, decoded)
	}
	if memberChanged {
		s.wakeMember()
	}
	return nil
}

// observeBalance builds the balance view of one observation and applies
// it (see balance.go).
func (s *Supervisor) observeBalance(byQueue map[string]election.LeaderRecord, members []election.MemberRecord, decoded map[string]diagnosis.MemberPayload) {
	me := s.cfg.Identity.Node
	now := time.Now()
	v := balanceView{live: map[string]bool{}, counts: map[string]int{}, queues: len(s.order)}
	mine := map[string]bool{}
	for _, name := range s.order {
		mine[name] = true
	}
	leaders := map[string]election.LeaderRecord{}
	for q, r := range byQueue {
		if mine[q] {
			leaders[q] = r
			v.counts[r.Node]++
			v.led++
		}
	}
	s.bal.observe(v.counts, now)
	seen := map[string]time.Time{}
	for _, m := range members {
		if m.Err == nil {
			seen[m.Node] = m.LastSeen
		}
	}
	// ready: the queues each eligible replica stands by for.
	ready := map[string]map[string]bool{}
	for node, p := range decoded {
		if node == me || !s.bal.eligible(node, seen[node], now, s.readyAge()) {
			continue
		}
		for q, mq := range p.Queues {
			if !mine[q] {
				continue
			}
			v.live[node] = true
			if mq.Role != election.RoleLeader {
				if ready[node] == nil {
					ready[node] = map[string]bool{}
				}
				ready[node][q] = true
			}
		}
	}
	v.live[me] = true
	s.balance(v, leaders, ready)
}

func (s *Supervisor) reportOnce(reported map[string]string, key, msg string, report func()) {
	if reported[key] == msg {
		return
	}
	reported[key] = msg
	report()
}
