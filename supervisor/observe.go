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

// observe watches the cluster's records and reports, from their
// diagnosis, conflicts, split brain and stale workers; it also relays
// step-down requests. It returns
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

// observeOnce reads the cluster's records, diagnoses this replica's
// queues (package diagnosis) and acts on the diagnosis: metrics, log
// reports, this follower's conflicts; it also relays step-down requests
// and feeds the balancer.
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
	byQueue := map[string]election.LeaderRecord{}
	for _, r := range leaders {
		if r.Err == nil {
			byQueue[r.Queue] = r
		}
	}
	snap := diagnosis.NewSnapshot(leaders, members)
	reports := map[string]*diagnosis.Report{}
	diag := diagnosis.Diagnose(snap, time.Now(), s.order)
	for i := range diag {
		reports[diag[i].Queue] = &diag[i]
	}

	me := s.cfg.Identity.Node
	memberChanged := false
	for _, name := range s.order {
		qs, rep := s.queues[name], reports[name]
		rec, led := byQueue[name]
		role := s.noteLeader(name, qs, rec, led)
		if s.cfg.Exclusive && led && rec.Node != me && role != election.RoleLeader {
			var cfg *config.Published
			if rep.Leader != nil {
				cfg = rep.Leader.Config
			}
			return &AlreadyLedError{Queue: name, Leader: rec, Config: cfg}
		}
		if s.reportConflicts(name, qs, rep) {
			memberChanged = true
		}
		s.reportAnomalies(name, rep, reported)
		if req, asked := stepDowns[name]; asked {
			s.relayStepDown(qs, role, req)
		}
	}
	if s.cfg.Balance {
		s.observeBalance(byQueue, members, snap.Payloads())
	}
	if memberChanged {
		s.wakeMember()
	}
	return nil
}

// noteLeader sets, on a follower, the queue's term as regent_term. It
// returns this replica's role.
func (s *Supervisor) noteLeader(name string, qs *queueState, rec election.LeaderRecord, led bool) string {
	s.mu.Lock()
	role := qs.role
	s.mu.Unlock()
	if m := s.cfg.Metrics; m != nil && led && role != election.RoleLeader {
		m.Term.WithLabelValues(name).Set(float64(rec.Term))
	}
	return role
}

// reportConflicts keeps this replica's config conflicts with the queue's
// leader (the diagnosis' rule applied to its own config; none while it
// leads), sets regent_config_conflicts, and logs config_conflict (or
// config_conflict_resolved) once per change. It reports a change, for the
// member record.
func (s *Supervisor) reportConflicts(name string, qs *queueState, rep *diagnosis.Report) bool {
	conflicts := rep.Conflicts(s.cfg.Identity.Node, qs.published)
	s.mu.Lock()
	changed := qs.role != election.RoleLeader && !slices.Equal(conflicts, qs.conflicts)
	if changed {
		qs.conflicts = conflicts
	}
	n := len(qs.conflicts)
	s.mu.Unlock()
	if m := s.cfg.Metrics; m != nil {
		m.ConfigConflicts.WithLabelValues(name).Set(float64(n))
	}
	if !changed {
		return false
	}
	if len(conflicts) > 0 {
		s.log.Warn("config_conflict", "queue", name, "leader_node", rep.Leader.Node, "term", rep.Leader.Term,
			"conflicts", diagnosis.FormatConflicts(conflicts))
	} else {
		s.log.Info("config_conflict_resolved", "queue", name)
	}
	return true
}

// reportAnomalies sets the queue's anomaly metrics from its diagnosis
// (regent_split_brain, regent_stale_workers, regent_degraded) and logs
// split_brain, stale_worker and a corrupt leader record once per change.
func (s *Supervisor) reportAnomalies(name string, rep *diagnosis.Report, reported map[string]string) {
	if m := s.cfg.Metrics; m != nil {
		m.SplitBrain.WithLabelValues(name).Set(gauge(len(rep.Claimants) > 0))
		m.StaleWorkers.WithLabelValues(name).Set(float64(len(rep.Stale)))
		m.Degraded.WithLabelValues(name).Set(gauge(rep.Degraded))
	}
	for _, p := range rep.Problems {
		if p.Code == diagnosis.CodeCorruptRecord {
			s.reportOnce(reported, "corrupt/"+name, p.Message, func() {
				s.log.Error("corrupt leader record", "queue", name, "error", p.Message)
			})
		}
	}
	for _, w := range rep.Stale {
		s.reportOnce(reported, "stale/"+name+"/"+w.Node, fmt.Sprint(w.Term, w.Current), func() {
			s.log.Error("stale_worker", "queue", name, "node", w.Node, "worker_term", w.Term, "current_term", w.Current)
		})
	}
	if len(rep.Claimants) == 0 {
		delete(reported, "split/"+name)
		return
	}
	desc := diagnosis.FormatClaims(rep.Claimants)
	s.reportOnce(reported, "split/"+name, desc, func() {
		s.log.Error("split_brain", "queue", name, "claimants", desc)
	})
}

// relayStepDown acts on a step-down request for the queue: the leader of
// the asked term steps down; a follower not named by --to holds back (the
// backends also hold back inside Campaign).
func (s *Supervisor) relayStepDown(qs *queueState, role string, req election.StepDownRequest) {
	me := s.cfg.Identity.Node
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
		return
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
		return
	}
	if req.To == "" {
		return
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

func gauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
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
