package supervisor

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/regentd/regent/election"
)

// Reasons a leadership ends.
const (
	reasonStop     = "stop"
	reasonLost     = "lost"
	reasonDeadline = "deadline"
	reasonStepDown = "step_down"
	reasonPool     = "pool_failed"
)

// runQueue campaigns for one queue and leads it whenever it wins, until
// ctx ends or the session is lost.
func (s *Supervisor) runQueue(ctx context.Context, b election.Backend, qs *queueState) error {
	log := s.log.With("queue", qs.cfg.Name)
	for ctx.Err() == nil {
		if err := s.waitHoldBack(ctx, qs); err != nil {
			return nil
		}
		l, err := s.campaign(ctx, b, qs)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errHoldBack) {
				continue
			}
			if errors.Is(err, election.ErrSessionLost) || errors.Is(err, election.ErrClosed) {
				return err
			}
			s.cfg.Metrics.backendError()
			log.Warn("campaign failed", "error", err)
			if sleepCtx(ctx, s.cfg.RetryInterval) != nil {
				return nil
			}
			continue
		}
		if reason := s.lead(ctx, b, qs, l); reason == reasonStepDown {
			s.mu.Lock()
			qs.holdUntil = time.Now().Add(s.cfg.StepDownHold)
			s.mu.Unlock()
		}
	}
	return nil
}

var errHoldBack = errors.New("hold back")

// campaign runs one Campaign call, cancelled early when a hold-back starts
// (a step-down request naming another node).
func (s *Supervisor) campaign(ctx context.Context, b election.Backend, qs *queueState) (election.Leadership, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-qs.holdBack:
				if s.interruptingHold(qs) > 0 {
					cancel()
					return
				}
			}
		}
	}()
	l, err := b.Campaign(cctx, qs.cfg.Name, qs.payload)
	if err != nil && ctx.Err() == nil && cctx.Err() != nil {
		return nil, errHoldBack
	}
	if err == nil && cctx.Err() != nil && ctx.Err() == nil {
		// Won just as a hold-back began: keep it; resigning would only
		// leave the queue leaderless longer.
		return l, nil
	}
	return l, err
}

// holdLeft returns how long this replica still holds back its candidacy
// for qs (0 or less: it does not).
func (s *Supervisor) holdLeft(qs *queueState) time.Duration {
	return s.holdFor(qs, true)
}

// interruptingHold is like holdLeft, without a balance hold set while
// another replica leads the queue: a campaign under way holds what it
// has seen of that leader's last renewals, and a new one would have to
// wait out a whole lease again if the leader died (seen at a SIGKILL: 16 s
// instead of 10 for a replica just above its share). A campaign that
// wins above its share is evened out by a later handover.
func (s *Supervisor) interruptingHold(qs *queueState) time.Duration {
	return s.holdFor(qs, false)
}

// holdFor returns how long qs is still held back, counting a balance hold
// set while another replica leads only if withLed.
func (s *Supervisor) holdFor(qs *queueState, withLed bool) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	until := qs.holdUntil
	if (withLed || !qs.balanceHoldLed) && qs.balanceHold.After(until) {
		until = qs.balanceHold
	}
	return time.Until(until)
}

// waitHoldBack waits while this replica holds back its candidacy for qs;
// a change of the hold (qs.holdBack) makes it look again.
func (s *Supervisor) waitHoldBack(ctx context.Context, qs *queueState) error {
	for {
		wait := s.holdLeft(qs)
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-qs.holdBack:
		case <-t.C:
		}
		t.Stop()
	}
}

// lead carries out the leader's duties for one leadership and returns why
// it ended. When it returns, every worker of the term is dead.
func (s *Supervisor) lead(ctx context.Context, b election.Backend, qs *queueState, l election.Leadership) string {
	name := qs.cfg.Name
	term := l.Term()
	log := s.log.With("queue", name, "term", term)
	margin := s.cfg.FenceMargin
	deadline := l.ValidUntil().Add(-margin)
	if !s.now().Before(deadline) {
		log.Warn("leadership_lost", "reason", reasonDeadline, "detail", "lease already past its deadline when won")
		s.resign(ctx, l, log)
		return reasonDeadline
	}

	env := []string{
		"REGENT_CLUSTER=" + s.cfg.Identity.Cluster,
		"REGENT_QUEUE=" + name,
		"REGENT_NODE=" + s.cfg.Identity.Node,
		"REGENT_TERM=" + strconv.FormatInt(term, 10),
	}
	pool := s.cfg.NewPool(PoolSpec{
		Queue: qs.cfg, Term: term, Deadline: deadline, Env: env,
		Logger: log,
		Events: func(reason string) {
			if s.cfg.Metrics != nil {
				s.cfg.Metrics.WorkerRestarts.WithLabelValues(name, reason).Inc()
			}
			s.wakeMember()
		},
		Changed: s.wakeMember,
	})
	// A yield or step-down asked of an earlier leadership is stale.
	select {
	case <-qs.yield:
	default:
	}
	select {
	case <-qs.stepDown:
	default:
	}
	now := s.now()
	s.mu.Lock()
	qs.role, qs.term, qs.since, qs.deadline, qs.pool, qs.conflicts = election.RoleLeader, term, now, deadline, pool, nil
	s.mu.Unlock()
	if m := s.cfg.Metrics; m != nil {
		m.setLeader(name, true, term)
		m.LeaderChanges.WithLabelValues(name).Inc()
		m.ConfigConflicts.WithLabelValues(name).Set(0)
		m.Workers.WithLabelValues(name).Set(float64(qs.cfg.Concurrency))
	}
	log.Info("leadership_acquired", "deadline_in", deadline.Sub(s.now()).Round(time.Millisecond).String())
	s.wakeMember()

	poolCtx, stopPool := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPool()
	poolDone := make(chan error, 1)
	go func() { poolDone <- pool.Run(poolCtx) }()

	fence := time.NewTimer(deadline.Sub(s.now()))
	defer fence.Stop()
	gauge := time.NewTicker(time.Second)
	defer gauge.Stop()
	s.setLeaseGauge(name, deadline)

	renew := func() {
		d := l.ValidUntil().Add(-margin)
		if d.After(deadline) {
			deadline = d
			pool.SetDeadline(deadline)
			fence.Reset(deadline.Sub(s.now()))
			s.mu.Lock()
			qs.deadline = deadline
			s.mu.Unlock()
			s.setLeaseGauge(name, deadline)
		}
	}

	var reason string
	poolEnded := false
loop:
	for {
		select {
		case <-l.Renewed():
			renew()
		case <-fence.C:
			if s.now().Before(deadline) {
				fence.Reset(deadline.Sub(s.now()))
				continue
			}
			reason = reasonDeadline
			break loop
		case <-l.Done():
			reason = reasonLost
			break loop
		case <-ctx.Done():
			reason = reasonStop
			// The session may have ended under us (frozen past the lease,
			// connection killed): that is a loss, not a clean stop.
			select {
			case <-l.Done():
				reason = reasonLost
			default:
				if !s.now().Before(deadline) {
					reason = reasonDeadline
				}
			}
			break loop
		case <-qs.stepDown:
			// The observer saw a step-down request for this very term.
			log.Info("handing over", "why", "step-down requested")
			reason = reasonStepDown
			break loop
		case y := <-qs.yield:
			if y.to != "" && !s.requestHandover(ctx, b, name, y.to, log) {
				continue
			}
			log.Info("handing over", "why", y.why, "to", y.to)
			reason = reasonStepDown
			break loop
		case err := <-poolDone:
			poolEnded = true
			log.Error("worker pool ended on its own", "error", err)
			reason = reasonPool
			break loop
		case <-gauge.C:
			// The fence timer counts CLOCK_MONOTONIC, which stops while
			// the host is suspended: after a resume it would fire late by
			// the suspension. The deadline is on the suspend-counting
			// clock; look at it on every gauge tick too.
			if !s.now().Before(deadline) {
				reason = reasonDeadline
				break loop
			}
			s.setLeaseGauge(name, deadline)
		}
	}

	// Stop the workers. On a loss the deadline can only shrink: another
	// replica may lead once the backend's own deadline has passed.
	switch reason {
	case reasonLost:
		// The backend says another replica may lead soon (at once, for an
		// etcd key deleted by someone else): kill now, not at the deadline.
		pool.Fence()
		log.Warn("leadership_lost", "reason", reason, "detail", "backend reports the leadership lost; workers fenced")
	case reasonDeadline:
		pool.Fence()
		log.Warn("leadership_lost", "reason", reason, "detail", "no renewal confirmed before the local deadline; workers fenced")
	default:
		log.Info("stopping workers", "reason", reason)
	}
	stopPool()
	graceful := reason == reasonStop || reason == reasonStepDown || reason == reasonPool
	for !poolEnded {
		select {
		case <-poolDone:
			poolEnded = true
		case <-l.Renewed():
			if graceful {
				renew()
			}
		case <-fence.C:
			if s.now().Before(deadline) {
				fence.Reset(deadline.Sub(s.now()))
				continue
			}
			pool.Fence()
		}
	}

	s.mu.Lock()
	qs.role, qs.pool, qs.deadline = election.RoleFollower, nil, time.Time{}
	s.mu.Unlock()
	if m := s.cfg.Metrics; m != nil {
		m.setLeader(name, false, 0)
		m.Workers.WithLabelValues(name).Set(0)
		m.LeaseRemaining.WithLabelValues(name).Set(0)
	}
	// Resign only after every worker is dead, so the next leader's
	// workers never overlap ours.
	s.resign(ctx, l, log)
	if graceful {
		log.Info("leadership_released", "reason", reason)
	}
	s.wakeMember()
	return reason
}

// requestHandover writes a step-down request for queue naming node to,
// so that the other replicas (this one included) hold back and to takes
// over. It reports whether the request was written; if not, the leader
// keeps the queue and balancing tries again later.
func (s *Supervisor) requestHandover(ctx context.Context, b election.Backend, queue, to string, log interface {
	Warn(string, ...any)
}) bool {
	rctx, cancel := context.WithTimeout(ctx, min(5*time.Second, s.cfg.LeaseTTL/2))
	defer cancel()
	if err := b.RequestStepDown(rctx, queue, to); err != nil {
		if ctx.Err() == nil {
			s.cfg.Metrics.backendError()
			log.Warn("handover request failed; keeping the queue", "to", to, "error", err)
		}
		return false
	}
	return true
}

func (s *Supervisor) resign(ctx context.Context, l election.Leadership, log interface {
	Debug(string, ...any)
}) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := l.Resign(rctx); err != nil && !errors.Is(err, election.ErrNotLeader) {
		log.Debug("resign failed", "error", err)
	}
}

func (s *Supervisor) setLeaseGauge(queue string, deadline time.Time) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.LeaseRemaining.WithLabelValues(queue).Set(max(0, deadline.Sub(s.now()).Seconds()))
	}
}
