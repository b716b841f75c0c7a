package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/control"
	"github.com/regentd/regent/election"
)

// The leader's side of the operator records (pause, restart) and of a
// reload: what the term's pool should be, carried out on the lead loop.
//
// The observer hands each runner its queue's records (setControl); a
// reload hands it new settings (setConfig); both wake the lead loop
// (queueRunner.wake), which calls apply. apply compares what is wanted
// with what runs and takes one step at a time: start a pool, stop it
// gracefully, reconfigure it and restart its workers in place, or start a
// restart request. Stops and restarts run off the loop (the pool's Run,
// the restart goroutine); their ends come back to the loop
// (poolDone, restartDone), which calls apply again. The loop keeps
// renewing and fencing all along: a paused or restarting leader is a
// leader like any other.
//
// A leader starts no pool until it holds the records of a read begun
// after it won: the one it asks the controlReader for at its start, or
// the observer's, whichever comes first. The observer's last read may
// predate a pause recorded an instant before the win; a read after the
// win cannot miss it. So a leader elected while the queue is paused
// never starts a worker.

// apply brings the term's pool in line with the queue's operator records
// and settings.
func (r *leaderRun) apply(ctx context.Context) {
	q := r.q
	c := q.control.Load()
	if c == nil || c.readAt.Before(r.began) {
		return // the records are not known yet, or only from before the win
	}
	q.awaitingControl.Store(false)
	if paused := c.pause != nil; paused != r.paused {
		r.paused = paused
		update(&q.status, func(s queueStatus) queueStatus { s.paused = paused; return s })
		if paused {
			r.log.Info("paused", "by", c.pause.By, "reason", c.pause.Reason, "since", c.pause.Since)
		} else {
			r.log.Info("resumed")
		}
		q.members.wake()
	}
	if settings := q.config(); settings != r.published {
		r.published = settings
		r.publish(ctx)
	}
	if r.restart != nil {
		if r.paused {
			r.cancelRestart() // its end comes back on restartDone
		}
		return // one step at a time: look again when it ends
	}
	settings := q.config()
	switch {
	case r.paused:
		r.stopPoolFor("paused")
	case r.pool == nil:
		r.startPool(ctx, settings)
	case r.poolStopping:
		// Its end comes back on poolDone.
	case settings != r.poolConf:
		r.reconfigure(ctx, settings)
		return
	}
	r.takeRestartRequest(ctx, c)
}

// startPool starts a pool of the term with settings s.
func (r *leaderRun) startPool(ctx context.Context, s *queueSettings) {
	q := r.q
	r.pool = q.cfg.NewPool(r.poolSpec(s))
	r.poolConf = s
	r.poolEnd, r.poolStopping = false, false
	var poolCtx context.Context
	poolCtx, r.stopPool = context.WithCancel(context.WithoutCancel(ctx))
	r.poolDone = make(chan error, 1)
	pool, done := r.pool, r.poolDone
	go func() { done <- pool.Run(poolCtx) }() // awaited by the loop or stopWorkers
	update(&q.status, func(st queueStatus) queueStatus { st.pool = pool; return st })
	if m := q.cfg.Metrics; m != nil {
		m.Workers.WithLabelValues(r.name).Set(float64(s.queue.Concurrency))
	}
	q.members.wake()
}

// stopPoolFor asks the running pool to stop gracefully (SIGTERM,
// stop_timeout, SIGKILL, never past the deadline); its end comes back on
// poolDone.
func (r *leaderRun) stopPoolFor(why string) {
	if r.pool == nil || r.poolStopping {
		return
	}
	r.log.Info("stopping workers", "reason", why)
	r.poolStopping = true
	r.stopPool()
}

// poolStopped forgets a pool the loop stopped, once every worker is dead.
func (r *leaderRun) poolStopped() {
	q := r.q
	r.pool, r.poolConf, r.poolDone, r.poolStopping = nil, nil, nil, false
	update(&q.status, func(st queueStatus) queueStatus { st.pool = nil; return st })
	if m := q.cfg.Metrics; m != nil {
		m.Workers.WithLabelValues(r.name).Set(0)
	}
	q.members.wake()
}

// reconfigure moves the running pool to settings s after a reload: the
// pool takes them for its next workers and replaces its workers one at a
// time; a pool that cannot (another concurrency) is stopped and a new one
// started.
func (r *leaderRun) reconfigure(ctx context.Context, s *queueSettings) {
	if r.pool.Reconfigure(r.poolSpec(s)) {
		r.poolConf = s
		r.runRestart(ctx, &restartJob{rolling: true, reason: "config_reload"})
		return
	}
	r.stopPoolFor("config_reload")
}

// publish republishes the leader payload of the current settings, off the
// loop (serialized; end waits for it).
func (r *leaderRun) publish(ctx context.Context) {
	r.publishing.Add(1)
	go func() {
		defer r.publishing.Done()
		r.publishMu.Lock()
		defer r.publishMu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, min(5*time.Second, r.q.cfg.LeaseTTL/2))
		defer cancel()
		if err := r.l.Publish(pctx, r.q.config().payload); err != nil && !errors.Is(err, election.ErrNotLeader) && ctx.Err() == nil {
			r.q.cfg.Metrics.backendError()
			r.log.Warn("leader payload update failed", "error", err)
		}
	}()
}

// takeRestartRequest carries out the queue's restart request once. A
// request made before this term began is done already (every worker of
// the term is newer), and so is one while no pool runs.
func (r *leaderRun) takeRestartRequest(ctx context.Context, c *queueControl) {
	req := c.restart
	if req == nil || req.ID == r.doneID {
		return
	}
	if req.At.Before(r.began) || r.pool == nil || r.poolStopping {
		r.restartDoneID(req.ID)
		return
	}
	r.runRestart(ctx, &restartJob{id: req.ID, rolling: req.Rolling, reason: "request"})
}

// runRestart restarts the pool's workers in place off the loop; the
// outcome comes back on restartDone.
func (r *leaderRun) runRestart(ctx context.Context, job *restartJob) {
	rctx, cancel := context.WithCancel(ctx)
	r.restart, r.cancelRestart = job, cancel
	pool, done := r.pool, r.restartDone
	go func() { done <- pool.Restart(rctx, job.rolling) }() // awaited by the loop or stopWorkers
}

// restartFinished records the end of the restart under way.
func (r *leaderRun) restartFinished(err error) {
	job := r.restart
	r.restart = nil
	r.cancelRestart()
	if err != nil {
		// apply looks again: a request is done once no old worker is
		// left, or is tried again.
		if !r.paused {
			r.log.Warn("workers not all restarted", "id", job.id, "reason", job.reason, "error", err)
		}
		return
	}
	r.log.Info("workers_restarted", "rolling", job.rolling, "id", job.id, "reason", job.reason)
	if job.id != "" {
		r.restartDoneID(job.id)
	}
}

// restartDoneID publishes id as the last restart request carried out.
func (r *leaderRun) restartDoneID(id string) {
	if id == "" {
		return
	}
	r.doneID = id
	update(&r.q.status, func(s queueStatus) queueStatus { s.restartID = id; return s })
	r.q.members.wake()
}

// relayControl hands runner r its queue's operator records, read at at,
// and sets regent_paused.
func (o *observer) relayControl(r *queueRunner, st control.State, at time.Time) {
	r.setControl(st, at)
	if m := o.cfg.Metrics; m != nil {
		m.Paused.WithLabelValues(r.queue.Name).Set(gauge(st.Paused(r.queue.Name)))
	}
}

// refreshRunners takes up the current runners and their configs (a
// reload adds, removes or changes queues), for the observation and the
// balancer, and keeps the operator records read for the runners a
// reload adds before the next observation.
func (o *observer) refreshRunners(read controlRead) {
	o.lastControl.Store(&read)
	if o.set == nil {
		return
	}
	o.runners = o.set()
	qs := make([]config.QueueConfig, len(o.runners))
	for i, r := range o.runners {
		qs[i] = r.config().queue
	}
	o.balancer.queues = qs
}
