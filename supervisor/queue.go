package supervisor

import (
	"context"
	"errors"
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
