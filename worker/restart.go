package worker

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Reconfigure replaces the settings that the workers started from now on
// run with: Spec (command, environment, stop timeout), MaxRSSMB, Restart,
// Liveness, RSS, CheckInterval, RSSSampler, Rand and EnvFor. A running
// worker keeps the settings it was started with until it is replaced
// (Restart). Concurrency, Deadline, Dir, Clock, Events and Logger are the
// pool's own and stay; a different Concurrency is refused with
// ErrInvalidSpec (build a new pool).
func (p *Pool) Reconfigure(cfg PoolConfig) error {
	base := p.cfg
	cfg.Deadline = base.Deadline
	cfg.Dir, cfg.Clock, cfg.Events = base.Dir, base.Clock, base.Events
	cfg.Logger, cfg.Spec.Logger = base.Logger, base.Logger
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if cfg.Concurrency != base.Concurrency {
		return fmt.Errorf("%w: concurrency %d of a pool of %d", ErrInvalidSpec, cfg.Concurrency, base.Concurrency)
	}
	p.live.Store(&cfg)
	return nil
}

// Restart replaces every worker: each is stopped gracefully (SIGTERM,
// the stop timeout, SIGKILL; never past the deadline) and started again
// at once with the pool's current settings (Reconfigure). A restart is
// no crash: it neither backs off nor counts against the crash budget; a
// worker waiting out a backoff is started at once.
//
// Rolling replaces one worker at a time, in index order, and moves to the
// next only once the new one runs: with Liveness, once it has touched its
// heartbeat file, else once it has stayed up for RestartSettle (or once it
// has already ended: a crash loop is not waited out).
// Otherwise every worker is stopped at once and Restart waits for them
// all in the same way.
//
// Restart returns nil once every worker was replaced, ctx.Err() when ctx
// ends first, or ErrPoolStopped when the pool stops or is fenced first.
// Call it while Run runs.
func (p *Pool) Restart(ctx context.Context, rolling bool) error {
	n := len(p.restartC)
	if rolling {
		for i := range n {
			if err := p.restartSlots(ctx, []int{i}); err != nil {
				return err
			}
		}
		return nil
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	return p.restartSlots(ctx, all)
}

// restartSlots asks each slot of idx to restart and waits until each has
// replaced its worker (replaced).
func (p *Pool) restartSlots(ctx context.Context, idx []int) error {
	acks := make([]int, len(idx))
	p.mu.Lock()
	for k, i := range idx {
		acks[k] = p.slots[i].restartAcks
	}
	p.mu.Unlock()
	for _, i := range idx {
		select {
		case p.restartC[i] <- struct{}{}:
		default: // a request is pending already: it serves this one too
		}
	}
	// The heartbeat file changes without a status change: look now and
	// then while waiting for one.
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		p.mu.Lock()
		changed := p.statusC
		done := true
		for k, i := range idx {
			if !p.replaced(&p.slots[i], acks[k]) {
				done = false
				break
			}
		}
		p.mu.Unlock()
		if done {
			return nil
		}
		if p.isFenced() {
			return ErrPoolStopped
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.stopping:
			return ErrPoolStopped
		case <-changed:
		case <-poll.C:
		}
	}
}

// replaced reports whether the slot took up a restart request after the
// ack count ack0 and its new worker runs (and heartbeats, with Liveness)
// or has already ended. p.mu must be held.
func (p *Pool) replaced(st *slotStatus, ack0 int) bool {
	if st.restartAcks <= ack0 || st.Starts <= st.ackStarts {
		return false
	}
	switch st.State {
	case StateRunning:
	case StateBackoff, StateWaiting:
		return true // the new one ended already
	default:
		return false
	}
	cfg := p.conf()
	if cfg.Liveness.HeartbeatTimeout <= 0 {
		return cfg.Clock.Now().Sub(st.StartedAt) >= cfg.RestartSettle
	}
	fi, err := os.Stat(heartbeatFile(p.tempDir, st.Index))
	return err == nil && fi.ModTime().After(st.StartedAt)
}
