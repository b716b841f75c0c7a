package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
)

// slot runs one worker index of a pool: start, watch, restart, stop.
type slot struct {
	pool  *Pool
	index int
	log   hclog.Logger
}

// outcome is why supervise returned.
type outcome int

const (
	// outcomeExited: the tree ended without the slot asking.
	outcomeExited outcome = iota
	// outcomeRSS: the slot stopped it for its RSS.
	outcomeRSS
	// outcomeWedge: the slot stopped it for a silent heartbeat.
	outcomeWedge
	// outcomeCancelled: the pool's context ended; the tree may still run.
	outcomeCancelled
	// outcomeRestart: the slot stopped it for Pool.Restart.
	outcomeRestart
)

// run is the slot's loop; it returns when ctx ends and its tree is dead.
func (s *slot) run(ctx context.Context) {
	p := s.pool
	defer p.update(s.index, func(st *slotStatus) { st.State = StateStopped; st.PID = 0 })
	var delay time.Duration
	for {
		if delay > 0 {
			p.update(s.index, func(st *slotStatus) { st.State = StateBackoff })
			p.emit(Event{Kind: EventBackoff, Index: s.index, Delay: delay})
			select {
			case <-ctx.Done():
				return
			case <-p.conf().Clock.After(delay):
			case <-p.restartC[s.index]:
				// Pool.Restart: start the new worker now.
				p.update(s.index, func(st *slotStatus) { st.restartAcks++; st.ackStarts = st.Starts })
			}
		}
		deadline, ok := s.waitStartable(ctx)
		if !ok {
			return
		}
		cfg := p.conf()
		started := cfg.Clock.Now()
		proc, err := s.start(ctx, cfg, deadline)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrDeadlinePassed) || errors.Is(err, ErrStoppedBeforeStart) {
				delay = 0
				continue
			}
			delay = s.startFailed(err)
			continue
		}
		out := s.supervise(ctx, cfg, proc)
		if out == outcomeCancelled {
			s.stop(ctx, proc)
			s.finish(proc, out, started, true)
			return
		}
		delay = s.finish(proc, out, started, ctx.Err() != nil)
	}
}

// waitStartable blocks until a worker may start, and returns the deadline
// to start it with; ok is false when ctx ended first.
func (s *slot) waitStartable(ctx context.Context) (time.Time, bool) {
	for {
		deadline, ok, changed := s.pool.startable()
		if ok {
			return deadline, true
		}
		s.pool.update(s.index, func(st *slotStatus) { st.State = StateWaiting; st.PID = 0 })
		s.log.Debug("worker waiting for a valid deadline")
		select {
		case <-ctx.Done():
			return time.Time{}, false
		case <-changed:
		}
	}
}

// start starts the slot's worker with deadline.
func (s *slot) start(ctx context.Context, cfg *PoolConfig, deadline time.Time) (*Process, error) {
	p := s.pool
	spec := cfg.Spec
	spec.Index = s.index
	spec.Deadline = deadline
	if spec.GroupLock == "" {
		spec.GroupLock = filepath.Join(p.dir(), "guards.lock")
	}
	env := spec.Env
	if env == nil {
		env = os.Environ()
	}
	var extra []string
	if cfg.EnvFor != nil {
		extra = cfg.EnvFor(s.index)
	}
	env = slices.Concat(env, extra, []string{"REGENT_WORKER=" + strconv.Itoa(s.index)})
	if cfg.Liveness.HeartbeatTimeout > 0 {
		hb := p.heartbeatPath(s.index)
		if err := os.WriteFile(hb, nil, 0o644); err != nil {
			return nil, err
		}
		env = append(env, "REGENT_HEARTBEAT_FILE="+hb)
	}
	spec.Env = env

	p.update(s.index, func(st *slotStatus) { st.State = StateStarting })
	// The process is registered as soon as its guard runs, so that the
	// deadlines of renewals made while it starts reach it (and a Fence
	// stops it): under load a guard can take longer to start than the
	// deadline it was handed lasts.
	var spawned *Process
	proc, err := start(ctx, spec, func(proc *Process) {
		spawned = proc
		p.register(s.index, proc)
	})
	if err != nil {
		if spawned != nil {
			p.unregister(s.index, spawned)
		}
		return nil, err
	}
	now := cfg.Clock.Now()
	p.update(s.index, func(st *slotStatus) {
		st.State = StateRunning
		st.PID = proc.PID()
		st.StartedAt = now
		st.Starts++
		st.Restarts = st.Starts - 1
		st.RSSBytes = 0
		st.Wedged = false
	})
	p.emit(Event{Kind: EventStarted, Index: s.index, PID: proc.PID(), GuardPID: proc.GuardPID(), Time: now})
	return proc, nil
}

// supervise watches a running worker, started with cfg, until it ends,
// the slot stops it for its RSS, a silent heartbeat or Pool.Restart, or
// ctx ends.
func (s *slot) supervise(ctx context.Context, cfg *PoolConfig, proc *Process) outcome {
	p := s.pool
	started := time.Now()
	tick := time.NewTicker(cfg.CheckInterval)
	defer tick.Stop()
	w := watch{cfg: cfg}
	for {
		select {
		case <-proc.Done():
			return outcomeExited
		case <-ctx.Done():
			return outcomeCancelled
		case <-p.restartC[s.index]:
			p.update(s.index, func(st *slotStatus) { st.restartAcks++; st.ackStarts = st.Starts })
			return s.stopFor(ctx, proc, outcomeRestart)
		case <-tick.C:
		}
		if cfg.MaxRSSMB > 0 {
			if out, done := s.checkRSS(ctx, proc, &w); done {
				return out
			}
		}
		if cfg.Liveness.HeartbeatTimeout > 0 {
			if out, done := s.checkHeartbeat(ctx, proc, started, &w); done {
				return out
			}
		}
	}
}

// stopFor stops proc gracefully for a watchdog; outcomeCancelled if ctx
// ended during the stop.
func (s *slot) stopFor(ctx context.Context, proc *Process, out outcome) outcome {
	s.pool.update(s.index, func(st *slotStatus) { st.State = StateStopping })
	if err := proc.Stop(ctx); err != nil {
		return outcomeCancelled
	}
	return out
}

// stop stops proc when the pool ends, with a fresh context: SIGTERM,
// StopTimeout, SIGKILL, the deadline winning. It returns once the tree is
// dead.
func (s *slot) stop(ctx context.Context, proc *Process) {
	s.pool.update(s.index, func(st *slotStatus) { st.State = StateStopping })
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.pool.conf().Spec.StopTimeout+30*time.Second)
	defer cancel()
	if err := proc.Stop(cctx); err != nil {
		s.log.Error("worker did not stop in time, waiting for its guard", "pid", proc.PID(), "error", err)
		proc.Kill()
		<-proc.Done()
	}
}

// startFailed accounts a failed start as a crash and returns the delay.
func (s *slot) startFailed(err error) time.Duration {
	p := s.pool
	p.mu.Lock()
	st := &p.slots[s.index]
	delay, degraded := s.countCrashLocked(st)
	n := st.ConsecutiveCrashes
	p.mu.Unlock()
	p.emit(Event{Kind: EventStartFailed, Index: s.index, Crash: true, Err: err, Consecutive: n})
	if degraded {
		s.reportDegraded(n)
	}
	return delay
}

// countCrashLocked counts one crash; p.mu must be held. It returns the
// backoff delay and whether the worker just became degraded.
func (s *slot) countCrashLocked(st *slotStatus) (time.Duration, bool) {
	cfg := s.pool.conf()
	st.Crashes++
	st.ConsecutiveCrashes++
	degraded := false
	if st.ConsecutiveCrashes >= cfg.Restart.MaxCrashes && !st.Degraded {
		st.Degraded = true
		degraded = true
	}
	return Backoff(cfg.Restart, st.ConsecutiveCrashes, cfg.Rand()), degraded
}

// reportDegraded logs and emits a worker becoming degraded.
func (s *slot) reportDegraded(n int) {
	s.pool.emit(Event{Kind: EventDegraded, Index: s.index, Consecutive: n})
}

// finish accounts for a run that has ended and returns the delay before
// the next start. stopping says whether the pool is being stopped.
func (s *slot) finish(proc *Process, out outcome, started time.Time, stopping bool) time.Duration {
	p := s.pool
	cfg := p.conf()
	<-proc.Done()
	p.unregister(s.index, proc)
	es := proc.ExitStatus()
	now := cfg.Clock.Now()
	ranFor := now.Sub(started)

	var (
		delay                            time.Duration
		crash, degraded, recovered, loop bool
	)
	p.mu.Lock()
	st := &p.slots[s.index]
	st.LastExit = &es
	st.PID = 0
	if ranFor >= cfg.Restart.ResetAfter {
		st.ConsecutiveCrashes = 0
		if st.Degraded {
			st.Degraded = false
			recovered = true
		}
	}
	switch out {
	case outcomeRSS:
		st.rssKills = append(pruneBefore(st.rssKills, now.Add(-cfg.RSS.Window)), now)
		if len(st.rssKills) > cfg.RSS.MaxKills {
			// A kill loop: restarting at once would only spin.
			loop = len(st.rssKills) == cfg.RSS.MaxKills+1
			delay = Backoff(cfg.Restart, 1, cfg.Rand())
		}
	case outcomeExited:
		switch {
		case es.Cause == CauseDeadline || es.Cause == CauseKilled || es.Cause == CauseOrphaned:
			// Fenced or deadline passed: not the worker's fault; the
			// next start waits for a valid deadline.
		case es.Success():
			// Exit 0 is not a crash, but a worker that keeps exiting must
			// not spin.
			delay = Backoff(cfg.Restart, 1, cfg.Rand())
		default:
			crash = true
			delay, degraded = s.countCrashLocked(st)
		}
	}
	n := st.ConsecutiveCrashes
	p.mu.Unlock()

	p.emit(Event{Kind: EventExited, Index: s.index, PID: proc.PID(), Exit: es, Crash: crash,
		Cause: exitCause(out, es, crash, stopping, p.isFenced()), RanFor: ranFor, Consecutive: n})
	if recovered {
		p.emit(Event{Kind: EventRecovered, Index: s.index})
	}
	if degraded {
		s.reportDegraded(n)
	}
	if loop {
		p.emit(Event{Kind: EventRSSLoop, Index: s.index, LimitBytes: uint64(cfg.MaxRSSMB) << 20})
	}
	return delay
}

// exitCause names the likely cause of a run's end (Event.Cause): what
// the slot stopped it for first, then a fence or a deadline, then a
// stopping pool, then the worker's own exit.
func exitCause(out outcome, es ExitStatus, crash, stopping, fenced bool) string {
	switch {
	case out == outcomeRSS:
		return ExitRSSWatchdog
	case out == outcomeWedge:
		return ExitWedged
	case out == outcomeRestart && !fenced && es.Cause != CauseDeadline:
		return ExitRestart
	case fenced || es.Cause == CauseDeadline || es.Cause == CauseOrphaned || es.Cause == CauseBackstop:
		return ExitFenced
	case stopping || out == outcomeCancelled:
		return ExitStop
	case crash:
		return ExitCrash
	default:
		return ExitClean
	}
}
