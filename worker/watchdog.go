package worker

import (
	"context"
	"os"
	"time"
)

// watch is the per-run state of a slot's watchdogs.
type watch struct {
	// cfg is the pool's config as the run started (Reconfigure changes
	// the next runs).
	cfg           *PoolConfig
	rssWarned     bool
	wedgeReported bool
}

// checkRSS samples the tree's RSS: warn once at the warning fraction;
// over the limit, stop the worker (SIGTERM, StopTimeout, SIGKILL).
func (s *slot) checkRSS(ctx context.Context, proc *Process, w *watch) (outcome, bool) {
	p := s.pool
	cfg := w.cfg
	b, err := cfg.RSSSampler(proc.GuardPID())
	if err != nil {
		s.log.Debug("rss sample failed", "pid", proc.PID(), "error", err)
		return 0, false
	}
	p.update(s.index, func(st *slotStatus) { st.RSSBytes = b })
	limit := uint64(cfg.MaxRSSMB) << 20
	if b > limit {
		p.emit(Event{Kind: EventRSSKill, Index: s.index, PID: proc.PID(), RSSBytes: b, LimitBytes: limit})
		return s.stopFor(ctx, proc, outcomeRSS), true
	}
	if !w.rssWarned && float64(b) >= float64(limit)*cfg.RSS.WarnFraction {
		w.rssWarned = true
		p.emit(Event{Kind: EventRSSWarning, Index: s.index, PID: proc.PID(), RSSBytes: b, LimitBytes: limit})
	}
	return 0, false
}

// checkHeartbeat checks the heartbeat file's age once the startup grace
// has passed. The silence is measured from the later of the last touch
// and the start. A silent worker is restarted while the restart budget
// lasts, then only reported.
func (s *slot) checkHeartbeat(ctx context.Context, proc *Process, started time.Time, w *watch) (outcome, bool) {
	p := s.pool
	cfg := w.cfg
	if time.Since(started) < cfg.Liveness.StartupGrace {
		return 0, false
	}
	last := started
	if fi, err := os.Stat(p.heartbeatPath(s.index)); err == nil && fi.ModTime().After(last) {
		last = fi.ModTime()
	}
	silent := time.Since(last)
	if silent <= cfg.Liveness.HeartbeatTimeout {
		if w.wedgeReported {
			w.wedgeReported = false
			p.update(s.index, func(st *slotStatus) { st.Wedged = false })
			s.log.Info("worker heartbeat resumed", "pid", proc.PID())
		}
		return 0, false
	}
	now := cfg.Clock.Now()
	restart := false
	p.update(s.index, func(st *slotStatus) {
		st.wedgeRestarts = pruneBefore(st.wedgeRestarts, now.Add(-cfg.Liveness.Window))
		if len(st.wedgeRestarts) < cfg.Liveness.MaxRestarts {
			st.wedgeRestarts = append(st.wedgeRestarts, now)
			restart = true
		} else {
			st.Wedged = true
		}
	})
	if restart {
		p.emit(Event{Kind: EventWedgeRestart, Index: s.index, PID: proc.PID()})
		return s.stopFor(ctx, proc, outcomeWedge), true
	}
	if !w.wedgeReported {
		w.wedgeReported = true
		p.emit(Event{Kind: EventWedged, Index: s.index, PID: proc.PID()})
	}
	return 0, false
}
